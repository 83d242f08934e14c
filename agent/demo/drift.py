"""The drift faults of plant-model 4.3 applied to the process: what changes, hidden from a model.

Owns: the mapping of each drift fault (`faults.DRIFT_KINDS`) onto dynamics.Process's drift
state, both ways (inject and clear).
Must not: touch published tags, the PLC or the lab; nothing published changes except through
the physics (the strengths, and with scale_drift the true limestone share behind a measured one
that stays at its setpoint).
Invariants (at the nominal clinker factor 0.83, equal inputs and equal LabClinkerC3S):
- clinker_reactivity(mpa) and so3_optimum(mpa) add mpa to the strength potential S_pot: s28
  moves by mpa, s7 by 0.78 mpa, s2 by 0.5 mpa (the factors of the strength equations); the
  C3S proxy does not move (it follows S_clk, not S_pot);
- table_wear(mpa_per_day) adds mpa_per_day x (days since injection) to S_pot at equal Blaine;
  clearing it resets the wear (the table was re-surfaced);
- scale_drift(pct): the limestone scale reads (1 + pct/100) x the true share; the feeder
  controller tracks the setpoint with that reading, so the measured LimestoneShare settles at
  the setpoint while the true share (the physics' LS) is SP / (1 + pct/100);
- clearing a fault undoes exactly what injecting it did.
"""

from __future__ import annotations

from agent.demo.dynamics import Process
from agent.demo.tags import DAY

__all__ = ["apply_drift"]


def apply_drift(proc: Process, kind: str, params: dict[str, float | str], on: bool) -> None:
    """Inject (on) or clear (not on) the drift fault `kind` with its full parameters."""
    sign = 1.0 if on else -1.0
    if kind in ("clinker_reactivity", "so3_optimum"):
        proc.s_offset += sign * float(params["mpa"])
    elif kind == "table_wear":
        proc.wear_rate = float(params["mpa_per_day"]) * proc.dt / DAY if on else 0.0
        if not on:
            proc.wear = 0.0
    elif kind == "scale_drift":
        proc.ls_scale = 1.0 + float(params["pct"]) / 100.0 if on else 1.0
    else:
        raise ValueError(f"{kind!r} is not a drift fault")
