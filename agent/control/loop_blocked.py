"""When a blocked control loop says so: one warning per reason, one line when it acts again.

Owns: `BlockedEpisode`, fed with every cycle's outcome and reason; it answers which log
line (if any) that cycle deserves: `loop_blocked` once a reason has blocked `after`
consecutive cycles (a reason is compared with its numbers masked, so "lag 3" and "lag 4"
are the same reason), and `loop_unblocked` at the first cycle that is not blocked after a
reported episode.
Must not: log, read a clock or decide whether a cycle is blocked (agent.control.loop does).
Invariants: within one episode (consecutive blocked cycles) each reason is reported at most
once, however long it lasts; an episode that was never reported ends without a line; a
reported one ends with exactly one `loop_unblocked`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["BLOCKED_AFTER_CYCLES", "BlockedEpisode", "Report"]

BLOCKED_AFTER_CYCLES = 3
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Report:
    """A line to log: event "loop_blocked" (WARNING) or "loop_unblocked" (INFO)."""

    event: str
    reason: str
    cycles: int  # loop_blocked: cycles blocked for this reason; loop_unblocked: in the episode


@dataclass
class BlockedEpisode:
    """The current run of blocked cycles of one loop."""

    after: int = BLOCKED_AFTER_CYCLES
    cycles: int = 0  # consecutive blocked cycles, any reason
    same: int = 0  # consecutive blocked cycles with the current reason
    reason: str = ""
    _key: str = ""
    _reported: set[str] = field(default_factory=set)

    def cycle(self, blocked: bool, reason: str) -> Report | None:
        """Account one cycle; the line it deserves, if any."""
        if not blocked:
            report = None
            if self._reported:
                report = Report("loop_unblocked", self.reason, self.cycles)
            self.cycles = self.same = 0
            self.reason, self._key = "", ""
            self._reported.clear()
            return report
        key = _NUMBER.sub("#", reason)
        self.same = self.same + 1 if key == self._key else 1
        self.cycles += 1
        self.reason, self._key = reason, key
        if self.same >= self.after and key not in self._reported:
            self._reported.add(key)
            return Report("loop_blocked", reason, self.same)
        return None
