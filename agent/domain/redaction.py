"""What counts as a secret in anything the agent writes out, and how it is hidden.

Owns: ``redact``, the structlog processor that replaces values under secret-looking keys
(token, password, secret, credential, authorization, cookie, key, api_key, private_key, ...)
and every pydantic ``SecretStr``/``SecretBytes`` under any key by ``REDACTED``, also inside
nested dicts, lists and tuples. The logs (agent.service.logs) and the diagnostics sent to
remote support (agent.remote.diagnostics) both hide secrets through it, so they agree.
Must not: do I/O or inspect free text: the "event" and rendered tracebacks pass untouched.
Invariants: keys that name a location (``*_file``, ``*_path``, ``*_dir``) are kept (a path
is not a secret and plant IT needs it); structlog's own keys and ``_``-prefixed plumbing pass
untouched; nesting deeper than 8 levels is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import SecretBytes, SecretStr
from structlog.typing import EventDict, WrappedLogger

__all__ = ["REDACTED", "redact"]

REDACTED = "**********"
_SECRET_KEY = re.compile(
    r"token|passw(?:or)?d|passphrase|secret|credential|authorization|cookie"
    r"|(?:^|[_\-.])(?:api[_\-]?|private[_\-]?)?key$",
    re.IGNORECASE,
)
_LOCATION_SUFFIXES = ("_file", "_path", "_dir")
_MAX_DEPTH = 8
#: Keys structlog owns: the message and exception plumbing are passed through untouched.
_UNTOUCHED = frozenset({"event", "exc_info", "stack_info", "exception"})


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    if lowered.endswith(_LOCATION_SUFFIXES):
        return False
    return _SECRET_KEY.search(lowered) is not None


def _scrub(value: object, depth: int) -> object:
    if isinstance(value, (SecretStr, SecretBytes)):
        return REDACTED
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_secret_key(k) else _scrub(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(item, depth + 1) for item in value]
    if isinstance(value, tuple):
        return tuple(_scrub(item, depth + 1) for item in value)
    return value


def redact(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace secret-looking values with ``REDACTED`` (see module doc)."""
    for key, value in event_dict.items():
        if key in _UNTOUCHED or key.startswith("_"):
            continue  # structlog's own keys and private plumbing (_record, ...)
        event_dict[key] = REDACTED if _is_secret_key(key) else _scrub(value, 0)
    return event_dict
