"""What the OPC UA driver remembers across sessions: its counters and its log rules.

Owns: `OpcUaCounters` (the figures exposed for metrics: notifications received, samples
emitted, dropped, keep-alives, server-side losses, watchdog trips, reconnects, the last
subscribe duration) and `Notes`, the house log rules for problems that repeat every
session: the first occurrence is a WARNING, repeats are DEBUG, a tag that becomes
resolvable again is an INFO.
Must not: touch asyncua, sockets or clocks.
Invariants: counters only grow (except the gauges `unresolved_tags` and
`last_subscribe_s`); `dropped` counts notifications that did not become samples and must
stay 0; one WARNING line names at most 10 tags (with the total), so a wrong namespace URI
on 10,000 tags is one line, not 10,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.domain.logger import get_logger

__all__ = ["Notes", "OpcUaCounters"]

_log = get_logger("drivers.opcua")
_SHOWN = 10


@dataclass
class OpcUaCounters:
    """Figures for metrics; `dropped` must stay 0 (see drivers.opcua)."""

    sessions: int = 0
    reconnects: int = 0
    notifications_received: int = 0
    samples_emitted: int = 0
    dropped: int = 0
    keepalives: int = 0
    sequence_gaps: int = 0
    server_overflows: int = 0
    watchdog_trips: int = 0
    polls: int = 0
    unresolved_tags: int = 0
    last_subscribe_s: float | None = None


class Notes:
    """Log rules that outlive a session: first time WARNING, repeats DEBUG.

    `once(key, ...)` logs an event keyed by `key`; `tags(problems, ok)` is called once per
    session with every tag that cannot be served (and why) and the tags that can.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.seen: set[str] = set()
        self.bad_tags: dict[str, str] = {}

    def once(self, key: str, event: str, **fields: Any) -> None:
        emit = _log.debug if key in self.seen else _log.warning
        self.seen.add(key)
        emit(event, source=self.source, **fields)

    def tags(self, problems: Sequence[tuple[str, str]], ok: Sequence[str]) -> None:
        fresh = [(t, why) for t, why in problems if self.bad_tags.get(t) != why]
        if fresh:
            shown = dict(fresh[:_SHOWN])
            _log.warning(
                "opcua_tags_unresolved",
                source=self.source,
                count=len(fresh),
                tags=shown,
                more=max(0, len(fresh) - _SHOWN),
            )
        elif problems:
            _log.debug("opcua_tags_unresolved", source=self.source, count=len(problems))
        recovered = [t for t in ok if t in self.bad_tags]
        if recovered:
            _log.info(
                "opcua_tags_resolved",
                source=self.source,
                tags=recovered[:_SHOWN],
                count=len(recovered),
            )
        for tag in recovered:
            del self.bad_tags[tag]
        self.bad_tags.update(problems)
