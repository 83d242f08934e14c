"""The uploader: moves buffered blocks to the cloud receiver, each acknowledged exactly once.

Owns: the send loop (catalogs, live blocks, then the backlog oldest first; several requests
in flight; the bandwidth bucket), claiming each block before it is sent (so the buffer never
evicts a block that may reach the receiver) and releasing it when its upload fails,
quarantining refused blocks with an alert event, the retry gate with the shared backoff.
Counters, progress and the batch of acks: ``agent.sync.ledger``; the HTTP client,
the POST and the mapping of httpx errors: ``agent.sync.http``.

Must not: decide what an answer means or which block goes next (``agent.sync.policy``
does), touch SQLite (only the ``Buffer`` API), read real time (the injected ``Clock``), or put
the token into a log line or an exception text (only the client's default headers hold it).

Invariants:
- A block is acked in the buffer only after the receiver answered 2xx for it. An answer that is
  lost (timeout, dropped connection, crash before the batched ack) means a re-send, which the
  receiver acknowledges as "duplicate" without storing it twice.
- At most one request per block in flight; at most ``concurrency`` requests in flight, and a
  single probe while failing; no request starts before the backoff gate opens.
- Network errors, timeouts and refusals never escape ``run()``; cancellation does, at once
  (in-flight requests are cancelled with it); a buffer that cannot delete or quarantine now
  (a full disk) is retried later, other buffer errors propagate to the supervisor.
- A block is sent only after ``Buffer.claim`` said it is still there; it stays claimed until
  its ack is committed, and is released after a quarantine or a failed attempt that cannot
  have delivered it. One that may have been delivered (the answer was lost, or ``run()`` was
  cancelled while it was in flight) stays claimed, the latest ``MAX_UNSURE`` of them.
- The send loop goes round at least every ``MAX_PAUSE_S`` (a longer wait, a backoff or a
  Retry-After, is taken in steps) and calls ``on_progress`` each time round, also while the
  cloud is down: an outage is not a stall, only a loop that stops going round is.
- Logs: the first failure of a streak (or one of another kind) WARNING, repeats DEBUG,
  recovery INFO; a draining backlog logs progress (remaining blocks, ETA) periodically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import deque
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from agent.buffer.buffer import Buffer, StoredBlock, StoreUnavailableError
from agent.config.settings import SyncSection
from agent.domain.backoff import Backoff
from agent.domain.clock import Clock
from agent.domain.errors import ConfigError, ConfigProblem, RetryableError
from agent.domain.logger import get_logger
from agent.sync import http as sync_http
from agent.sync import policy
from agent.sync.ledger import AckBatch, Result, SyncProgress, UploaderStats

__all__ = ["SyncProgress", "Uploader", "UploaderStats"]

_log = get_logger(__name__)


class Uploader:
    """Sends the buffer's blocks to ``{sync.url}/v1/agents/{agent_id}/blocks/{epoch}/{seq}``."""

    MAX_PAUSE_S = 5.0  # the send loop goes round at least this often, also behind a long backoff
    MAX_UNSURE = 256  # blocks kept claimed because they may have been delivered

    def __init__(
        self,
        buffer: Buffer,
        sync: SyncSection,
        *,
        agent_id: str,
        token: SecretStr | None,
        clock: Clock,
        base_dir: Path,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        rand: Callable[[], float] | None = None,
        concurrency: int = 4,
        ack_batch: int = 64,
        progress_every_s: float = 30.0,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        if sync.url is None:
            raise ConfigError([ConfigProblem("sync", "sync.url", "the receiver's URL", "none")])
        self._buffer, self._sync, self._clock = buffer, sync, clock
        self._agent_id, self._token, self._base_dir = agent_id, token, base_dir
        self._transport = transport
        self._base_url = sync.url.rstrip("/")
        self._backoff = backoff if backoff is not None else Backoff()
        self._rand = rand if rand is not None else random.Random().random  # noqa: S311 (jitter)
        self._concurrency = max(1, concurrency)
        self._progress_every_s = progress_every_s
        self._on_progress = on_progress  # called once per send-loop step: the watchdog's beat
        self._window_s = policy.live_window_s(sync.flush_interval_s)
        self._poll_s = min(max(sync.flush_interval_s / 4, 0.05), 1.0)
        self._refill = max(16, 8 * self._concurrency)
        self._stats = UploaderStats()
        self._unsure: dict[int, None] = {}  # seqs that may have been delivered (oldest first)
        self._acks = AckBatch(buffer, clock, self._backoff, self._rand, ack_batch)  # kept
        self._quarantine_failures = 0
        self._reset()

    def _reset(self) -> None:
        self._in_flight: dict[int, StoredBlock] = {}
        self._results: list[Result] = []
        self._backlog: deque[StoredBlock] = deque()
        self._done: set[int] = set()  # acked, quarantined or gone since the last refill
        self._failed: dict[int, int] = {}  # failed attempts per seq, until acked/quarantined
        self._wake = asyncio.Event()
        self._streak = policy.Streak()
        self._drain = policy.Drain()
        rate = float(self._sync.bandwidth_limit_bytes_per_s)
        self._bucket = policy.TokenBucket.start(rate, self._clock.monotonic())

    # -- public ------------------------------------------------------------------------------

    def stats(self) -> UploaderStats:
        failures, waiting = self._streak.failures, len(self._acks)
        return dataclasses.replace(
            self._stats,
            in_flight=len(self._in_flight),
            consecutive_failures=failures,
            acks_waiting=waiting,
        )

    def progress(self) -> SyncProgress:
        budget = self._buffer.budget()
        remaining = max(0, budget.blocks_pending - len(self._acks))
        rate = self._drain.blocks_per_s(self._clock.monotonic())
        eta = policy.eta_s(remaining, rate)
        drained = self._drain.acked if self._drain.active else 0
        return SyncProgress(
            remaining, budget.samples_pending, self._drain.active, rate, eta, drained
        )

    async def run(self) -> None:
        """Upload forever; returns only by cancellation (or a buffer error)."""
        self._reset()
        client = sync_http.build_client(
            self._sync,
            token=self._token,
            base_dir=self._base_dir,
            concurrency=self._concurrency,
            transport=self._transport,
        )
        try:
            async with client, asyncio.TaskGroup() as group:
                while True:
                    await self._step(client, group)
        finally:  # acknowledged blocks are deleted now, not re-sent after a restart
            await self._acks.flush(force=True)

    def _url(self, seq: int) -> str:
        agent, epoch = quote(self._agent_id, safe=""), quote(self._buffer.epoch, safe="")
        return f"{self._base_url}/v1/agents/{agent}/blocks/{epoch}/{seq}"

    # -- the send loop -----------------------------------------------------------------------

    async def _step(self, client: httpx.AsyncClient, group: asyncio.TaskGroup) -> None:
        if self._on_progress is not None:
            self._on_progress()
        self._wake.clear()
        await self._absorb()
        now = self._clock.monotonic()
        if now < self._streak.gate:
            await self._pause(self._streak.gate - now)
            return
        limit = policy.in_flight_limit(self._concurrency, self._streak.failures)
        if len(self._in_flight) >= limit:
            await self._pause(self._poll_s)
            return
        block = await self._choose()
        if block is None:
            await self._acks.flush()
            await self._pause(self._poll_s)
            return
        now = self._clock.monotonic()
        wait = self._bucket.wait_s(len(block.data), now)
        if wait > 0:
            await self._pause(wait)
            return
        claimed = await self._buffer.claim(block.seq)  # held now, and as it is now
        if claimed is None:  # evicted since it was read: skip it
            self._done.add(block.seq)
            return
        block = claimed
        self._bucket = self._bucket.took(len(block.data), now)
        self._in_flight[block.seq] = block
        self._stats.blocks_sent += 1
        self._stats.bytes_sent += len(block.data)
        group.create_task(self._send(client, block, self._streak.generation))

    async def _choose(self) -> StoredBlock | None:
        busy = self._done | self._in_flight.keys() | self._acks.seqs.keys()
        if all(block.seq in busy for block in self._backlog):
            await self._acks.flush()
            self._done.clear()
            self._backlog = deque(
                await self._buffer.pending(limit=self._refill, newest_first=False)
            )
            busy = self._done | self._in_flight.keys() | self._acks.seqs.keys()
        newest = await self._buffer.pending(limit=self._concurrency, newest_first=True)
        now = self._clock.now()
        candidates = [*newest, *self._backlog]
        block = policy.pick_next(candidates, busy, now, self._window_s, self._failed)
        self._note_drain(block, now)
        return block

    async def _pause(self, seconds: float) -> None:
        """Sleep on the Clock until ``seconds`` (at most MAX_PAUSE_S) pass or a request finishes."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(min(seconds, self.MAX_PAUSE_S)))
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    async def _send(self, client: httpx.AsyncClient, block: StoredBlock, generation: int) -> None:
        started = self._clock.monotonic()
        status, detail, duplicate, unsure = None, "", False, False
        try:
            answer = await sync_http.post_block(client, self._url(block.seq), block.data)
            status, detail, duplicate = answer.status, answer.detail, answer.duplicate
            outcome = policy.classify(status, answer.retry_after, self._clock.now())
            kind = f"HTTP {status}"
        except RetryableError as exc:
            outcome = policy.Outcome(policy.Verdict.RETRY, str(exc), exc.retry_after_s)
            kind = type(exc.__cause__ or exc).__name__
            unsure = sync_http.maybe_delivered(exc)
        latency = self._clock.monotonic() - started
        self._results.append(
            Result(block, outcome, status, kind, detail, duplicate, generation, latency, unsure)
        )
        self._wake.set()

    # -- outcomes ----------------------------------------------------------------------------

    async def _absorb(self) -> None:
        results, self._results = self._results, []
        for result in results:
            seq = result.block.seq
            self._in_flight.pop(seq, None)
            verdict = result.outcome.verdict
            if verdict is policy.Verdict.RETRY:
                self._failed[seq] = self._failed.get(seq, 0) + 1
                self._on_retry(result)
                await self._release(seq, keep=result.maybe_delivered)
                continue
            self._failed.pop(seq, None)
            self._unsure.pop(seq, None)
            if verdict is policy.Verdict.ACK:
                self._on_ack(result)
            else:
                await self._on_quarantine(result)
        if self._acks.due:
            await self._acks.flush()

    async def _release(self, seq: int, *, keep: bool) -> None:
        """After a failed attempt: let the buffer evict the block again, unless it may have
        been delivered (then the latest MAX_UNSURE such blocks stay claimed)."""
        self._unsure.pop(seq, None)
        if not keep:
            await self._buffer.release([seq])
            return
        self._unsure[seq] = None
        if len(self._unsure) > self.MAX_UNSURE:
            oldest = next(iter(self._unsure))
            del self._unsure[oldest]
            await self._buffer.release([oldest])

    def _on_ack(self, result: Result) -> None:
        stats = self._stats
        stats.acks += 1
        stats.duplicates += result.duplicate
        stats.last_latency_s = result.latency_s
        stats.latency_sum_s += result.latency_s
        self._acks.add(result.block.seq)
        self._done.add(result.block.seq)
        self._drain = self._drain.acked_one()
        streak = self._streak.succeeded(sent_in=result.generation)
        if streak.failures < self._streak.failures:
            outage = round(self._clock.monotonic() - self._streak.since, 3)
            _log.info("sync_recovered", after_failures=self._streak.failures, outage_s=outage)
        self._streak = streak

    def _on_retry(self, result: Result) -> None:
        reason, seq, old = result.outcome.reason, result.block.seq, self._streak
        self._stats.retries += 1
        self._stats.last_error = reason
        delay = self._backoff.delay_with_hint(
            old.failures, self._rand(), result.outcome.retry_after_s
        )
        now = self._clock.monotonic()
        new = old.failed(sent_in=result.generation, kind=result.error_kind, delay_s=delay, now=now)
        if new is None:  # it was in flight when an earlier failure was counted: not news
            if result.outcome.retry_after_s is not None:
                self._streak = old.hold(now + delay)  # but a Retry-After is still honoured
            _log.debug("sync_upload_failed", seq=seq, status=result.status, error=reason)
            return
        self._streak = new
        (_log.warning if new.is_news(old) else _log.debug)(
            "sync_upload_failed",
            seq=seq,
            status=result.status,
            error=reason,
            attempt=new.failures,
            retry_in_s=round(delay, 3),
        )

    async def _on_quarantine(self, result: Result) -> None:
        seq, status, reason = result.block.seq, result.status or 0, result.outcome.reason
        detail = result.detail[:500]
        self._done.add(seq)
        try:
            await self._buffer.quarantine(seq, f"{reason}: {detail}" if detail else reason)
        except StoreUnavailableError as exc:  # kept pending: refused again, quarantined later
            self._quarantine_failures += 1
            emit = _log.warning if self._quarantine_failures == 1 else _log.debug
            emit("sync_quarantine_failed", seq=seq, error=str(exc))
            return
        finally:
            await self._buffer.release([seq])
        self._quarantine_failures = 0
        self._stats.quarantined += 1
        alert = policy.quarantine_alert(
            seq=seq, status=status, reason=reason, detail=detail, now=self._clock.now()
        )
        await self._buffer.put_events([alert])
        _log.warning("sync_block_quarantined", seq=seq, status=status, reason=reason, detail=detail)

    def _note_drain(self, block: StoredBlock | None, now: float) -> None:
        backlog = block is not None and policy.is_backlog(block, now, self._window_s)
        idle = block is None and not self._in_flight
        mono = self._clock.monotonic()
        self._drain, event = self._drain.picked(
            backlog=backlog, idle=idle, now=mono, every_s=self._progress_every_s
        )
        if event == "sync_backlog_drained":
            duration = round(mono - self._drain.started, 3)
            _log.info(event, blocks=self._drain.acked, duration_s=duration)
        elif event is not None:
            p = self.progress()
            _log.info(
                event,
                remaining_blocks=p.remaining_blocks,
                remaining_samples=p.remaining_samples,
                blocks_per_s=None if p.blocks_per_s is None else round(p.blocks_per_s, 2),
                eta_s=None if p.eta_s is None else round(p.eta_s, 1),
            )
