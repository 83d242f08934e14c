"""What the uploader has done and what it still owes the buffer.

Owns: the uploader's counters (``UploaderStats``) and drain progress (``SyncProgress``), the
result of one finished request (``Result``), and ``AckBatch``: the seqs the receiver
acknowledged that the buffer has not deleted yet, deleted in batches, kept (and retried
with the shared backoff) when the buffer cannot delete them now: a full disk.
Must not: send anything, decide what an answer means (agent.sync.policy), or read real
time (the injected ``Clock``).
Invariants: an acknowledged seq stays in the batch until the buffer's delete committed, so
it is never offered for upload again in the meantime (``seqs``) and never evicted (the
buffer keeps it held); a failing delete logs ``sync_ack_failed`` WARNING once per streak
(repeats DEBUG) and ``sync_ack_recovered`` INFO when a delete succeeds again; it never
raises ``StoreUnavailableError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.buffer.buffer import Buffer, StoredBlock, StoreUnavailableError
from agent.domain.backoff import Backoff
from agent.domain.clock import Clock
from agent.domain.logger import get_logger
from agent.sync import policy

__all__ = ["AckBatch", "Result", "SyncProgress", "UploaderStats"]

_log = get_logger("agent.sync.uploader")


@dataclass
class UploaderStats:
    """Counters for metrics (a copy from ``Uploader.stats()``); latencies on the Clock."""

    blocks_sent: int = 0
    bytes_sent: int = 0
    acks: int = 0
    duplicates: int = 0
    retries: int = 0
    quarantined: int = 0
    in_flight: int = 0
    consecutive_failures: int = 0
    last_latency_s: float | None = None
    latency_sum_s: float = 0.0  # of every acked request (count: acks)
    last_error: str | None = None
    acks_waiting: int = 0  # acknowledged, not yet deleted from the buffer


@dataclass(frozen=True)
class SyncProgress:
    """What is left to upload; rate and ETA are known only while a backlog drains."""

    remaining_blocks: int
    remaining_samples: int
    draining: bool
    blocks_per_s: float | None
    eta_s: float | None
    drained_blocks: int = 0  # acked since the current drain started (0 when not draining)


@dataclass(frozen=True)
class Result:
    """One finished request: the block, what the answer means, and how it went."""

    block: StoredBlock
    outcome: policy.Outcome
    status: int | None
    error_kind: str
    detail: str
    duplicate: bool
    generation: int
    latency_s: float
    maybe_delivered: bool = False  # sent, and the answer was lost: keep the block held


class AckBatch:
    """Acknowledged seqs on their way out of the buffer, ``size`` at a time."""

    def __init__(
        self, buffer: Buffer, clock: Clock, backoff: Backoff, rand: Callable[[], float], size: int
    ) -> None:
        self._buffer, self._clock, self._backoff, self._rand = buffer, clock, backoff, rand
        self._size = size
        self.seqs: dict[int, None] = {}  # insertion-ordered set
        self._failures = 0
        self._gate = 0.0

    def __len__(self) -> int:
        return len(self.seqs)

    def add(self, seq: int) -> None:
        self.seqs[seq] = None

    @property
    def due(self) -> bool:
        return len(self.seqs) >= self._size

    async def flush(self, *, force: bool = False) -> None:
        """Delete the batch from the buffer; on StoreUnavailableError keep it for later
        (not before the backoff's next delay, unless ``force``: the last try on the way out)."""
        now = self._clock.monotonic()
        if not self.seqs or (now < self._gate and not force):
            return
        seqs = list(self.seqs)
        try:
            await self._buffer.ack(seqs)
        except StoreUnavailableError as exc:
            delay = self._backoff.delay(self._failures, self._rand())
            self._failures += 1
            self._gate = now + delay
            (_log.warning if self._failures == 1 else _log.debug)(
                "sync_ack_failed", blocks=len(seqs), error=str(exc), retry_in_s=round(delay, 3),
                hint="the blocks were delivered; they are deleted once the buffer can write",
            )  # fmt: skip
            return
        for seq in seqs:
            self.seqs.pop(seq, None)
        if self._failures:
            _log.info("sync_ack_recovered", after_failures=self._failures, blocks=len(seqs))
            self._failures, self._gate = 0, 0.0
