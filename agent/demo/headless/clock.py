"""Sim time for a headless agent: a FakeClock that knows which task sleeps on it, and the test
of "everything else is parked" the rig waits for before it moves sim time on.

Owns: `TaskClock` (the Clock protocol over a FakeClock: every sleep is the FakeClock's, and
`sleeping` maps each task that sleeps on it to its deadline) and `quiet` (wait until every
other task is parked: asleep on the clock, or waiting on an asyncio Event or a TaskGroup,
with nothing woken that has not run yet).
Must not: move time (the rig does, with the mill), read real time except as the deadline of
a wait for progress (worker threads finishing), or know any agent module's internals.
Invariants: `TaskClock.now() == FakeClock.now()` and the same for monotonic; a task is in
`sleeping` exactly while its FakeClock sleep is pending.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from agent.domain.clock import FakeClock

__all__ = ["TaskClock", "agent_task", "quiet"]

PARKED = frozenset({"FakeClock.sleep", "Event.wait", "TaskGroup.__aexit__"})
"""The innermost coroutines of a task that waits only for the clock or for an event."""
IO_POLL_S = 0.001
"""How long one look waits for a busy task (real time: worker threads finish meanwhile)."""


class TaskClock:
    """The Clock the agent side gets: FakeClock's time and sleeps, with the sleepers known."""

    def __init__(self, fake: FakeClock) -> None:
        self.fake = fake
        self.sleeping: dict[asyncio.Task[Any], float] = {}

    def monotonic(self) -> float:
        return self.fake.monotonic()

    def now(self) -> float:
        return self.fake.now()

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        if task is None or seconds <= 0:
            await self.fake.sleep(seconds)
            return
        self.sleeping[task] = self.fake.monotonic() + seconds
        try:
            await self.fake.sleep(seconds)
        finally:
            self.sleeping.pop(task, None)

    def waits_for_time(self, task: asyncio.Task[Any]) -> bool:
        """The task sleeps on the clock and its deadline is still ahead."""
        deadline = self.sleeping.get(task)
        return deadline is not None and deadline > self.fake.monotonic()


def _parked(task: asyncio.Task[Any]) -> bool:
    """The task waits for the clock or an event, and that wait has not ended yet."""
    coro: Any = task.get_coro()
    innermost = ""
    awaited: Any = None
    while coro is not None and hasattr(coro, "cr_await"):
        innermost = getattr(coro, "__qualname__", "")
        awaited = coro.cr_await
        coro = awaited
    if innermost not in PARKED:
        return False
    return not (isinstance(awaited, asyncio.Future) and awaited.done())


def agent_task(task: asyncio.Task[Any]) -> bool:
    """The task runs the agent's code (its outermost coroutine is defined in agent/), not a
    network library's or a driver's (a rig with a real network peer waits only for these)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}agent{os.sep}" in code.co_filename


async def quiet(*, ignore: frozenset[asyncio.Task[Any]] = frozenset(), within: float = 60.0,
                among: Callable[[asyncio.Task[Any]], bool] | None = None) -> None:  # fmt: skip
    """Return once every task but the caller (and `ignore`) is parked, of the tasks `among`
    selects (None: all); AssertionError naming the busy tasks when that does not happen
    within `within` s of real time."""
    deadline = time.monotonic() + within
    me = asyncio.current_task()
    while True:
        for _ in range(3):
            await asyncio.sleep(0)  # woken tasks run before they are judged
        busy = [t for t in asyncio.all_tasks() if t is not me and t not in ignore
                and not t.done() and (among is None or among(t)) and not _parked(t)]  # fmt: skip
        if not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: tasks still busy: {busy}")
        await asyncio.wait(busy, timeout=IO_POLL_S, return_when=asyncio.FIRST_COMPLETED)
