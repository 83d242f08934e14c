"""Liveness and readiness of the agent's own work, for systemd's watchdog and /healthz.

Owns: which internal loops are watched, when each last made progress, and whether the agent
is ready (buffer open, sources configured). systemd's WATCHDOG=1, /healthz and /readyz all
answer from here, so they can never disagree (/readyz, /status and /metrics add the buffer's
full-disk condition in one place: agent.api.status.readiness).
Must not: read a clock, do I/O or know what a component does: components call `beat(name,
now)` when they make progress; systemd's keep-alive (agent.service.sdnotify) and the API
(agent.api) ask `stalled(now)`.
Invariants: a watched loop that has never beaten counts as stalled only after its
`max_silence_s` has passed since it was watched; an unwatched name in `beat` is ignored
(a component may beat before or after it is watched without raising).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Health", "Progress"]


@dataclass
class Progress:
    """One watched loop: whether it is critical, its allowed silence, and its last beat."""

    name: str
    critical: bool
    max_silence_s: float
    since: float
    last: float | None = None
    detail: str = ""


class Health:
    """The watched loops and the readiness flag of one agent process."""

    def __init__(self) -> None:
        self._loops: dict[str, Progress] = {}
        self.ready = False
        self.ready_detail = "starting"

    def watch(self, name: str, *, now: float, max_silence_s: float, critical: bool = True) -> None:
        """Start watching `name`; it must beat at least every `max_silence_s` seconds."""
        self._loops[name] = Progress(name, critical, max_silence_s, since=now)

    def unwatch(self, name: str) -> None:
        self._loops.pop(name, None)

    def beat(self, name: str, now: float, detail: str = "") -> None:
        """`name` made progress at `now`."""
        progress = self._loops.get(name)
        if progress is not None:
            progress.last = now
            progress.detail = detail

    def set_ready(self, ready: bool, detail: str) -> None:
        self.ready, self.ready_detail = ready, detail

    def stalled(self, now: float, *, critical_only: bool = True) -> list[str]:
        """Names of watched loops silent for longer than they may be (NaN counts as silent)."""
        out = []
        for p in self._loops.values():
            if critical_only and not p.critical:
                continue
            reference = p.since if p.last is None else p.last
            if not now - reference <= p.max_silence_s:
                out.append(p.name)
        return out

    def loops(self) -> list[Progress]:
        return list(self._loops.values())
