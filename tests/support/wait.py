"""Waiting in tests: poll a condition until it holds, with a generous deadline.

Owns: `until` (a plain condition) and `eventually` (a coroutine condition), the one way a
test waits for a peer, an agent or a task to make progress.

Must not: sleep a fixed time and then assert, or judge how long something took: a busy
2-core machine only makes the wait longer, never the test red. The deadline is there to
name what never happened instead of hanging until the per-test timeout.

Invariants: the condition is checked before the first pause and after every one; the first
truthy result is returned; past the deadline an AssertionError names `what` and the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

WAIT_S = 60.0
"""The default limit of a wait: generous, the wait ends as soon as the condition holds."""
POLL_S = 0.02
"""The pause between two checks (real time: the peers run meanwhile)."""


async def until(
    check: Callable[[], Any],
    what: str = "the condition",
    within: float = WAIT_S,
    *,
    poll_s: float = POLL_S,
) -> Any:
    """Poll `check()` until it returns something truthy, and return that."""
    deadline = time.monotonic() + within
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(poll_s)
    return result


async def eventually(
    check: Callable[[], Awaitable[Any]],
    what: str = "the condition",
    within: float = WAIT_S,
    *,
    poll_s: float = POLL_S,
) -> Any:
    """Poll `await check()` until it returns something truthy, and return that."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(poll_s)
    return result
