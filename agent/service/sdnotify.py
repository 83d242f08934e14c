"""systemd's notification protocol (sd_notify): READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

Owns: the datagram socket to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket),
the watchdog interval read from ``$WATCHDOG_USEC``/``$WATCHDOG_PID``, sending messages, and
the keep-alive schedule (``keep_alive``): STATUS= every ``status_every_s`` and within a
second of the buffer's condition changing (a disk that became full or has room again; not its
figures, which the regular STATUS= refreshes), WATCHDOG=1 every half watchdog interval while
``Health.stalled(now)`` is empty, and the wording of the STATUS= line (``status_line``).
Must not: decide what progress or readiness is (components beat ``agent.domain.health``, the
app sends READY=1), raise into the agent, or block the event loop (the socket is non-blocking:
a full receive queue drops the message, as a lost datagram would be).
Invariants: without ``$NOTIFY_SOCKET`` every call is a no-op returning False; a failed send
is logged once as a WARNING (repeats DEBUG) and never raised; ``watchdog_interval_s`` is half
of ``$WATCHDOG_USEC`` (as sd_watchdog_enabled(3) recommends), or None when the watchdog is off
or ``$WATCHDOG_PID`` names another process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

from agent.buffer.buffer import OutageBudget
from agent.domain.clock import Clock
from agent.domain.health import Health
from agent.domain.logger import get_logger

__all__ = ["STATUS_EVERY_S", "Notifier", "keep_alive", "status_line"]

STATUS_EVERY_S = 10.0

_log = get_logger(__name__)


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + raw[1:] if raw.startswith("@") else raw
        self._socket: socket.socket | None = None
        self._failed = False
        self.enabled = raw.startswith(("/", "@")) and len(raw) > 1
        if raw and not self.enabled:
            _log.warning("systemd_notify_unsupported", notify_socket=raw)
        self.watchdog_interval_s = _watchdog_interval_s(env, os.getpid() if pid is None else pid)

    def ready(self, status: str) -> bool:
        return self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.send(f"STOPPING=1\nSTATUS={status}")

    def send(self, message: str) -> bool:
        """Send one datagram (``KEY=value`` lines); True when it was handed to the socket."""
        if not self.enabled:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            emit = _log.debug if self._failed else _log.warning
            self._failed = True
            emit("systemd_notify_failed", notify_socket=self._address.replace("\0", "@"),
                 error=f"{type(exc).__name__}: {exc.strerror or exc}")  # fmt: skip
            return False
        if self._failed:
            self._failed = False
            _log.info("systemd_notify_recovered")
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def status_line(connected: int, sources: int, budget: OutageBudget, stalled: list[str]) -> str:
    """The one-line STATUS= that `systemctl status edge-agent` shows (a buffer problem first)."""
    line = (
        f"sources {connected}/{sources} connected, buffer {budget.bytes_used / 1e6:.1f} MB used,"
        f" {budget.blocks_pending} blocks pending"
    )
    line = f"{line}, stalled: {', '.join(stalled)}" if stalled else line
    return f"BUFFER {budget.problem}; {line}" if budget.problem else line


def _watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


async def keep_alive(
    notifier: Notifier,
    health: Health,
    clock: Clock,
    summary: Callable[[], str],
    *,
    status_every_s: float = STATUS_EVERY_S,
    budget: Callable[[], OutageBudget] | None = None,
) -> None:
    """Until cancelled: STATUS=summary() every ``status_every_s`` (the first one after that
    interval: READY=1 carried one) and at the first tick (at most 1 s) after the buffer's
    condition (``budget().disk_full``) changed, and WATCHDOG=1 every
    ``notifier.watchdog_interval_s`` while no critical loop is stalled (the 1 s tick that
    watches the buffer does not make it more frequent). Withholding the watchdog is logged
    WARNING once per episode (naming the loops), its resumption INFO: systemd restarts the
    agent if it stays withheld for WatchdogSec."""
    watchdog = notifier.watchdog_interval_s
    tick = status_every_s if watchdog is None else min(watchdog, status_every_s)
    tick = tick if budget is None else min(tick, 1.0)
    next_status = clock.monotonic() + status_every_s
    next_watchdog = clock.monotonic()
    withheld: list[str] = []
    condition = None if budget is None else budget().disk_full
    while True:
        now = clock.monotonic()
        stalled = health.stalled(now)
        if stalled and stalled != withheld:
            _log.warning("systemd_watchdog_withheld", stalled=stalled)
        elif withheld and not stalled:
            _log.info("systemd_watchdog_resumed")
        withheld = stalled
        # half a tick early is on time: a wake-up a hair early must not cost a whole tick
        if watchdog is not None and not stalled and now + tick / 2 >= next_watchdog:
            notifier.watchdog()
            next_watchdog = now + watchdog
        current = None if budget is None else budget().disk_full
        if now >= next_status or current != condition:
            notifier.status(summary())
            next_status, condition = now + status_every_s, current
        await clock.sleep(tick)
