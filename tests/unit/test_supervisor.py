"""The supervisor, driven by a FakeClock: restarts with the backoff, isolation, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from agent.domain.backoff import Backoff
from agent.domain.clock import FakeClock
from agent.domain.errors import ConnectionLostError, DeviceTimeoutError
from agent.service.logs import configure_logging
from agent.service.supervisor import Supervisor, TaskSnapshot

FOREVER = 1e9


def rands(*values: float) -> Callable[[], float]:
    """A rand source that hands out exactly these values, then fails loudly."""
    it = iter(values)
    return lambda: next(it)


def by_name(supervisor: Supervisor) -> dict[str, TaskSnapshot]:
    return {snap.name: snap for snap in supervisor.snapshot()}


def events(captured: Sequence[Mapping[str, Any]], *names: str) -> list[tuple[str, str, str]]:
    return [(e["event"], e["log_level"], e["task"]) for e in captured if e["event"] in names]


async def cancel_and_join(run: asyncio.Task[None]) -> None:
    """Cancel run() and check it ends promptly, by re-raising the cancellation."""
    run.cancel()
    done, _ = await asyncio.wait({run}, timeout=5)  # real seconds: only a hang takes that long
    assert done == {run}, "run() did not stop within 5 s of being cancelled"
    assert run.cancelled(), f"run() ended with {run.exception()!r} instead of CancelledError"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def test_failing_task_restarts_after_exactly_the_backoff_delays() -> None:
    clock = FakeClock()
    backoff = Backoff()
    supervisor = Supervisor(clock, backoff=backoff, rand=rands(0.1, 0.9, 0.3), healthy_after_s=30)
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(clock.monotonic())
        if len(starts) <= 3:
            raise ConnectionLostError(f"drop {len(starts)}")
        await clock.sleep(FOREVER)

    supervisor.add("plc", flaky)
    run = asyncio.create_task(supervisor.run())
    await clock.advance(20)

    d0, d1, d2 = backoff.delay(0, 0.1), backoff.delay(1, 0.9), backoff.delay(2, 0.3)
    assert starts == [0.0, d0, d0 + d1, d0 + d1 + d2]
    snap = by_name(supervisor)["plc"]
    assert (snap.state, snap.since, snap.restarts) == ("running", d0 + d1 + d2, 3)
    assert snap.consecutive_failures == 3
    assert snap.last_error == "ConnectionLostError: drop 3"
    assert clock.sleepers == 2  # the task and its health timer: earlier timers were cancelled

    await clock.advance(30)  # healthy for healthy_after_s: the streak is forgiven
    snap = by_name(supervisor)["plc"]
    assert snap.consecutive_failures == 0
    assert snap.restarts == 3
    assert clock.sleepers == 1  # the health timer has done its job
    assert snap.last_error == "ConnectionLostError: drop 3"
    await cancel_and_join(run)


async def test_state_is_backing_off_between_failure_and_restart() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=rands(0.5, 0.5))
    calls = 0

    async def once_broken() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DeviceTimeoutError("no answer")
        await clock.sleep(FOREVER)

    supervisor.add("modbus", once_broken, critical=False)
    assert by_name(supervisor)["modbus"].state == "pending"
    run = asyncio.create_task(supervisor.run())
    await clock.advance(0.25)
    snap = by_name(supervisor)["modbus"]
    assert (snap.state, snap.since, snap.critical) == ("backing_off", 0.0, False)
    assert clock.next_deadline() == 0.5
    await clock.advance(0.25)
    assert by_name(supervisor)["modbus"].state == "running"
    assert calls == 2
    await cancel_and_join(run)


async def test_failing_task_never_stops_a_healthy_sibling() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5)
    ticks = 0

    async def healthy() -> None:
        nonlocal ticks
        while True:
            await clock.sleep(1)
            ticks += 1

    async def broken() -> None:
        raise RuntimeError("always")

    supervisor.add("healthy", healthy)
    supervisor.add("broken", broken)
    run = asyncio.create_task(supervisor.run())
    await clock.advance(600)

    assert ticks == 600
    snaps = by_name(supervisor)
    assert snaps["healthy"].restarts == 0
    assert snaps["healthy"].state == "running"
    assert snaps["broken"].restarts > 10  # never given up
    assert snaps["broken"].last_error == "RuntimeError: always"
    await cancel_and_join(run)


async def test_cancelling_run_cancels_every_child_and_propagates() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5)
    cleaned_up: list[str] = []

    async def worker(name: str) -> None:
        try:
            await clock.sleep(FOREVER)
        finally:
            cleaned_up.append(name)

    async def broken() -> None:
        raise RuntimeError("boom")

    supervisor.add("a", lambda: worker("a"))
    supervisor.add("b", lambda: worker("b"))
    supervisor.add("broken", broken)  # will be backing off when the cancel arrives
    run = asyncio.create_task(supervisor.run())
    await clock.advance(0.1)
    assert by_name(supervisor)["broken"].state == "backing_off"

    await cancel_and_join(run)
    assert sorted(cleaned_up) == ["a", "b"]
    assert clock.sleepers == 0


async def test_child_swallowing_or_failing_on_cancel_does_not_break_cancellation() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5)
    starts: list[str] = []

    async def stubborn() -> None:
        starts.append("stubborn")
        try:
            await clock.sleep(FOREVER)
        except asyncio.CancelledError:
            return  # swallows the cancellation: the supervisor must still stop

    async def messy() -> None:
        starts.append("messy")
        try:
            await clock.sleep(FOREVER)
        finally:
            raise OSError("cleanup failed")

    supervisor.add("stubborn", stubborn)
    supervisor.add("messy", messy)
    run = asyncio.create_task(supervisor.run())
    await clock.advance(1)
    with capture_logs() as captured:
        await cancel_and_join(run)  # a CancelledError, not an ExceptionGroup
    await clock.advance(100)
    assert starts == ["stubborn", "messy"]  # nobody was restarted
    assert events(captured, "task_failed_while_stopping") == [
        ("task_failed_while_stopping", "warning", "messy")
    ]


async def test_task_that_returns_is_restarted_with_a_warning() -> None:
    clock = FakeClock()
    backoff = Backoff(initial_s=1.0)
    supervisor = Supervisor(clock, backoff=backoff, rand=lambda: 0.5)
    starts: list[float] = []

    async def quitter() -> None:
        starts.append(clock.monotonic())
        if len(starts) <= 2:
            return
        await clock.sleep(FOREVER)

    supervisor.add("quitter", quitter)
    with capture_logs() as captured:
        run = asyncio.create_task(supervisor.run())
        await clock.advance(10)
        await cancel_and_join(run)

    assert starts == [0.0, 1.0, 3.0]
    assert events(captured, "task_returned") == [
        ("task_returned", "warning", "quitter"),
        ("task_returned", "debug", "quitter"),
    ]
    assert by_name(supervisor)["quitter"].restarts == 2


async def test_first_failure_warns_repeats_debug_and_recovery_is_info() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5, healthy_after_s=10)
    errors: list[Exception] = [
        ConnectionLostError("refused"),
        ConnectionLostError("refused again"),
        DeviceTimeoutError("silent"),  # a different kind of failure deserves a warning
        DeviceTimeoutError("still silent"),
    ]

    async def flaky() -> None:
        if errors:
            raise errors.pop(0)
        await clock.sleep(FOREVER)

    supervisor.add("plc", flaky)
    with capture_logs() as captured:
        run = asyncio.create_task(supervisor.run())
        await clock.advance(7.5 + 9.75)  # 4 failures (0.5+1+2+4 s), then 9.75 s of running
        assert events(captured, "task_recovered") == []
        await clock.advance(0.25)
        await cancel_and_join(run)

    assert events(captured, "task_failed", "task_recovered") == [
        ("task_failed", "warning", "plc"),
        ("task_failed", "debug", "plc"),
        ("task_failed", "warning", "plc"),
        ("task_failed", "debug", "plc"),
        ("task_recovered", "info", "plc"),
    ]
    first = captured[0]
    assert first["error"] == "ConnectionLostError: refused"
    assert first["attempt"] == 1
    assert first["retry_in_s"] == 0.5
    assert "exc_info" not in first  # an expected failure is one line, no traceback
    recovered = next(e for e in captured if e["event"] == "task_recovered")
    assert recovered["after_failures"] == 4


async def test_attempts_reset_after_a_healthy_run() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5, healthy_after_s=10)
    starts: list[float] = []
    # fail, fail, run exactly healthy_after_s then fail (counts as healthy), fail
    lifetimes = iter([0.0, 0.0, 10.0, 0.0])

    async def task() -> None:
        starts.append(clock.monotonic())
        lifetime = next(lifetimes, FOREVER)
        await clock.sleep(lifetime)
        raise ConnectionLostError("dropped")

    supervisor.add("plc", task)
    with capture_logs() as captured:
        run = asyncio.create_task(supervisor.run())
        await clock.advance(100)
        await cancel_and_join(run)

    # delays 0.5, 1.0, then the streak restarts: 0.5 again, then 1.0
    assert starts == [0.0, 0.5, 1.5, 1.5 + 10 + 0.5, 1.5 + 10 + 0.5 + 1.0]
    levels = [e["log_level"] for e in captured if e["event"] == "task_failed"]
    assert levels == ["warning", "debug", "warning", "debug"]


async def test_leaked_cancelled_error_is_a_failure_not_a_silent_exit() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5)
    starts = 0

    async def leaky() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise asyncio.CancelledError  # e.g. a library's internal task cancellation
        await clock.sleep(FOREVER)

    supervisor.add("leaky", leaky)
    run = asyncio.create_task(supervisor.run())
    await clock.advance(1)
    assert starts == 2
    snap = by_name(supervisor)["leaky"]
    assert snap.restarts == 1
    assert snap.last_error is not None and snap.last_error.startswith("CancelledError")
    await cancel_and_join(run)


async def test_tasks_added_while_running_start_at_once() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock)
    started: list[str] = []

    def factory(name: str) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            started.append(name)
            await clock.sleep(FOREVER)

        return body

    supervisor.add("first", factory("first"))
    run = asyncio.create_task(supervisor.run())
    await clock.advance(0)
    supervisor.add("late", factory("late"))
    await clock.advance(0)
    assert started == ["first", "late"]
    with pytest.raises(ValueError, match="already"):
        supervisor.add("late", factory("again"))
    with pytest.raises(RuntimeError, match="already running"):
        await supervisor.run()
    await cancel_and_join(run)


async def test_run_without_tasks_waits_for_cancellation() -> None:
    supervisor = Supervisor(FakeClock())
    run = asyncio.create_task(supervisor.run())
    await asyncio.sleep(0)
    assert not run.done()
    await cancel_and_join(run)


def test_snapshot_is_frozen_and_settings_are_checked() -> None:
    supervisor = Supervisor(FakeClock(monotonic=5.0))

    async def noop() -> None:
        return None

    supervisor.add("x", noop)
    (snap,) = supervisor.snapshot()
    assert snap == TaskSnapshot("x", True, "pending", 5.0, 0, 0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.restarts = 1  # type: ignore[misc]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="healthy_after_s"):
            Supervisor(FakeClock(), healthy_after_s=bad)


class Abort(BaseException):
    """Stands in for KeyboardInterrupt/SystemExit, which would escape the event loop itself.

    (On CPython 3.11 a SystemExit escaping a task through the loop also corrupts the
    interpreter's AST recursion counter, breaking later imports in the same process.)
    """


async def test_base_exceptions_are_never_caught() -> None:
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5)
    starts = 0

    async def leave() -> None:
        nonlocal starts
        starts += 1
        raise Abort

    supervisor.add("leave", leave)
    with pytest.raises(BaseExceptionGroup) as raised:
        async with asyncio.timeout(5):
            await supervisor.run()
    assert [type(e) for e in raised.value.exceptions] == [Abort]
    assert starts == 1


@pytest.mark.usefixtures("restore_logging")
async def test_an_unexpected_failure_reaches_the_json_log_with_its_traceback() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    clock = FakeClock()
    supervisor = Supervisor(clock, rand=lambda: 0.5)

    async def broken() -> None:
        raise KeyError("PLC 10.0.0.5 refused")  # a bug, not an expected failure

    supervisor.add("plc", broken)
    run = asyncio.create_task(supervisor.run())
    await clock.advance(1.75)  # three failures: one WARNING, two DEBUG (filtered at info)
    await cancel_and_join(run)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [("task_failed", "warning")]
    (line,) = lines
    assert line["logger"] == "agent.service.supervisor"
    assert line["task"] == "plc"
    assert line["error"] == "KeyError: 'PLC 10.0.0.5 refused'"
    assert "Traceback" in line["exception"]
    assert "in broken" in line["exception"]
