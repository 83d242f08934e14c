"""The demo's counterfactual: the same plant run by its operators (plant-model 4.5).

Owns: `OperatorBaseline`, a second Mill with the main run's seed and settings, run by the
operator baseline of `edge-agent evaluate` (agent.demo.evaluate.operator: the product's
recipe loaded at the start, a correction after each 2-day result, applied a shift later)
instead of the agent, stepped headless to the plant times of the main run's truth record
with the main run's plant events applied at their exact plant times; its truth rows.
Must not: touch the running plant or the agent; re-implement the operators (it only steps
their `Operator`); read the main run's truth.
Invariants: the mill's draws depend on the tick count only, so both mills see the same
weather and the difference between the runs is who runs the mill; events are applied in
the order they were logged, each at its own tick, never before the mill reaches it; the
operators' shift delay is compressed with the lab (`lab_time_scale`), as the agent's lab is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.demo.evaluate.operator import SHIFT_S, Action, Operator, Recipe, recipe_point
from agent.demo.mill import Mill
from agent.demo.stage import TruthRow, truth_row

__all__ = ["OPERATOR_EVERY_S", "OperatorBaseline"]

OPERATOR_EVERY_S = 60.0
"""Plant seconds between two looks of the operators at the lab (and at a due correction)."""

Event = tuple[float, str, dict[str, float]]


class OperatorBaseline:
    """The counterfactual mill and its operators, advanced on demand."""

    def __init__(self, *, seed: int, start_time: float, lab_time_scale: float,
                 wd_timeout_s: float, recipes: Mapping[str, Recipe]) -> None:  # fmt: skip
        self.mill = Mill(seed, lab_time_scale=lab_time_scale, wd_timeout_s=wd_timeout_s,
                         dt=0.1, noise=True, lab_noise=False)  # fmt: skip
        self.start_time = start_time
        self.operator = Operator(self.mill, recipes, shift_s=SHIFT_S / lab_time_scale)
        self.recipe = self.operator.recipe_of(self.mill.product)
        self.operator.start(remote_after=False)
        self.rows: list[TruthRow] = []
        self._applied = 0
        self._looked = self.mill.time

    @property
    def point(self) -> tuple[float, float]:
        """The recipe the operators loaded: (limestone %, separator rpm)."""
        return recipe_point(self.recipe)

    @property
    def corrections(self) -> list[Action]:
        return [a for a in self.operator.actions if a.kind == "correction"]

    def advance(self, plant_s: float, events: Sequence[Event]) -> TruthRow:
        """Step to `plant_s` (plant seconds since the story's start), applying every event
        of `events` not applied yet at its plant time; record and return the truth row."""
        for at, kind, params in events[self._applied :]:
            if at > plant_s:
                break
            self._step_to(self.start_time + at)
            self.mill.inject(kind, None, **params)
            self._applied += 1
        self._step_to(self.start_time + plant_s)
        row = truth_row(plant_s, self.mill.truth(), None)
        self.rows.append(row)
        return row

    def _step_to(self, when: float) -> None:
        mill = self.mill
        while (ticks := round((when - mill.time) / mill.dt)) > 0:
            look = max(1, round((self._looked + OPERATOR_EVERY_S - mill.time) / mill.dt))
            mill.step(min(ticks, look))
            if mill.time >= self._looked + OPERATOR_EVERY_S - mill.dt / 2:
                self.operator.tick()
                self._looked = mill.time
