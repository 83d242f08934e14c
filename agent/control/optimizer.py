"""The candidate-grid search (plant-model 2.3), for any objective: where the setpoints should
go, and why.

Owns: building the candidate grid around "now" (one row per combination of the grid axes,
every other feature copied), the generic part of the choice: rows with a non-finite
prediction, rows the objective cannot judge, rows whose axis values leave the model's
training range and rows that move another loop's lever are never chosen; the move penalty
of the axes is added to the objective's cost; the choice is the cheapest row that meets
every constraint of the objective, or - when none does - the row with the objective's
largest margin, flagged; a constraint "binds" when the cheapest row it removed was cheaper
than the choice.
Must not: run the model, read a clock, do I/O or limit the move (the shell runs one batched
inference over the grid, and the guard, agent.control.guard, turns the target into a safe
move); name a process quantity: what a row costs, what it must meet and what the record
shows of it is the objective's (agent.objectives).
Invariants: the current point is always the last row (so "now" is predicted with the same
inference); a row with any non-finite prediction is never chosen; the result is JSON-safe.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agent.control.record import Candidates
from agent.objectives.base import Objective, Rows

__all__ = ["Axis", "Choice", "build_grid", "choose"]

Choice = Candidates
"""The search's answer is the record's candidate summary."""


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
    rows: Rows,
    *,
    axes: list[Axis],
    objective: Objective,
    lever: str | None = None,
    ranges: Mapping[int, tuple[float, float]] | None = None,
) -> Choice:
    """Ask the objective to score every row of `rows` and pick the target.

    With `lever`, the choice is among the rows that move only that axis (the other levers
    stay where they are: a loop never counts on a move another loop's guard may not make);
    the best row over the whole grid is still reported as `joint`. Rows whose axis values
    leave the model's training `ranges` (column -> (min, max)) are never chosen.
    """
    x = rows.grid
    s = objective.score(rows)
    finite = np.isfinite(rows.y).all(axis=1) & s.usable
    for col, (lo, hi) in (ranges or {}).items():
        finite[:-1] &= (x[:-1, col] >= lo) & (x[:-1, col] <= hi)
    mine = np.ones(len(x), dtype=bool)
    for a in axes:
        if lever is not None and a.feature != lever:
            mine &= x[:, a.column] == x[-1, a.column]
    checks = s.constraints
    feasible = finite.copy()
    for ok in checks.values():
        feasible &= ok
    penalty = sum(a.penalty * np.abs(x[:, a.column] - x[-1, a.column]) for a in axes)
    cost = s.cost + penalty
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
            index = int(pool[np.argmax(s.margin[:-1][pool] - 1e-6 * penalty[:-1][pool])])
            reason = f"no feasible candidate: largest {s.fallback}"

    def point(i: int) -> dict[str, float]:
        return {name: _round(values[i]) for name, values in s.metrics.items()}

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
        binding=tuple(binding),
        now=point(len(x) - 1),
        best=point(index),
        reason=reason,
        joint=None if joint_index is None else {
            **{a.feature: _round(x[joint_index, a.column]) for a in axes},
            **{h: _round(s.metrics[h][joint_index]) for h in s.headline}},
    )  # fmt: skip
