"""The agent's exception hierarchy, organised by what the caller does next.

Owns: every exception type the agent raises on purpose. Library exceptions (asyncua,
pymodbus, httpx, sqlite3, onnxruntime, pydantic) are mapped into these exactly once, at the
library boundary (the driver, the uploader, the settings loader), so callers above that
boundary only ever need to know three verbs:

- ``RetryableError``: transient; the same request may succeed later. Retry it with the shared
  ``agent.domain.backoff.Backoff`` (honouring ``retry_after_s`` when the peer gave one).
  Examples: ``ConnectionLostError`` (socket/session gone), ``DeviceTimeoutError`` (a PLC or
  server did not answer in time).
- ``RejectedError``: this one item or request is refused and retrying it will not help;
  record why and carry on with the rest. Examples: ``WriteRejectedError`` (the PLC answered
  BadNotWritable/BadTypeMismatch/an exception code), ``QuarantineError`` (the cloud refused a
  block with a non-retryable 4xx: set it aside and upload the others).
- ``FatalError``: continuing would be wrong; stop the component (or the process, with
  ``exit_code``). Examples: ``ConfigError`` (exit 78, EX_CONFIG, so systemd does not restart
  in a loop on a typo), ``SafetyStopError`` (a safety gate tripped, e.g. a read-back mismatch:
  the owning control loop latches itself off and says why).

Must not: import anything beyond the standard library; grow a class per library error (map
to the closest verb and keep the library's detail in the message and ``__cause__``).

Invariants: every class here derives from ``EdgeAgentError`` and from exactly one of the
three verbs; none derives from builtin exceptions other than ``Exception`` (so an
``except OSError`` at a library boundary can never catch one of ours by accident);
``ConfigProblem.render()`` is exactly ``"{file}: {key}: expected {expected}, found {found}"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ConnectionLostError",
    "DeviceTimeoutError",
    "EdgeAgentError",
    "FatalError",
    "QuarantineError",
    "RejectedError",
    "RetryableError",
    "SafetyStopError",
    "WriteRejectedError",
]


class EdgeAgentError(Exception):
    """Base of every exception the agent raises on purpose."""


# -- retry --------------------------------------------------------------------------------


class RetryableError(EdgeAgentError):
    """Transient failure: retry with the shared backoff.

    ``retry_after_s`` carries an explicit hint from the peer (HTTP Retry-After), if any; feed it
    to ``Backoff.delay_with_hint``.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConnectionLostError(RetryableError):
    """The connection or session to a device or the cloud is gone (or was never made)."""


class DeviceTimeoutError(RetryableError):
    """A device or server did not answer in time. Not a subclass of builtin TimeoutError."""


# -- reject -------------------------------------------------------------------------------


class RejectedError(EdgeAgentError):
    """This item or request is refused for good: record it, carry on with the rest."""


class WriteRejectedError(RejectedError):
    """The device refused a write (not writable, wrong type, out of its range, ...)."""


class QuarantineError(RejectedError):
    """The receiver refused an item (non-retryable 4xx): set it aside, alert, carry on."""


# -- stop ---------------------------------------------------------------------------------


class FatalError(EdgeAgentError):
    """Continuing would be wrong: stop the component, or the process with ``exit_code``."""

    exit_code: ClassVar[int] = 1


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in the configuration, as plant IT needs to read it."""

    file: str
    key: str
    expected: str
    found: str

    def render(self) -> str:
        """Return ``"{file}: {key}: expected {expected}, found {found}"``."""
        return f"{self.file}: {self.key}: expected {self.expected}, found {self.found}"


class ConfigError(FatalError):
    """The configuration is invalid; one ``ConfigProblem`` per problem found.

    Exit code 78 (EX_CONFIG): the systemd unit lists it in ``RestartPreventExitStatus`` so a
    typo does not become a restart loop.
    """

    exit_code: ClassVar[int] = 78

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        rendered = "\n".join(problem.render() for problem in self.problems)
        super().__init__(rendered or "invalid configuration")


class SafetyStopError(FatalError):
    """A safety gate tripped (e.g. read-back mismatch): the owning loop stops writing."""
