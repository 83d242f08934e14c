"""The uploader as the tests drive it: built with fast test options, run as a task, and fed
fake time in steps while real I/O runs in between.

Owns: `uploader` (an Uploader of agent AGENT with a 0.5-8 s backoff and a fixed jitter),
`running` (its run() as a task, cancelled on exit: tests.support.tasks.running) and `drive` (advance the FakeClock until
a condition holds, with a generous real-time deadline).

Must not: replace the receiver or the buffer: tests hand it a real CloudReceiver URL and a
real Buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.buffer.buffer import Buffer
from agent.config.settings import SyncSection
from agent.domain.backoff import Backoff
from agent.domain.clock import FakeClock
from agent.sync.uploader import Uploader
from tests.support import tasks

AGENT = "plant-1"


async def drive(
    clock: FakeClock, done: Callable[[], bool], *, step: float = 0.5, within: float = 60.0
) -> None:
    """Advance fake time by ``step`` until ``done()``, letting real I/O run in between."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {within} s real (fake t={clock.monotonic()})")
        await clock.advance(step)
        await asyncio.sleep(0.003)


def uploader(
    buffer: Buffer, url: str, clock: FakeClock, tmp_path: Path, **options: Any
) -> Uploader:
    token = options.pop("token", None)
    progress_every_s = options.pop("progress_every_s", 30.0)
    return Uploader(
        buffer,
        SyncSection(url=url, **options),
        agent_id=AGENT,
        token=token,
        clock=clock,
        base_dir=tmp_path,
        backoff=Backoff(initial_s=0.5, max_s=8.0),
        rand=lambda: 0.5,
        progress_every_s=progress_every_s,
    )


def running(up: Uploader) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """The uploader's run() as a task for the block (tests.support.tasks.running)."""
    return tasks.running(up.run)
