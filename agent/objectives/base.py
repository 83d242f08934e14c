"""The objective plug-in contract: what a process objective declares, derives and scores.

Owns: the `Objective` protocol every objective module implements, and the plain values it
trades with the plant-agnostic control core: `Rows` (the candidate grid, the model's
predictions for it, the current point and where each name sits), `Scores` (what the
objective says of every row: cost, constraints, the fallback margin, the metrics the record
keeps) and `Derived` (a derived feature's value, or None to impute it, with a note).
Must not: name a process quantity (an objective module does), do I/O, read a clock or log:
objectives run on the event loop inside a control cycle, between two awaits.
Invariants: everything an objective needs from a model package and from its loop is
declared up front (`inputs`, `outputs`, `derived`, `observes`, `history_s`): `edge-agent
check` (agent.control.model_fit) refuses a package without the declared inputs and outputs,
and a writing loop without the loop inputs its derived features need (a shadow loop gets a
warning); no model manager checks an objective: a package delivered later without those
inputs and outputs is refused by the running loop at its first cycle with it
(agent.control.predict, strategy "grid"; a version on probation is then rolled back), and a
derived feature without data at run time is imputed and recorded so; `score` is a pure function
of `Rows`; an objective instance belongs to one loop (its estimators see only that loop's
samples); every feature in `observes` is needed by some derived feature.

The contract, in the order a cycle uses it:

    observe   every Good numeric sample of a loop input named in `observes` (e.g. a lab
              result that updates a bias estimate); `mean(feature, since, until)` reads the
              loop's windows, which keep `history_s[feature]` seconds (at least)
    derive    each model input named in `derived` that no tag measures, from the means of
              its loop inputs over the loop's estimator window (None: no data, impute the
              training mean; the record says "imputed")
    score     the model's predictions for every candidate row (the current point last); the
              generic optimizer (agent.control.optimizer) adds the move penalty, keeps rows
              inside the training range and on the loop's lever, and picks the cheapest row
              that meets every constraint, else the row with the largest `margin`
    effect    the metric shown to the operator with an advisory suggestion
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from agent.config.settings import ObjectiveSettings

__all__ = ["Derived", "Mean", "Objective", "Rows", "Scores"]

Mean = Callable[[str, float, float], float | None]
"""`mean(feature, since, until)`: the mean of a loop input feature's samples with a source
time in [since, until] (None: no such sample, or that history is no longer kept)."""


@dataclass(frozen=True)
class Derived:
    """A derived feature's value for this cycle (None: no data, impute the training mean)."""

    value: float | None
    note: str = ""


@dataclass(frozen=True)
class Rows:
    """One batched inference over the candidate grid, with the names of its columns.

    grid: candidate model inputs, one row each, the current point last (float64).
    y: the model's predictions for every row (float64).
    now: the current feature vector as the cycle built it (float64, before the grid's
        float32 cast), for inputs that are the same on every row.
    columns: model input name -> column of `grid`; outputs: model output name -> column of
        `y`; rmse: the package's validation RMSE per output (empty without validation).
    """

    grid: NDArray[np.float64]
    y: NDArray[np.float64]
    now: NDArray[np.float64]
    columns: Mapping[str, int]
    outputs: Mapping[str, int]
    rmse: Mapping[str, float]


@dataclass(frozen=True)
class Scores:
    """An objective's judgement of every row of `Rows` (arrays of the grid's length).

    cost: to minimise (the optimizer adds the move penalty of the grid axes).
    usable: rows the objective can judge at all (besides finite predictions).
    constraints: name -> rows that meet it, in the order the record names binding ones.
    margin: with no feasible row, the row with the largest margin is chosen; `fallback`
        says what it is, for the record's reason ("largest <fallback>").
    metrics: name -> value per row, kept for the current and the chosen row; `headline`
        names those shown with the best row over the whole grid (`joint`).
    """

    cost: NDArray[np.float64]
    usable: NDArray[np.bool_]
    constraints: Mapping[str, NDArray[np.bool_]]
    margin: NDArray[np.float64]
    fallback: str
    metrics: Mapping[str, NDArray[np.float64]]
    headline: tuple[str, ...]


class Objective(Protocol):
    """A process objective, one instance per loop (see the module docstring)."""

    @property
    def kind(self) -> str:
        """The `kind` of `[loops.objective]` that selects it."""
        ...

    @property
    def inputs(self) -> tuple[str, ...]:
        """Model inputs it reads besides the grid axes (they must be in the model)."""
        ...

    @property
    def outputs(self) -> tuple[str, ...]:
        """Model outputs it scores with (they must be in the model)."""
        ...

    @property
    def derived(self) -> Mapping[str, tuple[str, ...]]:
        """Model inputs it derives (no tag of their own) -> the loop input features each needs."""
        ...

    @property
    def observes(self) -> frozenset[str]:
        """Loop input features whose every sample it wants to see (`observe`)."""
        ...

    @property
    def history_s(self) -> Mapping[str, float]:
        """Loop input features it reads with `mean` in `observe` -> the seconds of their
        history the loop must keep for it (the windows keep at least that)."""
        ...

    @property
    def effect(self) -> str:
        """The metric reported as an advisory suggestion's predicted effect."""
        ...

    def retarget(self, settings: ObjectiveSettings) -> None:
        """Score with these settings from now on (a product change: another target, the
        same estimators); TypeError for settings of another kind."""
        ...

    def observe(self, feature: str, time: float, value: float, mean: Mean) -> None:
        """A new Good sample of an observed feature (source time, value)."""
        ...

    def derive(self, name: str, means: Mapping[str, float | None]) -> Derived:
        """A derived feature from the estimator-window means of the features it needs."""
        ...

    def score(self, rows: Rows) -> Scores:
        """Judge every candidate row."""
        ...
