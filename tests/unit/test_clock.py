"""The clocks: FakeClock wakes sleepers in deadline order, exactly on time, never before."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from agent.domain.clock import Clock, FakeClock, SystemClock

Woke = list[tuple[str, float]]
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """create_task that keeps a reference and cancels whatever is left at the end."""
    tasks: list[asyncio.Task[None]] = []

    def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        tasks.append(asyncio.create_task(coro))
        return tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def sleep_then_note(clock: FakeClock, seconds: float, name: str, woke: Woke) -> None:
    await clock.sleep(seconds)
    woke.append((name, clock.monotonic()))


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [SystemClock(), FakeClock()]  # checked by mypy
    assert len(clocks) == 2


async def test_system_clock_reads_real_time() -> None:
    clock = SystemClock()
    first = clock.monotonic()
    await clock.sleep(0)
    await clock.sleep(-1)  # negative is "yield once", like asyncio.sleep
    assert clock.monotonic() >= first
    assert abs(clock.now() - time.time()) < 5


def test_fake_clock_starts_where_told_and_now_follows_monotonic() -> None:
    clock = FakeClock(monotonic=100.0, now=1_000_000.0)
    assert clock.monotonic() == 100.0
    assert clock.now() == 1_000_000.0
    clock.jump(2.5)
    assert clock.monotonic() == 102.5
    assert clock.now() == 1_000_002.5


async def test_sleepers_wake_in_deadline_order_at_their_deadline(spawn: Spawn) -> None:
    clock = FakeClock()
    woke: Woke = []
    tasks = [
        spawn(sleep_then_note(clock, seconds, name, woke))
        for name, seconds in [("c", 3.0), ("a", 1.0), ("b", 2.0)]
    ]
    await clock.advance(0)
    assert clock.sleepers == 3
    await clock.advance(5)
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.monotonic() == 5.0
    assert all(task.done() for task in tasks)


async def test_equal_deadlines_wake_in_the_order_they_slept(spawn: Spawn) -> None:
    clock = FakeClock()
    woke: Woke = []
    for name in "xyz":
        spawn(sleep_then_note(clock, 1.0, name, woke))
    await clock.advance(0)
    await clock.advance(1.0)
    assert [name for name, _ in woke] == ["x", "y", "z"]


async def test_no_sleeper_wakes_before_its_deadline(spawn: Spawn) -> None:
    clock = FakeClock()
    woke: Woke = []
    task = spawn(sleep_then_note(clock, 1.0, "a", woke))
    await clock.advance(0.75)
    assert woke == []
    assert not task.done()
    assert clock.next_deadline() == 1.0
    await clock.advance(0.25)
    assert woke == [("a", 1.0)]
    assert clock.next_deadline() is None


async def test_sleeps_started_during_advance_are_honoured_in_order(spawn: Spawn) -> None:
    clock = FakeClock()
    woke: Woke = []

    async def ticker(name: str, period: float) -> None:
        while True:
            await clock.sleep(period)
            woke.append((name, clock.monotonic()))

    tasks = [spawn(ticker("fast", 1.5)), spawn(ticker("slow", 2.0))]
    await clock.advance(0)
    await clock.advance(4.5)
    assert woke == [("fast", 1.5), ("slow", 2.0), ("fast", 3.0), ("slow", 4.0), ("fast", 4.5)]
    assert not any(task.done() for task in tasks)


async def test_sleep_zero_yields_to_other_tasks_without_time_passing(spawn: Spawn) -> None:
    clock = FakeClock(monotonic=7.0)
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    spawn(other())
    order.append("before")
    await clock.sleep(0)
    order.append("after")
    assert order == ["before", "other", "after"]
    assert clock.monotonic() == 7.0
    assert clock.sleepers == 0


async def test_cancelled_sleeper_is_forgotten(spawn: Spawn) -> None:
    clock = FakeClock()
    woke: Woke = []
    doomed = spawn(sleep_then_note(clock, 1.0, "doomed", woke))
    spawn(sleep_then_note(clock, 2.0, "kept", woke))
    await clock.advance(0)
    doomed.cancel()
    await clock.advance(0)
    assert doomed.cancelled()
    assert clock.sleepers == 1
    assert clock.next_deadline() == 2.0
    await clock.advance(3)
    assert woke == [("kept", 2.0)]


async def test_jump_wakes_due_sleepers_who_run_at_the_next_yield(spawn: Spawn) -> None:
    clock = FakeClock()
    woke: Woke = []
    spawn(sleep_then_note(clock, 2.0, "b", woke))
    spawn(sleep_then_note(clock, 1.0, "a", woke))
    spawn(sleep_then_note(clock, 9.0, "late", woke))
    await clock.advance(0)
    clock.jump(5)
    assert woke == []  # jump is synchronous: nobody has run yet
    await asyncio.sleep(0)
    assert woke == [("a", 5.0), ("b", 5.0)]  # in deadline order, all seeing the new time
    assert clock.sleepers == 1


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
async def test_time_only_moves_forward_by_finite_amounts(seconds: float) -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="forward"):
        await clock.advance(seconds)
    with pytest.raises(ValueError, match="forward"):
        clock.jump(seconds)
    assert clock.monotonic() == 0.0


async def test_sleeping_for_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        await FakeClock().sleep(math.nan)


async def test_runaway_loop_raises_instead_of_hanging(spawn: Spawn) -> None:
    clock = FakeClock(max_wakeups=50)

    async def spin() -> None:
        while True:
            await clock.sleep(0.01)

    task = spawn(spin())
    await clock.advance(0)
    with pytest.raises(RuntimeError, match="runaway"):
        await clock.advance(1e9)
    assert clock.monotonic() < 1.0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_settings_must_be_positive() -> None:
    with pytest.raises(ValueError, match="settle"):
        FakeClock(settle=0)
