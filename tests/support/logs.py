"""The agent's log as a test sees it: the `logs` fixture and its JSON events.

Owns: `logs`, everything logged during one test (debug level, JSON lines, httpx/httpcore/
uvicorn included) in a StringIO, with the logging set-up of before the test restored after
it (`kept_logging`, for a test that configures logging its own way); `events(out)`,
those lines as dicts. Registered for every test by tests/conftest.py.

Must not: patch the agent's logging: it is configured the way the daemon configures it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from agent.service.logs import NOISY_LIBRARIES, configure_logging


@contextlib.contextmanager
def kept_logging() -> Iterator[None]:
    """The logging set-up of before the block (root handlers and level, the noisy
    libraries' levels, structlog's defaults) restored after it, whatever the block set."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    library_levels = {name: logging.getLogger(name).level for name in NOISY_LIBRARIES}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lib_level in library_levels.items():
            logging.getLogger(name).setLevel(lib_level)
        structlog.reset_defaults()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything logged during the test, as JSON lines."""
    with kept_logging():
        out = io.StringIO()
        configure_logging("debug", json=True, stream=out)
        yield out


def events(out: io.StringIO) -> list[dict[str, Any]]:
    """The JSON log lines captured by `logs`, oldest first."""
    return [json.loads(line) for line in out.getvalue().splitlines()]
