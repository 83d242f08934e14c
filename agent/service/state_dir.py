"""The state directory: created with its mode, locked for the life of one agent process.

Owns: `state_dir_lock` (mkdir 0750, an exclusive flock on `agent.lock` holding the PID, so
two agents never share one state directory) and `StateDirError`, the configuration problem
raised when the directory cannot be created, written or locked (exit 78, no traceback).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from agent.config.loader import LoadedConfig
from agent.domain.errors import ConfigProblem

__all__ = ["StateDirError", "state_dir_lock"]


class StateDirError(Exception):
    """The state directory cannot be created, written or locked."""

    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__(problem.render())
        self.problem = problem


@contextlib.contextmanager
def state_dir_lock(loaded: LoadedConfig) -> Iterator[Path]:
    """Create the state directory (mode 0750) and hold its lock file for the process's life."""
    state_dir = loaded.settings.agent.state_dir
    file = str(loaded.path)
    try:
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        handle: TextIO = (state_dir / "agent.lock").open("a+", encoding="utf-8")
    except OSError as exc:
        raise StateDirError(
            ConfigProblem(
                file,
                "agent.state_dir",
                "a directory the agent can create and write",
                f"{state_dir}: {exc.strerror}",
            )
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "unknown"
            raise StateDirError(
                ConfigProblem(
                    file,
                    "agent.state_dir",
                    "a state directory no other edge-agent uses",
                    f"{state_dir} is locked by process {other}",
                )
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield state_dir
