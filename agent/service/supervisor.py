"""The one supervisor: keeps every long-lived task of the agent running, forever.

Owns: running named coroutine factories (driver loops, uploader, control loops, API server)
inside ONE ``asyncio.TaskGroup``; restarting any of them that raises or returns, after the
shared ``Backoff`` delay; logging that by the house rules (first failure WARNING with the
traceback, repeats DEBUG, recovery INFO); and a per-task ``snapshot()`` for health reporting.

Must not: give up on a task, let one task's failure touch another, swallow a cancellation
aimed at it, or read real time (sleeps and durations go through the injected ``Clock``; the
jitter comes from the injected ``rand``). This module is the ONLY place in the agent (and
in drivers) with ``except Exception``: everything below it catches only the errors it
expects (library errors are mapped into ``agent.domain.errors`` at their boundary) and lets
anything else propagate up to here (ruff's BLE001 and tests/unit/test_house_rules.py hold
the code to that).

Invariants:
- A task that raises any ``Exception`` (including ``FatalError`` subclasses: a component that
  must stay stopped latches that state itself) or returns is restarted after
  ``backoff.delay(attempt, rand())``, where ``attempt`` counts consecutive failures from 0 and
  resets once a run has lasted ``healthy_after_s`` (a returning task counts as a failure: a
  long-lived task must not end). Attempts never run out.
- Logging: the first failure of a streak, and a failure of a different exception type than the
  previous one, is WARNING "task_failed" (or "task_returned") with ``error`` (type: message),
  ``attempt``, ``retry_in_s`` and the traceback; repeats are DEBUG. A task that has run for
  ``healthy_after_s`` after a streak logs INFO "task_recovered" once.
- Cancelling ``run()`` cancels every child, waits for them, and re-raises ``CancelledError``.
  During that, a child that swallows the cancellation and returns, or raises an ``Exception``
  on its way out, is not restarted and cannot turn the cancellation into an ``ExceptionGroup``.
- A ``CancelledError`` that escapes a child although nobody cancelled that child (a library
  leaking its internal cancellation) is a failure like any other: restarted, not silently lost
  (a TaskGroup would otherwise drop the task without a word).
- ``KeyboardInterrupt`` and ``SystemExit`` are never caught: they end ``run()``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from agent.domain.backoff import Backoff
from agent.domain.clock import Clock
from agent.domain.errors import EdgeAgentError
from agent.domain.logger import get_logger

__all__ = ["Supervisor", "TaskSnapshot", "TaskState"]

TaskState = Literal["pending", "running", "backing_off"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class TaskSnapshot:
    """One supervised task as health reporting sees it.

    state: "pending" (run() not started yet), "running", or "backing_off" (waiting to restart).
    since: ``clock.monotonic()`` when the task entered ``state``.
    restarts: how many times the task ended (raised or returned) and was scheduled to restart.
    consecutive_failures: failures since the task last ran healthy (0 = healthy).
    last_error: "Type: message" of the most recent failure, None if it never failed.
    """

    name: str
    critical: bool
    state: TaskState
    since: float
    restarts: int
    consecutive_failures: int
    last_error: str | None


class _Task:
    """Mutable bookkeeping for one supervised task (only the supervisor touches it)."""

    def __init__(
        self, name: str, factory: Callable[[], Awaitable[None]], critical: bool, since: float
    ) -> None:
        self.name = name
        self.factory = factory
        self.critical = critical
        self.state: TaskState = "pending"
        self.since = since
        self.restarts = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.last_error_type: str | None = None
        self.generation = 0

    def snapshot(self) -> TaskSnapshot:
        return TaskSnapshot(
            name=self.name,
            critical=self.critical,
            state=self.state,
            since=self.since,
            restarts=self.restarts,
            consecutive_failures=self.consecutive_failures,
            last_error=self.last_error,
        )


def _cancel_requested() -> bool:
    """True when someone has asked the current task to stop (the TaskGroup, or run()'s caller)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _summary(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Supervisor:
    """Runs named long-lived tasks in one TaskGroup and restarts them forever."""

    def __init__(
        self,
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        rand: Callable[[], float] | None = None,
        healthy_after_s: float = 30.0,
    ) -> None:
        if not healthy_after_s > 0:  # also refuses NaN
            raise ValueError(f"healthy_after_s must be > 0, got {healthy_after_s}")
        self._clock = clock
        self._backoff = backoff if backoff is not None else Backoff()
        # Jitter only, not security: a plain PRNG is right (S311 is about secrets).
        self._rand = rand if rand is not None else random.Random().random  # noqa: S311
        self._healthy_after_s = healthy_after_s
        self._tasks: dict[str, _Task] = {}
        self._group: asyncio.TaskGroup | None = None

    def add(
        self, name: str, factory: Callable[[], Awaitable[None]], *, critical: bool = True
    ) -> None:
        """Supervise ``factory()`` under ``name`` (unique). Starts at once if run() is running.

        critical: whether the agent counts as unhealthy while this task is failing; it does
        not change how the task is restarted.
        """
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        task = _Task(name, factory, critical, self._clock.monotonic())
        self._tasks[name] = task
        if self._group is not None:
            self._start(self._group, task)

    def snapshot(self) -> list[TaskSnapshot]:
        """The state of every task, in the order they were added."""
        return [task.snapshot() for task in self._tasks.values()]

    async def run(self) -> None:
        """Run every task until cancelled; re-raises the cancellation once all have stopped."""
        if self._group is not None:
            raise RuntimeError("Supervisor.run() is already running")
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for task in self._tasks.values():
                    self._start(group, task)
                # The children never end on their own: wait for cancellation.
                await asyncio.get_running_loop().create_future()
        finally:
            self._group = None

    # -- one task ----------------------------------------------------------------------------

    def _start(self, group: asyncio.TaskGroup, task: _Task) -> None:
        group.create_task(self._keep_running(group, task), name=f"supervised:{task.name}")

    async def _keep_running(self, group: asyncio.TaskGroup, task: _Task) -> None:
        while True:
            task.generation += 1
            task.state, task.since = "running", self._clock.monotonic()
            timer = None
            if task.consecutive_failures:
                timer = group.create_task(
                    self._declare_healthy(task, task.generation),
                    name=f"supervised:{task.name}:healthy",
                )
            failure: BaseException | None = None
            try:
                await task.factory()
            except asyncio.CancelledError as exc:
                if _cancel_requested():
                    raise
                failure = exc  # leaked from inside the task, not aimed at it: a failure
            except Exception as exc:
                # The one `except Exception` in the agent, on purpose: a failing task is logged
                # and restarted, never fatal to the others. (No `noqa: BLE001` needed: ruff sees
                # the exception logged with its traceback / re-raised, and would flag the noqa
                # as unused, RUF100.)
                if _cancel_requested():
                    _log.warning(
                        "task_failed_while_stopping",
                        task=task.name,
                        error=_summary(exc),
                        exc_info=exc,
                    )
                    raise asyncio.CancelledError from exc
                failure = exc
            else:
                if _cancel_requested():
                    raise asyncio.CancelledError  # it swallowed our cancellation: honour it
            finally:
                if timer is not None:
                    timer.cancel()
            await self._clock.sleep(self._record_end(task, failure))

    def _record_end(self, task: _Task, failure: BaseException | None) -> float:
        """Book the end of a run, log it and return the delay before the restart."""
        now = self._clock.monotonic()
        if now - task.since >= self._healthy_after_s:
            self._mark_healthy(task)
        if failure is None:
            event, error, error_type = "task_returned", "returned (a long-lived task must not)", ""
        elif isinstance(failure, asyncio.CancelledError):
            event, error = "task_failed", "CancelledError: leaked from the task, not requested"
            error_type = "CancelledError"
        else:
            event, error, error_type = "task_failed", _summary(failure), type(failure).__name__
        task.consecutive_failures += 1
        task.restarts += 1
        first = task.consecutive_failures == 1 or error_type != task.last_error_type
        task.last_error, task.last_error_type = error, error_type
        delay = self._backoff.delay(task.consecutive_failures - 1, self._rand())
        task.state, task.since = "backing_off", now
        emit = _log.warning if first else _log.debug
        # An expected failure (a lost connection, a refused request) is one line; anything
        # else is a bug and carries its traceback.
        expected = isinstance(failure, EdgeAgentError)
        details = {"exc_info": failure} if failure is not None and not expected else {}
        emit(
            event,
            task=task.name,
            error=error,
            attempt=task.consecutive_failures,
            retry_in_s=round(delay, 3),
            **details,
        )
        return delay

    async def _declare_healthy(self, task: _Task, generation: int) -> None:
        await self._clock.sleep(self._healthy_after_s)
        if task.generation == generation and task.state == "running":
            self._mark_healthy(task)

    def _mark_healthy(self, task: _Task) -> None:
        if task.consecutive_failures:
            _log.info("task_recovered", task=task.name, after_failures=task.consecutive_failures)
        task.consecutive_failures = 0
        task.last_error_type = None
