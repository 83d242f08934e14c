"""SIGTERM and SIGINT from the first line of the process until the event loop takes over.

Owns: the stop request that arrives while the agent imports, loads its configuration or
opens its state (systemd sends SIGTERM then too): `install` puts a tiny handler in place
that only records the signal; `requested` tells the start-up code, at each step, whether to
stop; `restore` hands the signals back to the handlers they had (Python's defaults in a
fresh process) for the commands that do not run the agent.
Must not: import anything beyond the standard library (it runs before every heavy import),
log, or do any work in the handler beyond recording (a handler runs between any two
bytecodes, in the middle of an import or of a `with` block).
Invariants: the first SIGTERM/SIGINT is recorded and never kills the process: the start-up
code ends with exit 0 at its next step, releasing what it opened; a second one exits at once
with code 1, as it does while the agent runs (agent.service.app); the event loop's handlers take
over from these and see a signal recorded before they existed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["FORCED_EXIT", "STOP_SIGNALS", "install", "requested", "restore"]

FORCED_EXIT = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []
_previous: dict[int, signal.Handlers | int | Callable[[int, FrameType | None], Any] | None] = {}


def _record(signum: int, frame: FrameType | None) -> None:
    if _received:  # a second stop request: at once, as the running agent does
        os._exit(FORCED_EXIT)
    _received.append(signum)


def install() -> None:
    """Record SIGTERM/SIGINT from now on instead of dying (idempotent)."""
    for signum in STOP_SIGNALS:
        previous = signal.signal(signum, _record)
        if previous is not _record:
            _previous.setdefault(signum, previous)


def requested() -> signal.Signals | None:
    """The stop signal received since `install`, if any."""
    return signal.Signals(_received[0]) if _received else None


def restore() -> None:
    """The handlers from before `install` again (in a fresh process Python's own: SIGINT
    raises KeyboardInterrupt, SIGTERM ends the process); a signal recorded meanwhile is
    delivered again now, to them."""
    for signum, handler in _previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    _previous.clear()
    if _received:
        signal.raise_signal(_received.pop())
