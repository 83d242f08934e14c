"""A long-running coroutine of the agent (a driver, the uploader, remote support) as a task
for the length of a `with` block.

Owns: `running(run)`, the one way a test runs such a coroutine in the background.

Must not: wait a fixed time or judge progress (tests.support.wait does), or hide how the
task ended: an error the task raised is raised at the end of the block.

Invariants: the task is cancelled and awaited when the block ends, however it ends, so no
task outlives its test; only the CancelledError of that cancellation is swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.asynccontextmanager
async def running(run: Callable[[], Coroutine[Any, Any, T]]) -> AsyncIterator[asyncio.Task[T]]:
    """`run()` as a task inside the block (`async with running(up.run) as task:`)."""
    task = asyncio.create_task(run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
