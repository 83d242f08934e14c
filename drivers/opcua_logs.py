"""asyncua's log records of a session's end that the OPC UA driver reports itself.

Owns: one logging filter on asyncua's client loggers, installed once by
`demote_expected_teardown` (drivers.opcua_connect calls it on import). When a session ends,
the driver ends `run()` with a ConnectionLostError saying why and the supervisor logs one
WARNING; asyncua 2.1 logs the same end again as ERRORs, some with a traceback:
- after every lost connection we close the session: "Publish iteration crashed"
  (ConnectionError) and two WARNINGs ("close_session was called but connection is closed");
- a server that says goodbye before it stops (open62541, PLCs) sends an ERR message
  (BadShutdown, BadServerHalted, ...): "Received an error" (WARNING and CRITICAL), "Got error
  status from server" (ERROR) and "Publish iteration crashed" with the status' traceback;
- a server that answers the pending Publish with a ServiceFault (BadSessionClosed,
  BadSessionIdInvalid, BadShutdown, ...): "ServiceFault ... from server received" (WARNING)
  and "Publish iteration crashed" with a traceback, every second until the driver's
  watchdog ends the session.
The filter demotes exactly those records to DEBUG (dropped unless the agent runs at debug
level): "Received an error" always (asyncua says it again in "Got error status"); "Got error
status" and "ServiceFault" when the status says the session, its channel or the server is
gone (`ENDED`): any other status keeps its one line, without a traceback, naming the cause;
"Publish iteration crashed" when the exception is a ConnectionError or a status (named by
one of those lines; a Publish that keeps failing silences the subscription, and the
driver's watchdog ends the session and says so).
Must not: touch any other record (an unexpected asyncua error keeps its level and its
traceback), or any logger outside asyncua's client.
Invariants: installing twice adds no second filter; a demoted record has level DEBUG.
"""

from __future__ import annotations

import logging

from asyncua.ua.uaerrors import UaStatusCodeError

from drivers.opcua_values import status_name

__all__ = ["ENDED", "demote_expected_teardown"]

_LOGGERS = (
    "asyncua.client.ua_session.UaSession",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.uaprotocol",
)
_TEARDOWN = frozenset({
    "close_session was called but connection is closed",
    "close_secure_channel was called but connection is closed",
    "Received an error: %s",  # an ERR message: "Got error status" follows
    "Received an error: %r",
})  # fmt: skip
_PUBLISH_CRASHED = "Publish iteration crashed; retrying in 1s"
_NAMED_STATUS = {  # records that name a status as their first argument
    "Got error status from server: %s",  # an ERR message: asyncua closes the connection
    "ServiceFault (%s, diagnostics: %s) from server received %s",
}
ENDED = frozenset({
    "BadShutdown", "BadServerHalted", "BadSessionClosed", "BadSessionIdInvalid",
    "BadSessionNotActivated", "BadSecureChannelClosed", "BadSecureChannelIdInvalid",
    "BadSecureChannelTokenUnknown", "BadTcpSecureChannelUnknown", "BadConnectionClosed",
    "BadCommunicationError", "BadNotConnected", "BadServerNotConnected", "BadNoCommunication",
    "BadRequestInterrupted",
})  # fmt: skip
"""Statuses that say the session, its channel or the server is gone (a restart, a stop)."""


def _ended(status: object) -> bool:
    """True for a status (its name, or a UaStatusCodeError) that says the session is gone."""
    if isinstance(status, UaStatusCodeError):
        return status_name(status.code) in ENDED
    return str(status) in ENDED


class _ExpectedTeardown(logging.Filter):
    """Demote asyncua's records of a session's end the driver reports (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        args = record.args if isinstance(record.args, tuple) else ()
        expected = (
            record.msg in _TEARDOWN
            or (record.msg in _NAMED_STATUS and bool(args) and _ended(args[0]))
            or (
                record.msg == _PUBLISH_CRASHED
                and isinstance(exc, (ConnectionError, UaStatusCodeError))
            )
        )
        if not expected:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def demote_expected_teardown() -> None:
    """Install the filter on asyncua's client loggers (once)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedTeardown) for f in logger.filters):
            logger.addFilter(_ExpectedTeardown())
