"""The stop signals while the agent runs: the first an ordered shutdown, the second an exit.

Owns: the event loop's SIGTERM/SIGINT handlers around `App.run` (taking over from
agent.service.early_signals, and acting on a signal it recorded before the loop existed), the
shutdown deadline (`agent.shutdown_timeout_s`) and the forced exit that names what was
still running.
Must not: build or wire components (agent.service.app does) or decide the order of the shutdown
(`App.run` stops control, then the sources, then the pipeline).
Invariants: the first signal cancels `App.run` once and the process then ends with exit 0
when it returns; a second signal, or the deadline, ends the process at once with exit 1
after logging `shutdown_forced` with every task still running and where it waits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, Protocol, cast

from agent.domain.logger import get_logger
from agent.service import early_signals

if TYPE_CHECKING:
    from agent.config.loader import LoadedConfig
    from agent.service.sdnotify import Notifier

__all__ = ["FORCED_EXIT", "Runnable", "serve"]

FORCED_EXIT = early_signals.FORCED_EXIT
log = get_logger("agent.service.app")  # the shutdown's lines keep the logger plant IT already knows


class Runnable(Protocol):
    """What `serve` needs of the app (agent.service.app.App): this module never imports the
    composition root, so it never reaches the drivers."""

    @property
    def loaded(self) -> LoadedConfig: ...

    @property
    def notifier(self) -> Notifier: ...

    async def run(self) -> None: ...


def _pending_tasks() -> list[str]:
    """What a forced shutdown left running: each task's name and the innermost line it
    waits at (following the chain of awaited coroutines, not just the task's own frame)."""
    waiting = []
    for task in asyncio.all_tasks():
        where, awaited = "", cast(object, task.get_coro())
        while (frame := getattr(awaited, "cr_frame", None)) is not None:
            where = f" at {frame.f_code.co_filename}:{frame.f_lineno}"
            awaited = getattr(awaited, "cr_await", None)
        waiting.append(f"{task.get_name()}{where}")
    return sorted(waiting)


async def serve(app: Runnable) -> None:
    """Run the app; turn the first signal into an ordered shutdown, the second into an exit."""
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(app.run(), name="app")
    stopping = False
    timeout = app.loaded.settings.agent.shutdown_timeout_s

    def force(reason: str) -> None:
        log.error("shutdown_forced", reason=reason, waiting=_pending_tasks())
        sys.stdout.flush()
        os._exit(FORCED_EXIT)

    def on_signal(signum: int) -> None:
        nonlocal stopping
        name = signal.Signals(signum).name
        if stopping:
            force(f"second {name}")
        stopping = True
        log.info("shutdown_requested", signal=name, timeout_s=timeout)
        app.notifier.stopping(f"stopping: {name}, draining (up to {timeout:g} s)")
        runner.cancel()
        loop.call_later(timeout, force, f"shutdown took longer than {timeout:g} s")

    for signum in early_signals.STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    if (early := early_signals.requested()) is not None:  # came during the imports or start-up
        on_signal(early)
    try:
        await runner
    except asyncio.CancelledError:
        if not stopping:
            raise
