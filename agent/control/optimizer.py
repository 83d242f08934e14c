"""The candidate-grid search of plant-model 2.3: where the setpoints should go, and why.

Owns: building the candidate grid around "now" (one row per combination of the grid axes,
every other feature copied), judging the model's predictions for every row against the
constraints (strength with margin, Blaine window, residue, capacity), the objective (CO2 per
tonne of cement plus a move penalty), and the choice: the cheapest feasible candidate, or -
when none is feasible - the one with the largest strength margin (quality first), flagged.
Must not: run the model, read a clock, do I/O or limit the move: the shell runs one batched
inference over the grid, and the guard (agent.control.guard) turns the target into a safe move.
Invariants: the current point is always the last row (so "now" is predicted with the same
inference); a row with any non-finite prediction is never chosen; the result is JSON-safe.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Axis", "Choice", "Objective", "build_grid", "choose"]

OUTPUTS = ("blaine", "residue45", "s28", "spec_energy")
"""Model outputs the cement objective needs, by name."""


@dataclass(frozen=True)
class Axis:
    """A grid axis: the feature's column, its span and step, and its move penalty."""

    feature: str
    column: int
    span: float
    step: float
    penalty: float = 0.0

    def offsets(self) -> NDArray[np.float64]:
        n = math.floor(self.span / self.step + 1e-9)
        return np.arange(-n, n + 1, dtype=np.float64) * self.step


@dataclass(frozen=True)
class Objective:
    """Constraints and CO2 factors (the loop's `[loops.objective]`) and the model's sigma."""

    s28_target: float
    risk_z: float
    s28_sigma: float
    blaine_min: float
    blaine_max: float
    residue_max: float
    power_limit_kw: float
    capacity_margin: float
    clinker_co2: float
    electricity_co2: float


@dataclass(frozen=True)
class Choice:
    """The chosen target per axis feature and everything the audit and the operator need."""

    target: dict[str, float]
    feasible: bool
    feasible_count: int
    candidates: int
    binding: list[str]
    now: dict[str, float]
    best: dict[str, float]
    reason: str
    joint: dict[str, float] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target, "feasible": self.feasible,
            "feasible_count": self.feasible_count, "candidates": self.candidates,
            "binding": self.binding, "now": self.now, "best": self.best, "reason": self.reason,
            "joint": self.joint,
        }  # fmt: skip


def build_grid(x_now: NDArray[np.float64], axes: list[Axis]) -> NDArray[np.float32]:
    """Every combination of the axes' offsets around `x_now`, then `x_now` itself last."""
    combos = np.array(list(itertools.product(*(a.offsets() for a in axes))), dtype=np.float64)
    grid = np.repeat(x_now[None, :], len(combos) + 1, axis=0)
    for k, axis in enumerate(axes):
        grid[:-1, axis.column] += combos[:, k]
    return grid.astype(np.float32)


def _round(value: float) -> float:
    return round(float(value), 4)


def choose(
    grid: NDArray[np.float32],
    y: NDArray[np.float32],
    *,
    axes: list[Axis],
    outputs: dict[str, int],
    limestone_col: int | None,
    gypsum_col: int | None,
    feed: float,
    objective: Objective,
    lever: str | None = None,
    ranges: dict[int, tuple[float, float]] | None = None,
) -> Choice:
    """Judge every row of `y` (predictions for `grid`) and pick the target.

    With `lever`, the choice is among the rows that move only that axis (the other levers
    stay where they are: a loop never counts on a move another loop's guard may not make);
    the best row over the whole grid is still reported as `joint`. Rows whose axis values
    leave the model's training `ranges` (column -> (min, max)) are never chosen.
    """
    o = objective
    x = grid.astype(np.float64)
    yy = y.astype(np.float64)
    blaine, residue = yy[:, outputs["blaine"]], yy[:, outputs["residue45"]]
    s28, energy = yy[:, outputs["s28"]], yy[:, outputs["spec_energy"]]
    finite = np.isfinite(yy).all(axis=1) & (energy > 0)
    for col, (lo, hi) in (ranges or {}).items():
        finite[:-1] &= (x[:-1, col] >= lo) & (x[:-1, col] <= hi)
    mine = np.ones(len(x), dtype=bool)
    for a in axes:
        if lever is not None and a.feature != lever:
            mine &= x[:, a.column] == x[-1, a.column]
    with np.errstate(divide="ignore", invalid="ignore"):
        capacity = np.where(energy > 0, o.power_limit_kw / energy, 0.0)
    margin = s28 - o.risk_z * o.s28_sigma - o.s28_target
    checks = {
        "strength": margin >= 0,
        "blaine_min": blaine >= o.blaine_min,
        "blaine_max": blaine <= o.blaine_max,
        "residue": residue <= o.residue_max,
        "capacity": capacity >= o.capacity_margin * feed,
    }
    feasible = finite.copy()
    for ok in checks.values():
        feasible &= ok
    share = np.zeros(len(x))
    for share_col in (limestone_col, gypsum_col):
        if share_col is not None:
            share += x[:, share_col]
    co2 = (100.0 - share) / 100.0 * o.clinker_co2 + energy * o.electricity_co2
    penalty = sum(a.penalty * np.abs(x[:, a.column] - x[-1, a.column]) for a in axes)
    cost = co2 + penalty
    joint = feasible[:-1]
    joint_index = int(np.flatnonzero(joint)[np.argmin(cost[:-1][joint])]) if joint.any() else None
    finite &= mine
    feasible &= mine
    candidates = feasible[:-1]
    if candidates.any():
        index = int(np.flatnonzero(candidates)[np.argmin(cost[:-1][candidates])])
        reason = "cheapest feasible candidate"
    else:
        pool = np.flatnonzero(finite[:-1])
        if len(pool) == 0:
            index = len(x) - 1
            reason = "no candidate has a finite prediction: hold"
        else:
            index = int(pool[np.argmax(margin[:-1][pool] - 1e-6 * penalty[:-1][pool])])
            reason = "no feasible candidate: largest strength margin (quality first)"

    def point(i: int) -> dict[str, float]:
        return {"s28": _round(s28[i]), "blaine": _round(blaine[i]),
                "residue45": _round(residue[i]), "spec_energy": _round(energy[i]),
                "capacity": _round(capacity[i]), "co2_per_t": _round(co2[i]),
                "strength_margin": _round(margin[i])}  # fmt: skip

    # A constraint binds when the cheapest candidate it removed was cheaper than the choice.
    binding = []
    for name, ok in checks.items():
        others = finite[:-1].copy()
        for other, ok2 in checks.items():
            if other != name:
                others &= ok2[:-1]
        removed = others & ~ok[:-1]
        if removed.any() and cost[:-1][removed].min() < cost[index]:
            binding.append(name)
    return Choice(
        target={a.feature: _round(x[index, a.column]) for a in axes},
        feasible=bool(feasible[index]) and index < len(x) - 1,
        feasible_count=int(candidates.sum()),
        candidates=len(x) - 1,
        binding=binding,
        now=point(len(x) - 1),
        best=point(index),
        reason=reason,
        joint=None if joint_index is None else {
            **{a.feature: _round(x[joint_index, a.column]) for a in axes},
            "co2_per_t": _round(co2[joint_index]), "s28": _round(s28[joint_index])},
    )  # fmt: skip
