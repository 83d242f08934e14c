"""The candidate-grid search with the cement mill's objective: feasibility, cost, fallbacks,
lever restriction, ranges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.settings import CementMillObjective
from agent.control.optimizer import Axis, Choice, build_grid, choose
from agent.objectives.base import Rows
from agent.objectives.cement_mill import CementMill

OUT = {"blaine": 0, "residue45": 1, "s28": 2, "spec_energy": 3}
COLUMNS = {"n": 0, "limestone_share": 1, "feed_rate": 2}  # the toy model's inputs
OBJ = CementMill(CementMillObjective(s28_target_mpa=47.5, risk_z=1.0))
RMSE = {"s28": 1.5}
AXES = [Axis("n", 0, 10.0, 5.0, 0.01), Axis("ls", 1, 1.0, 0.5, 0.5)]


def plant(grid: np.ndarray) -> np.ndarray:
    """A toy plant: strength rises with n, falls with limestone; energy rises with n."""
    n, ls = grid[:, 0].astype(np.float64), grid[:, 1].astype(np.float64)
    s28 = 49.0 + 0.05 * (n - 950.0) - 0.6 * (ls - 12.0)
    energy = 18.0 + 0.01 * (n - 950.0)
    blaine = 3800.0 + 2.0 * (n - 950.0)
    return np.column_stack([blaine, np.full_like(n, 4.0), s28, energy]).astype(np.float32)


def run(x_now: list[float], **kw: Any) -> Choice:
    now = np.array([*x_now, 180.0], dtype=np.float64)  # the feed: 180 t/h on every row
    grid = build_grid(now, AXES)
    y = kw.pop("y", None)
    y = plant(grid) if y is None else y
    rows = Rows(grid.astype(np.float64), y.astype(np.float64), now, COLUMNS, OUT, RMSE)
    return choose(rows, axes=AXES, objective=OBJ, **kw)


def test_the_grid_holds_every_combination_and_now_last() -> None:
    grid = build_grid(np.array([950.0, 12.0]), AXES)
    assert grid.shape == (5 * 5 + 1, 2)
    assert grid[-1].tolist() == [950.0, 12.0]
    assert {round(float(v), 3) for v in grid[:-1, 0]} == {940.0, 945.0, 950.0, 955.0, 960.0}


def test_margin_is_spent_on_limestone_when_strength_allows() -> None:
    choice = run([950.0, 12.0])
    assert choice.feasible
    assert choice.target["ls"] > 12.0
    assert choice.best["co2_per_t"] < choice.now["co2_per_t"]
    assert choice.best["strength_margin"] >= 0


def test_a_strength_deficit_moves_toward_strength_and_names_the_binding_constraint() -> None:
    choice = run([940.0, 12.0])  # s28 48.5 - 1.5 < 47.5: infeasible now
    assert choice.now["strength_margin"] < 0
    assert choice.target["n"] > 940.0 or choice.target["ls"] < 12.0
    assert "strength" in choice.binding


def test_with_a_lever_only_that_axis_moves() -> None:
    choice = run([940.0, 12.0], lever="n")
    assert choice.target["ls"] == 12.0
    assert choice.target["n"] > 940.0
    assert choice.joint is not None


def test_no_feasible_candidate_falls_back_to_the_largest_strength_margin() -> None:
    choice = run([900.0, 14.0])  # far too weak everywhere on the grid
    assert not choice.feasible
    assert choice.target == {"n": 910.0, "ls": 13.0}
    assert "largest strength margin" in choice.reason


def test_rows_outside_the_training_range_are_never_chosen() -> None:
    choice = run([950.0, 12.0], ranges={1: (11.0, 12.0)})
    assert choice.target["ls"] <= 12.0


@given(st.lists(st.integers(0, 24), min_size=1, max_size=25, unique=True))
def test_a_row_with_nan_or_inf_is_never_chosen(bad_rows: list[int]) -> None:
    grid = build_grid(np.array([950.0, 12.0]), AXES)
    y = plant(grid)
    for i, row in enumerate(bad_rows):
        y[row, i % 4] = np.nan if i % 2 else np.inf
    choice = run([950.0, 12.0], y=y)
    chosen = [i for i in range(25) if grid[i, 0] == choice.target["n"]
              and grid[i, 1] == choice.target["ls"]]  # fmt: skip
    assert chosen and (chosen[0] not in bad_rows or len(bad_rows) == 25)


def test_all_rows_non_finite_holds() -> None:
    grid = build_grid(np.array([950.0, 12.0]), AXES)
    y = np.full((len(grid), 4), np.nan, dtype=np.float32)
    choice = run([950.0, 12.0], y=y)
    assert choice.target == {"n": 950.0, "ls": 12.0}
    assert "hold" in choice.reason


@pytest.mark.parametrize("bad", [np.nan, 0.0, -1.0])
def test_a_non_positive_or_nan_energy_makes_a_row_unusable(bad: float) -> None:
    grid = build_grid(np.array([950.0, 12.0]), AXES)
    y = plant(grid)
    y[:-1, 3] = bad
    assert not run([950.0, 12.0], y=y).feasible
