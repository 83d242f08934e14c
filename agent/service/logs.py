"""Logging: one JSON object per line on stdout (journald), secrets never written.

Owns: the structlog configuration, the routing of standard-library logging (asyncua, pymodbus,
uvicorn, httpx, ...) through the same processors, the levels of those noisy libraries, and the
``redact`` processor.

Must not: decide what to log (components do, with snake_case past-tense event names and stable
keys), write anywhere but the one stream it is given, or print secrets.

Invariants:
- Every line in JSON mode is one JSON object with at least "timestamp" (ISO 8601, UTC, "Z"),
  "level", "event" and "logger"; an exception is rendered as text into the "exception" key
  (JSON escapes its newlines, so it stays one line). Console mode (a TTY) is for humans only.
- Values under keys that look secret (token, password, secret, credential, authorization,
  cookie, key, api_key, private_key, ...) and every pydantic ``SecretStr``/``SecretBytes``
  under any key are replaced by ``REDACTED``, also inside nested dicts and lists. Keys that
  name a location (``*_file``, ``*_path``, ``*_dir``) are kept: a path is not a secret and
  plant IT needs it. The free-text "event" and rendered tracebacks are not inspected: never
  format a secret into them.
- ``configure_logging`` is idempotent: it replaces the handler it installed earlier and
  leaves other handlers (pytest's, for instance) alone.
- Loggers are not cached on first use, so a later ``configure_logging`` (new level, new
  stream) takes effect for loggers obtained earlier, including module-level ones.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import Processor

from agent.domain.logger import get_logger
from agent.domain.redaction import REDACTED, redact

__all__ = ["NOISY_LIBRARIES", "REDACTED", "configure_logging", "get_logger", "redact"]

#: Standard-library loggers held at WARNING unless the agent runs at debug level.
NOISY_LIBRARIES = ("asyncua", "pymodbus", "uvicorn", "httpx", "httpcore")
#: Libraries that log every expected failure as an error (pymodbus: each timeout at ERROR);
#: our drivers log those themselves (first WARNING, repeats DEBUG), so these stay quieter.
SILENCED_LIBRARIES = {"pymodbus": logging.CRITICAL}

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _AgentHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler configure_logging owns; recognised by type to stay idempotent."""


def _shared_processors(*, json: bool) -> list[Processor]:
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        redact,
        structlog.processors.StackInfoRenderer(),
    ]
    if json:
        # The console renderer formats exceptions itself (and warns if they already are).
        processors.append(structlog.processors.format_exc_info)
    return processors


def configure_logging(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and standard-library logging for the whole process.

    level: "debug" | "info" | "warning" | "error" | "critical" (case-insensitive).
    json: True for JSON lines, False for the console renderer, None to choose JSON unless
        ``stream`` is a TTY.
    stream: where lines go; ``sys.stdout`` (looked up at call time) by default.
    """
    numeric_level = _LEVELS.get(level.lower())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}")
    out = stream if stream is not None else sys.stdout
    is_tty = out.isatty()
    use_json = (not is_tty) if json is None else json

    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        # Locals can hold secrets: never show them, not even on a console. Rich tracebacks
        # always carry colour codes, so a forced console on a pipe gets plain ones.
        formatter: structlog.typing.ExceptionRenderer = (
            structlog.dev.RichTracebackFormatter(show_locals=False)
            if is_tty
            else structlog.dev.plain_traceback
        )
        renderer = structlog.dev.ConsoleRenderer(colors=is_tty, exception_formatter=formatter)
    shared = _shared_processors(json=use_json)

    handler = _AgentHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AgentHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in NOISY_LIBRARIES:
        quiet = SILENCED_LIBRARIES.get(name, logging.WARNING)
        logging.getLogger(name).setLevel(
            logging.NOTSET if numeric_level <= logging.DEBUG else quiet
        )

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
