"""The durable buffer: blocks on their way to the cloud, in one SQLite file under state_dir.

Owns: the store's identity (agent_id, epoch, seq), the asyncio API the block builder and the
uploader use, the one writer thread that runs every SQLite call (its queue keeps put order),
the outage budget, and reporting a corrupt file that was moved aside. Schema:
agent.shell.buffer_schema; transactions and counters: agent.shell.buffer_store; block bytes:
agent.core.blocks; eviction rules: agent.core.retention.
Must not: touch SQLite from the event loop (the loop encodes blocks, then hands them to the
writer thread and awaits a future only when the caller needs a result), know HTTP or devices.
Invariants:
- Every SQLite call runs on one dedicated thread (a single-worker executor, FIFO), one commit
  per block, WAL with synchronous=FULL, so a crash or power cut loses at most the blocks not
  yet committed: the open block of the builder plus those queued (normally none).
- ``put_*`` returns the block's seq once it is queued, before the commit; ``flush()`` waits
  for everything queued so far. A failed commit is raised by the next ``put_*`` or
  ``flush()`` (StoreUnavailableError: retry later; StoreCorruptError: reopen). At most
  ``MAX_QUEUED`` puts wait in the queue; a put beyond that waits for the writer (backpressure).
- seq grows by one per block and never repeats within the epoch (``meta.next_seq``, written
  with every insert, survives restarts, acks and a hand-emptied table). A seq returned by a
  put whose commit failed is burned, never reused in this process.
- A new catalog is stored (as a CATALOG block, before the telemetry that needs it) the first
  time ``put_samples`` sees it in this process.
- ``budget()`` does no I/O: it reads the counters the writer publishes after each commit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.clock import Clock
from agent.core.blocks import (
    BlockKind,
    Catalog,
    encode_catalog,
    encode_events,
    encode_telemetry,
)
from agent.core.retention import RateMeter, db_cap_bytes, footprint, hours_left
from agent.logs import get_logger
from agent.shell.buffer_schema import Opened, open_database
from agent.shell.buffer_store import (
    Store,
    StoreCorruptError,
    StoredBlock,
    StoreUnavailableError,
    mapped_errors,
)
from drivers.base import Sample

__all__ = [
    "MAX_QUEUED",
    "MIN_MAX_BYTES",
    "Buffer",
    "OutageBudget",
    "StoreCorruptError",
    "StoreUnavailableError",
    "StoredBlock",
]

MAX_QUEUED = 64
MIN_MAX_BYTES = 512 * 1024
"""Below this the WAL's share and the reserve would leave no room for blocks."""
_log = get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class OutageBudget:
    """How long the buffer can hold out without the cloud, from in-memory counters.

    bytes_used: pages in use in the database file; max_bytes: the configured cap (the WAL's
    share and a small reserve are kept out of it before evicting); blocks_pending and
    samples_pending: neither acked nor quarantined; oldest_unsent_age_s: age of the oldest
    pending block (None when none); bytes_per_hour: the put rate over the last 10 minutes;
    hours_left: until the cap starts evicting at that rate (None when nothing is put);
    evictions: blocks removed unsent, by reason, since the store was created; quarantined:
    blocks kept but never offered again.
    """

    bytes_used: int
    max_bytes: int
    blocks_pending: int
    samples_pending: int
    oldest_unsent_age_s: float | None
    bytes_per_hour: float
    hours_left: float | None
    evictions: Mapping[str, int]
    quarantined: int


class Buffer:
    """The store and forward buffer. Create with ``await Buffer.open(...)``."""

    agent_id: str
    epoch: str
    recovered_from: Path | None

    def __init__(
        self,
        executor: concurrent.futures.ThreadPoolExecutor,
        store: Store,
        *,
        agent_id: str,
        epoch: str,
        next_seq: int,
        max_bytes: int,
        page_size: int,
        clock: Clock,
        recovered_from: Path | None,
    ) -> None:
        """Internal: use ``Buffer.open``."""
        self.agent_id, self.epoch, self.recovered_from = agent_id, epoch, recovered_from
        self._executor, self._store, self._clock = executor, store, clock
        self._next_seq = next_seq
        self._max_bytes, self._page = max_bytes, page_size
        self._catalog_id: str | None = None
        self._queued: collections.deque[concurrent.futures.Future[None]] = collections.deque()
        self._failed: collections.deque[BaseException] = collections.deque()  # thread-safe
        self._failures = 0
        self._meter = RateMeter()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, agent_id: str, max_bytes: int, clock: Clock) -> Buffer:
        """Open or create the buffer file; a corrupt one is moved aside and reported.
        StoreUnavailableError when SQLite cannot open it (missing folder, permissions);
        ValueError for a cap below ``MIN_MAX_BYTES``."""
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="buffer-writer")
        loop = asyncio.get_running_loop()
        now = clock.now()

        def opening() -> tuple[Store, Opened]:
            with mapped_errors():
                opened = open_database(path, agent_id=agent_id, max_bytes=max_bytes, now=now)
            try:
                return Store(opened, max_bytes=max_bytes), opened
            except BaseException:
                opened.conn.close()
                raise

        try:
            store, opened = await loop.run_in_executor(executor, opening)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        buffer = cls(
            executor, store, agent_id=agent_id, epoch=opened.epoch, next_seq=opened.next_seq,
            max_bytes=max_bytes, page_size=opened.page_size, clock=clock,
            recovered_from=opened.recovered_from,
        )  # fmt: skip
        if opened.recovered_from is not None:
            _log.warning(
                "buffer_corrupt_moved_aside",
                path=str(path),
                moved_to=str(opened.recovered_from),
                error=opened.problem,
                epoch=opened.epoch,
            )
            await buffer.put_events(
                [
                    {
                        "kind": "buffer_corrupt_moved_aside",
                        "time": now,
                        "path": str(path),
                        "moved_to": str(opened.recovered_from),
                        "error": opened.problem,
                    }
                ]
            )
            await buffer.flush()
        _log.info(
            "buffer_opened",
            path=str(path),
            epoch=buffer.epoch,
            next_seq=buffer._next_seq,
            blocks_pending=store.counters.blocks_pending,
            bytes_used=store.counters.bytes_used,
        )
        return buffer

    # -- puts (return before the commit) -------------------------------------------------

    async def put_samples(self, samples: Sequence[Sample], catalog: Catalog) -> int:
        """Queue one TELEMETRY block (after a CATALOG block if the catalog is new); its seq."""
        self._check_open()
        now = self._clock.now()
        if catalog.id != self._catalog_id:
            seq = self._next_seq
            data = encode_catalog(epoch=self.epoch, seq=seq, created=now, catalog=catalog)
            self._put(seq, BlockKind.CATALOG, data, now, len(catalog.entries))
            self._catalog_id = catalog.id
        seq = self._next_seq
        data = encode_telemetry(
            epoch=self.epoch, seq=seq, created=now, samples=samples, catalog=catalog
        )
        self._put(seq, BlockKind.TELEMETRY, data, now, len(samples))
        await self._backpressure()
        return seq

    async def put_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Queue one EVENTS block (strict JSON objects); its seq."""
        self._check_open()
        now = self._clock.now()
        seq = self._next_seq
        data = encode_events(epoch=self.epoch, seq=seq, created=now, events=events)
        self._put(seq, BlockKind.EVENTS, data, now, len(events))
        await self._backpressure()
        return seq

    async def flush(self) -> None:
        """Wait until every block put so far is committed; raise the first failed put since
        the last flush (StoreUnavailableError / StoreCorruptError)."""
        self._check_open()
        await self._call(lambda: None)
        self._raise_failure()

    # -- the uploader's side (await the writer) ------------------------------------------

    async def pending(
        self, *, limit: int, newest_first: bool, kinds: Collection[BlockKind] | None = None
    ) -> list[StoredBlock]:
        """Blocks neither acked nor quarantined: CATALOG blocks first (oldest first), then
        the others newest or oldest first; at most ``limit`` in all."""
        self._check_open()
        return await self._call(lambda: self._store.pending(limit, newest_first, kinds))

    async def ack(self, seqs: Sequence[int]) -> None:
        """Delete blocks the receiver acknowledged (unknown seqs are ignored)."""
        self._check_open()
        await self._call(lambda: self._store.ack(list(seqs)))

    async def quarantine(self, seq: int, reason: str) -> None:
        """Keep the block but never offer it again; counted in the budget."""
        self._check_open()
        now = self._clock.now()
        if not await self._call(lambda: self._store.quarantine(seq, reason, now)):
            _log.debug("buffer_quarantine_ignored", seq=seq, reason=reason)
            return
        _log.warning("buffer_block_quarantined", seq=seq, reason=reason)

    def budget(self) -> OutageBudget:
        """The outage budget now, from in-memory counters (no I/O)."""
        c = self._store.counters
        rate = self._meter.bytes_per_hour(self._clock.monotonic())
        cap = db_cap_bytes(self._max_bytes, self._page)
        age = None if c.oldest_created is None else max(0.0, self._clock.now() - c.oldest_created)
        return OutageBudget(
            bytes_used=c.bytes_used,
            max_bytes=self._max_bytes,
            blocks_pending=c.blocks_pending,
            samples_pending=c.samples_pending,
            oldest_unsent_age_s=age,
            bytes_per_hour=rate,
            hours_left=hours_left(cap - c.bytes_used, rate),
            evictions=c.evictions,
            quarantined=c.quarantined,
        )

    async def close(self) -> None:
        """Commit everything queued, close the database and stop the writer thread (then
        raise a failure of the last puts, if any)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._store.close)
        finally:
            self._executor.shutdown(wait=False)
        self._raise_failure()

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the buffer is closed")

    def _put(self, seq: int, kind: BlockKind, data: bytes, created: float, count: int) -> None:
        self._raise_failure()  # an earlier put failed: say so instead of queuing more
        self._next_seq = seq + 1
        self._meter.add(self._clock.monotonic(), footprint(len(data), self._page))
        future = self._executor.submit(self._store.insert, seq, kind, data, created, count)
        future.add_done_callback(self._put_done)
        self._queued.append(future)

    def _put_done(self, future: concurrent.futures.Future[None]) -> None:
        """On the writer thread: keep a failed put for the next put or flush, and log it."""
        exc = None if future.cancelled() else future.exception()
        if exc is None:
            if self._failures:
                _log.info("buffer_put_recovered", after_failures=self._failures)
                self._failures = 0
            return
        self._failed.append(exc)
        self._failures += 1
        emit = _log.warning if self._failures == 1 else _log.debug
        emit("buffer_put_failed", error=f"{type(exc).__name__}: {exc}", failures=self._failures)

    def _raise_failure(self) -> None:
        """Raise the first put failure not yet reported (the rest were logged)."""
        failed = []
        while self._failed:
            failed.append(self._failed.popleft())
        if failed:
            self._catalog_id = None  # the catalog may be what failed: store it again
            raise failed[0]

    async def _backpressure(self) -> None:
        queued = self._queued
        while queued and queued[0].done():
            queued.popleft()
        while len(queued) > MAX_QUEUED:
            oldest = asyncio.wrap_future(queued.popleft())
            await asyncio.wait([oldest])
            if not oldest.cancelled():
                oldest.exception()  # kept by _put_done for later; not this put's error

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
