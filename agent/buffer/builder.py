"""The block builder: collects the drivers' samples into one telemetry block per flush interval.

Owns: the open block (samples since the last flush, in arrival order), the flush schedule
(every ``flush_interval_s`` on the injected clock, drift-free; early when
``max_block_samples`` samples are open, and at once for the first samples after start, so
the first data is durable without waiting a whole interval), and dropping samples that
cannot be stored: tags not in the catalog (WARNING once per tag) and samples
``sample_problem`` refuses (WARNING once).
Must not: block or await in ``add`` (it is a driver's ``SampleSink``, called on the event
loop), touch SQLite (the buffer does), or reorder samples.
Invariants:
- ``add`` is O(batch) and never raises for a well-formed batch; samples of unknown tags are
  counted in ``dropped_unknown`` and never reach a block.
- A flush takes the whole open block and starts a new one before it awaits anything, so
  samples added during a flush go into the next block; blocks hold at most
  ``max_block_samples`` samples (a larger open block is split in order).
- Deadlines are ``start + k * flush_interval_s``; a late wake-up skips the missed ticks
  instead of bunching flushes. On cancellation the open block is flushed, then the
  cancellation is re-raised.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

from agent.buffer.blocks import Catalog, sample_problem
from agent.buffer.buffer import Buffer
from agent.domain.clock import Clock
from agent.domain.logger import get_logger
from agent.domain.samples import Sample

__all__ = ["BlockBuilder"]

_log = get_logger(__name__)
_MAX_TRACKED_UNKNOWN = 1000


class BlockBuilder:
    """Turns the stream of samples into telemetry blocks in the buffer."""

    def __init__(
        self,
        buffer: Buffer,
        catalog: Catalog,
        *,
        flush_interval_s: float,
        max_block_samples: int,
        clock: Clock,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        if not flush_interval_s > 0 or max_block_samples < 1:
            raise ValueError("flush_interval_s must be > 0 and max_block_samples >= 1")
        self._buffer, self._catalog, self._clock = buffer, catalog, clock
        self._interval = flush_interval_s
        self._max = max_block_samples
        self._known = frozenset(entry.name for entry in catalog.entries)
        self._open: list[Sample] = []
        self._full = asyncio.Event()
        self._first = True  # the first samples after start are flushed at once
        self._on_progress = on_progress  # called after every flush of run(): the watchdog's beat
        self.unknown_tags: dict[str, int] = {}
        self.dropped_unknown = 0
        self.dropped_invalid = 0
        self.blocks = 0
        self.samples = 0

    def add(self, batch: Sequence[Sample]) -> None:
        """Take one batch from a driver (a SampleSink): O(batch), never blocks."""
        known, keep = self._known, self._open.append
        for sample in batch:
            if sample.tag in known:
                keep(sample)
            else:
                self._drop_unknown(sample.tag)
        if len(self._open) >= self._max or (self._first and self._open):
            self._first = False
            self._full.set()

    async def run(self) -> None:
        """Flush on every tick of the interval and whenever a block is full, until cancelled."""
        deadline = self._clock.monotonic() + self._interval
        try:
            while True:
                await self._wait(deadline)
                now = self._clock.monotonic()
                if now >= deadline:
                    deadline += self._interval * (math.floor((now - deadline) / self._interval) + 1)
                await self.flush()
                if self._on_progress is not None:
                    self._on_progress()
        except asyncio.CancelledError:
            await self.flush()
            raise

    async def flush(self) -> None:
        """Put the open samples into the buffer now (in blocks of at most max_block_samples)."""
        samples, self._open = self._open, []
        self._full.clear()
        for start in range(0, len(samples), self._max):
            try:
                await self._put(samples[start : start + self._max])
            except BaseException:  # not stored: keep them for the next flush, then re-raise
                self._open[:0] = samples[start:]
                raise

    # -- internals -----------------------------------------------------------------------

    async def _wait(self, deadline: float) -> None:
        if self._full.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(deadline - self._clock.monotonic()))
        filled = asyncio.ensure_future(self._full.wait())
        try:
            await asyncio.wait((sleeper, filled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            filled.cancel()

    async def _put(self, samples: list[Sample]) -> None:
        try:
            await self._buffer.put_samples(samples, self._catalog)
        except (TypeError, ValueError, KeyError) as exc:
            good = [s for s in samples if sample_problem(s, self._catalog) is None]
            bad = len(samples) - len(good)
            if not bad:
                raise  # not the samples' fault: a bug or a store error, for the supervisor
            self.dropped_invalid += bad
            emit = _log.warning if self.dropped_invalid == bad else _log.debug
            emit("samples_dropped", reason=f"{type(exc).__name__}: {exc}", samples=bad)
            if not good:
                return
            await self._buffer.put_samples(good, self._catalog)
            samples = good
        self.blocks += 1
        self.samples += len(samples)

    def _drop_unknown(self, tag: str) -> None:
        self.dropped_unknown += 1
        seen = self.unknown_tags.get(tag)
        if seen is None:
            if len(self.unknown_tags) >= _MAX_TRACKED_UNKNOWN:
                return
            _log.warning("sample_tag_unknown", tag=tag)
            seen = 0
        self.unknown_tags[tag] = seen + 1
