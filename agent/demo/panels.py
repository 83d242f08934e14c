"""Parts of the demo's live view that explain a figure: the strength margin, the capped target,
the writes over the whole demo and the CO2 panel (agent against the operator baseline).

Owns: `Margin` / `margin` (what the agent's "strength margin" is, with its numbers: prediction
- target - k x RMSE, k the objective's risk_z and RMSE the s28 RMSE the model package
declares), `capped_target` (pure: the optimiser's target inside the loop's envelope and the
operator baseline's deviation limit, as the guard clamps it), `target_cell`, `co2_panel`
(clinker factor, limestone share, kWh/t and CO2/t so far of the agent's run and of the
baseline's, and the conformity so far; the same figures as the summary's).
Must not: act on the plant, the cloud or the agent; it reads the running agent's public
objects (app.control: loops, models) only.
Invariants: the target shown as the loop's target is never outside its cap; when the
optimiser asked for more, both are shown, labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from agent.demo.conformity import compare
from agent.demo.stage import Stage

if TYPE_CHECKING:
    from agent.control.loop import ControlLoop
    from agent.demo.baseline import OperatorBaseline

__all__ = ["MARGIN", "Margin", "capped_target", "co2_panel", "control_loop", "loop_target",
           "margin", "target_cell"]  # fmt: skip


def control_loop(stage: Stage, name: str) -> ControlLoop | None:
    app = stage.app
    if app is None or app.control is None:
        return None
    return next((lp for lp in app.control.loops if lp.loop.name == name), None)


MARGIN = ("margin = prediction - target - k x RMSE (k: the objective's risk_z, RMSE: the s28 "
          "RMSE the model package declares)")  # fmt: skip


@dataclass(frozen=True)
class Margin:
    predicted: float
    target: float
    k: float
    rmse: float
    value: float  # the agent's own figure (strength_margin of its last cycle)

    def text(self) -> str:
        """The margin with its numbers, in the order of MARGIN."""
        return (f"margin {self.predicted:.1f} - {self.target:.1f} - {self.k:g} x "
                f"{self.rmse:.2f} = {self.value:+.1f} MPa")  # fmt: skip


def margin(stage: Stage, name: str, predicted: dict[str, Any]) -> Margin | None:
    """The last cycle's strength margin and the numbers it is made of (None: not predicted)."""
    lp = control_loop(stage, name)
    s28, value = predicted.get("s28"), predicted.get("strength_margin")
    if lp is None or not isinstance(s28, float | int) or not isinstance(value, float | int):
        return None
    objective = lp.loop.objective
    target, k = getattr(objective, "s28_target_mpa", None), getattr(objective, "risk_z", None)
    app = stage.app
    session = None if app is None or app.control is None else app.control.models.session(
        lp.loop.model)  # fmt: skip
    rmse = None if session is None else session.manifest.validation.rmse.get("s28")
    if target is None or k is None or rmse is None:
        return None
    return Margin(float(s28), float(target), float(k), float(rmse), float(value))


def capped_target(target: float, envelope: tuple[float, float], baseline: float | None,
                  max_deviation: float | None) -> float:  # fmt: skip
    """`target` inside the envelope and within `max_deviation` of the operator's baseline:
    the furthest the guard lets the loop go toward it."""
    lo, hi = envelope
    if baseline is not None and max_deviation is not None:
        lo, hi = max(lo, baseline - max_deviation), min(hi, baseline + max_deviation)
    return min(max(target, lo), hi)


def loop_target(stage: Stage, name: str, target: Any) -> float | None:
    """The optimiser's `target` (the loop's last) inside the loop's cap (None: none)."""
    lp = control_loop(stage, name)
    if not isinstance(target, float | int) or lp is None:
        return None
    lo, hi = lp.loop.envelope_min, lp.loop.envelope_max
    if lo is None or hi is None:
        return float(target)
    return capped_target(float(target), (lo, hi), lp.baseline,
                         lp.loop.max_deviation_from_baseline)  # fmt: skip


def target_cell(stage: Stage, name: str, target: Any, unit: str) -> str:
    """The loop's target as the view shows it: the capped one; the optimiser's when it lies
    outside the cap, labelled."""
    cap = loop_target(stage, name, target)
    if cap is None or not isinstance(target, float | int):
        return "-"
    if math.isclose(cap, target, abs_tol=1e-9):
        return f"{target:.1f} {unit}"
    return f"{cap:.1f} {unit} (capped; optimiser asked {target:.1f})"


def co2_panel(stage: Stage, base: OperatorBaseline) -> Table | str:
    """Where the CO2 per tonne comes from, so far: the agent's run and the operator
    baseline's, over the same plant time."""
    rows = stage.truth
    if len(rows) < 2 or len(base.rows) < 2:
        return "[dim]CO2: waiting for the first records[/]"
    recipe = base.recipe
    c = compare(recipe.name, recipe.s28_lower_mpa, rows, base.rows)
    ls, n = base.point
    table = Table(title="CO2 per tonne so far: the agent against the operator baseline "
                  f"(recipe: limestone {ls:.1f} %, separator {n:.0f} rpm)",
                  box=box.SIMPLE_HEAD, expand=True, padding=(0, 1))  # fmt: skip
    for col in ("run", "clinker factor", "limestone", "kWh/t (drives)", "CO2 kg/t",
                f"hours >= {recipe.s28_lower_mpa:g} MPa (true S28)", "lowest hour"):  # fmt: skip
        table.add_column(col)
    for label, f, limestone in (("agent", c.agent, c.agent_limestone),
                                ("operators", c.base, c.base_limestone)):  # fmt: skip
        table.add_row(label, f"{f.clinker_factor:.3f}", f"{limestone:.2f} %", f"{f.kwh_t:.1f}",
                      f"{f.co2_t:.1f}", f"{100 * f.share_ok:.0f} % of {f.n}",
                      f"{f.minimum:.1f} MPa")  # fmt: skip
    kg = c.saving.co2_kg_t
    said = (c.saving.why if not c.saving.counts else
            f"at equal conformity so far the agent saves {kg:.1f} kg/t" if kg >= 0 else
            f"at equal conformity so far the agent emits {-kg:.1f} kg/t more")  # fmt: skip
    table.caption = (f"CO2 = 850 x clinker factor + 0.4 x kWh/t; conformity on the hidden true "
                     f"28-day strength, hourly; {said}")  # fmt: skip
    return table
