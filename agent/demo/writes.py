"""The demo's setpoint writes as the audit log holds them, against the loops' own counters.

Owns: `AuditWrites` and `audit_writes` (pure, over the audit records' bodies in chain order):
per loop, the cycles that wrote and read back (`ok`), the cycles whose write failed
(`failed`: refused by the PLC, not sent, unknown, read back wrong, remote withdrawn), the
`setpoint_write` records (a write the PLC may have applied, recorded before the read-back
wait) and those no cycle record followed (`cut_short`: the agent was stopped during the
read-back wait), the read-back writes after the restart; and `agree`, the check that the
loops' counters (LoopStats over every agent run, as the view shows them) say the same.
Must not: read files or the clock; decide anything about the plant.
Invariants: every `setpoint_write` record is either paired with the next cycle record of its
loop that carries a write the PLC may have applied (status accepted or unknown) or counted
as cut short; `setpoint_write = ok + applied failures + cut_short` per loop by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AuditWrites", "audit_writes"]

_APPLIED = ("accepted", "unknown")
"""Write statuses of a cycle record whose write the PLC may have applied (a `setpoint_write`
record precedes it): see agent.control.act.write."""


@dataclass
class AuditWrites:
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    setpoint_write: Counter[str] = field(default_factory=Counter)
    cut_short: Counter[str] = field(default_factory=Counter)
    ok_after_restart: int = 0

    def agree(self, ok: Mapping[str, int], failed: int, after_restart: int) -> list[str]:
        """What differs between the audit and the loops' counters (ok per loop, failed writes
        and writes after the restart over every run): empty when they agree."""
        out = [f"{loop}: {n} read back in the audit, {ok.get(loop, 0)} counted by the loop"
               for loop, n in sorted((self.ok | Counter(dict(ok))).items())
               if self.ok[loop] != ok.get(loop, 0)]  # fmt: skip
        if sum(self.failed.values()) != failed:
            out.append(f"{sum(self.failed.values())} failed writes in the audit, {failed} counted")
        if self.ok_after_restart != after_restart:
            out.append(f"{self.ok_after_restart} writes after the restart in the audit, "
                       f"{after_restart} counted")  # fmt: skip
        return out


def audit_writes(bodies: Iterable[Mapping[str, Any]], restart_at: float | None) -> AuditWrites:
    """The writes of the audit records `bodies` (chain order); `restart_at`: the audit time of
    the second agent start (None: there was none)."""
    out = AuditWrites()
    pending: Counter[str] = Counter()  # setpoint_write records waiting for their cycle
    for body in bodies:
        loop, kind = str(body.get("loop")), body.get("kind")
        if kind == "setpoint_write":
            out.cut_short[loop] += pending[loop]  # the cycle before never recorded its end
            pending[loop] = 1
            out.setpoint_write[loop] += 1
        elif kind == "cycle":
            write = body.get("write")
            if isinstance(write, Mapping) and write.get("status") in _APPLIED and pending[loop]:
                pending[loop] = 0
            out.cut_short[loop] += pending[loop]
            pending[loop] = 0
            if body.get("outcome") == "write":
                out.ok[loop] += 1
                when = body.get("time")
                if restart_at is not None and isinstance(when, int | float) and when >= restart_at:
                    out.ok_after_restart += 1
            elif isinstance(write, Mapping):
                out.failed[loop] += 1
    for loop, n in pending.items():
        out.cut_short[loop] += n
    return out
