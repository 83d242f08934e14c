"""Time as a dependency: the one ``Clock`` every component that waits or measures uses.

Owns: the ``Clock`` protocol (``monotonic``, ``now``, ``sleep``), the real ``SystemClock`` and
the deterministic ``FakeClock`` that tests drive by hand.

Must not: be bypassed. No module of the daemon (agent/, drivers/) calls ``time.monotonic``,
``time.time``, ``time.perf_counter`` (or their ``_ns`` forms), ``datetime.now``,
``time.sleep``, ``asyncio.sleep`` or ``loop.call_later``: it asks the Clock injected through
its constructor (the composition root, agent.service.app, builds the one ``SystemClock``), so
a FakeClock drives every loop in tests. ruff enforces it (TID251,
``[tool.ruff.lint.flake8-tidy-imports.banned-api]`` in pyproject.toml); only this module,
the demo's simulated plant, tests, benchmarks and tools are exempt. The pure modules
(``Must not: read a clock``) never see a Clock at all: they receive times as plain floats.
Real time on purpose, and only there: a deadline on a real peer's answer is real time
(``asyncio.timeout`` around a socket's I/O: agent.remote.diagnostics, drivers.opcua_connect);
so is the forced exit after ``agent.shutdown_timeout_s`` (agent.service.shutdown: it must end
the process even when the loop is stuck), and a certificate's validity, checked against the
wall clock's date (drivers.opcua_connect, drivers.opcua_security: ``noqa: TID251`` there).

Invariants: ``monotonic()`` never decreases; ``now()`` is unix seconds (UTC) and is for
timestamps only, never for measuring intervals (it can jump when NTP steps the wall clock).

FakeClock semantics (exactly):

- Time only moves when the test moves it (``advance`` or ``jump``); ``now()`` moves with
  ``monotonic()`` (``now = start_now + (monotonic - start_monotonic)``).
- ``await sleep(s)`` with ``s > 0`` registers a sleeper with deadline ``monotonic() + s`` and
  suspends on an asyncio future until time reaches the deadline: it is woken when the clock
  reaches ``deadline`` exactly (``deadline <= monotonic``), never before. ``sleep(s)`` with
  ``s <= 0`` does not register; it yields to the event loop once (like ``asyncio.sleep(0)``).
  NaN raises ``ValueError``. A cancelled sleeper is forgotten.
- ``await advance(s)`` first yields to the event loop ``settle`` times at the current time (so
  tasks just created start their sleeps from now, not from the target), then moves time
  forward to ``target = monotonic() + s`` (computed before that first yield) one deadline at a
  time, in deadline order (ties in the order ``sleep`` was called): it sets ``monotonic()`` to
  the earliest pending deadline ``<= target``, wakes every sleeper due at that instant, then
  yields to the event loop ``settle`` times so the woken tasks run; a sleep they start is
  measured from that deadline and is honoured within the same ``advance`` if it falls due by
  ``target``. Finally time is set to ``target`` and the loop is yielded to ``settle`` times
  once more. So a task that sleeps 1 s in a loop wakes at exactly 1.0, 2.0, 3.0 during
  ``advance(3.5)``. Hand-offs longer than ``settle`` loop iterations between deadlines (task
  A wakes B wakes C ...) may still be in flight when the next deadline is processed: raise
  ``settle`` if a test needs that.
- ``advance`` cannot hang: it only ever awaits ``asyncio.sleep(0)``, and more than
  ``max_wakeups`` deadlines in one call (a runaway loop, ``advance(1e9)`` over a 10 ms sleep)
  raise ``RuntimeError`` instead of spinning. ``advance(0)`` wakes sleepers already due and
  lets the loop settle: the way to "let everything started so far run".
- ``jump(s)`` is the synchronous variant: sets time to ``monotonic() + s`` at once and wakes
  every sleeper due by then, in deadline order; the woken tasks run only when the event loop
  next gets control, and a sleep they start is measured from the new time.
- Floats are floats: ten ``advance(0.1)`` do not reach a 1.0 deadline. Use binary-exact
  steps (0.5, 0.25) or advance past the deadline.
- Everything is deterministic: no real time is read, and asyncio runs ready callbacks FIFO.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """Monotonic time for intervals, wall-clock time for timestamps, and sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (arbitrary origin)."""
        ...

    def now(self) -> float:
        """Unix time in seconds (UTC), for timestamps only."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` (yield once when ``seconds <= 0``)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class FakeClock:
    """A clock that only moves when a test says so. See the module docstring for semantics."""

    def __init__(
        self,
        monotonic: float = 0.0,
        now: float = 1_700_000_000.0,
        *,
        settle: int = 32,
        max_wakeups: int = 100_000,
    ) -> None:
        if settle < 1 or max_wakeups < 1:
            raise ValueError("settle and max_wakeups must be at least 1")
        self._monotonic = float(monotonic)
        self._offset = float(now) - self._monotonic
        self._settle = settle
        self._max_wakeups = max_wakeups
        self._sequence = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    # -- the Clock protocol ------------------------------------------------------------------

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> float:
        return self._monotonic + self._offset

    async def sleep(self, seconds: float) -> None:
        if math.isnan(seconds):
            raise ValueError("cannot sleep for NaN seconds")
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._monotonic + seconds, next(self._sequence), future))
        await future

    # -- driving it --------------------------------------------------------------------------

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock right now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, or None when nobody sleeps."""
        self._drop_finished()
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, deadline by deadline, letting woken tasks run."""
        target = self._target(seconds)
        await self._let_run()  # tasks already scheduled start their sleeps at the current time
        wakeups = 0
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            wakeups += 1
            if wakeups > self._max_wakeups:
                raise RuntimeError(
                    f"FakeClock.advance({seconds}) processed more than {self._max_wakeups} "
                    f"deadlines (stopped at monotonic={self._monotonic}): a runaway sleep loop?"
                )
            self._monotonic = max(self._monotonic, deadline)
            self._wake_due()
            await self._let_run()
        self._monotonic = max(self._monotonic, target)  # never backwards, even if raced
        await self._let_run()

    def jump(self, seconds: float) -> None:
        """Set time forward by ``seconds`` at once and wake every sleeper due by then."""
        self._monotonic = self._target(seconds)
        self._wake_due()

    # -- internals ---------------------------------------------------------------------------

    def _target(self, seconds: float) -> float:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"can only move time forward by a finite amount, got {seconds}")
        return self._monotonic + seconds

    def _drop_finished(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._monotonic:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def _let_run(self) -> None:
        for _ in range(self._settle):
            await asyncio.sleep(0)
