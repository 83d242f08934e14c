"""Judging a model against the lab: the join of a result with its window's predictions, the
mean bias and RMSE of the residuals, the degraded verdict, its persistence, and the step-down it
causes (plant-model 3 C, 4.4).

Owns: `StepDown`, `TestHealth`, `LoopQualityReport` (what /status, /metrics and the cloud
show), `join` (a result + the predictions of one model version -> `Residual`), `mean`, `rmse`,
`judge` (one series of residuals -> `TestHealth`), `steps_down`, `first_degraded`,
`step_down_for`, and the constant `BIAS_Z`.
Must not: do I/O, read a clock, log, or decide whether a loop may step down (the loop's mode
and `step_down` flag are the truth loop's business: agent.quality.standing).
The rules (documented for plant IT in docs/operations.md 12):
- a series is judged over its last n = min(`results`, available) residuals ordered by
  (sample_time, sample_id), as used (corrected); raw figures are kept beside;
- bias = the MEAN of those n residuals (not an EWMA: an EWMA with alpha 0.3 carries 0.42 sigma of
  its own noise, so with hundreds of checks a month a 1-sigma limit trips on a sound model);
- degraded on bias when n >= `min_results` and |bias| > `bias_sigmas` x declared RMSE and
  |bias| > `BIAS_Z` x declared / sqrt(n) (the bias is beyond its own standard error: on few
  results the second limit is the larger);
- degraded on RMSE only over n >= `rmse_min_results` residuals, when RMSE > `rmse_ratio` x
  declared (at 20 results and 1.5: chi2_20 > 45, ~0.1 % of checks of a sound model);
- `streak` = how many of the series' newest results in a row (counted up to `persist_results`)
  were each judged degraded, every one over the last `results` residuals up to it; a series steps
  a loop down (`steps_down`) only with a streak of `persist_results` and only when its test is
  in `step_down_tests` (the strengths the loop's constraint protects; Blaine and residue are
  judged, shown and alarmed as degraded, but the model's Blaine has its own online bias input,
  so their residuals do not tell a drifting strength model).
Invariants: everything is recomputable from the stored residuals alone (a restart or a
corrected result changes the verdict and the streak exactly as if it had arrived so); a series
is degraded only when a declared RMSE > 0 exists; reasons carry the figures (2 decimals) and
no units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.config.quality_settings import LoopQuality
from agent.quality.results import LabResult, Prediction, Residual

__all__ = [
    "BIAS_Z",
    "LoopQualityReport",
    "SeriesKey",
    "StepDown",
    "TestHealth",
    "first_degraded",
    "join",
    "judge",
    "mean",
    "rmse",
    "step_down_for",
    "steps_down",
]

BIAS_Z = 3.0
"""A bias counts only beyond this many standard errors of its mean (declared RMSE / sqrt(n))."""


@dataclass(frozen=True)
class StepDown:
    """A closed loop stepped down to advisory because its active model was degraded."""

    loop: str
    since: float  # unix s
    model: str
    version: str
    test: str
    reason: str  # "s2 bias -1.31 over 20 results > 1.0 x declared RMSE 0.91 and > 3.0 x SE ..."


@dataclass(frozen=True)
class TestHealth:
    """One model version's standing on one test for one product."""

    __test__ = False  # not a pytest test class

    model: str
    version: str
    role: str
    product: str
    test: str
    n: int  # residuals judged (the last `results` matched)
    bias: float  # mean of the residual as used (corrected)
    raw_bias: float  # mean of the raw residual
    rmse: float  # as used, over the judged residuals
    raw_rmse: float
    declared_rmse: float | None
    degraded: bool  # this (the newest) result's verdict
    reason: str
    streak: int  # newest results in a row judged degraded (at most persist_results)


@dataclass(frozen=True)
class LoopQualityReport:
    """A loop's truth-loop figures: for /status, /metrics and `edge-agent status`."""

    loop: str
    product: str
    model: str
    version: str
    step_down: StepDown | None
    offsets: Mapping[str, float]
    tests: list[TestHealth] = field(default_factory=list)
    challenger: list[TestHealth] = field(default_factory=list)
    predictions_kept: int = 0
    results_matched: int = 0


@dataclass(frozen=True, order=True)
class SeriesKey:
    """What one series of residuals is judged per."""

    loop: str
    model: str
    version: str
    role: str
    product: str
    test: str


def join(result: LabResult, predictions: Iterable[Prediction]) -> Residual | None:
    """The result joined with the mean of the predictions (one loop, model version and role)
    of its test whose time lies in (sample_time - window_s, sample_time] for its product;
    None when there is no such prediction (unmatched)."""
    used: list[float] = []
    raw: list[float] = []
    first: Prediction | None = None
    for p in predictions:
        if p.product != result.product or not (result.window_start < p.time <= result.sample_time):
            continue
        value, raw_value = p.used(result.test), p.raw.get(result.test)
        if value is None or raw_value is None:
            continue
        first = first or p
        used.append(value)
        raw.append(float(raw_value))
    if first is None:
        return None
    return Residual(
        loop=first.loop, model=first.model, version=first.version, role=first.role,
        product=result.product, test=result.test, sample_id=result.sample_id,
        sample_time=result.sample_time, value=result.value, raw=math.fsum(raw) / len(raw),
        used=math.fsum(used) / len(used), predictions=len(used),
    )  # fmt: skip


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean of `values`; 0.0 when empty."""
    return math.fsum(values) / len(values) if values else 0.0


def rmse(values: Sequence[float]) -> float:
    """Root mean square of `values`; 0.0 when empty."""
    return math.sqrt(math.fsum(v * v for v in values) / len(values)) if values else 0.0


def _x(factor: float) -> str:
    return str(float(factor))


def _failures(test: str, used: Sequence[float], declared: float, rules: LoopQuality) -> list[str]:
    """What a window of residuals (as used, oldest first) fails; [] when it passes."""
    n, bias, error = len(used), mean(used), rmse(used)
    failures: list[str] = []
    if n < rules.min_results:
        return failures
    se = declared / math.sqrt(n)
    if abs(bias) > rules.bias_sigmas * declared and abs(bias) > BIAS_Z * se:
        failures.append(
            f"{test} bias {bias:.2f} over {n} results > {_x(rules.bias_sigmas)} x declared RMSE "
            f"{declared:.2f} and > {_x(BIAS_Z)} x its standard error {se:.2f}"
        )
    if n >= rules.rmse_min_results and error > rules.rmse_ratio * declared:
        failures.append(
            f"{test} RMSE {error:.2f} over {n} results > {_x(rules.rmse_ratio)} x "
            f"declared RMSE {declared:.2f}"
        )
    return failures


def judge(
    key: SeriesKey, residuals: Sequence[Residual], declared: float | None, rules: LoopQuality
) -> TestHealth:
    """The health of one series: mean bias and RMSE over its last `rules.results` residuals
    against the declared RMSE, the verdict of the newest result and its streak (the module's
    rules)."""
    ordered = sorted(residuals, key=lambda r: (r.sample_time, r.sample_id))
    judged = ordered[-rules.results :]
    used = [r.residual for r in judged]
    raw = [r.raw_residual for r in judged]
    n, bias, error = len(judged), mean(used), rmse(used)
    failures: list[str] = []
    streak = 0
    if declared is None or not math.isfinite(declared) or declared <= 0:
        reason = f"{key.test} no declared RMSE"
    elif n < rules.min_results:
        reason = f"{key.test} {n} results < min_results {rules.min_results}"
    else:
        failures = _failures(key.test, used, declared, rules)
        while streak < rules.persist_results and streak < len(ordered):
            window = ordered[: len(ordered) - streak][-rules.results :]
            if not _failures(key.test, [r.residual for r in window], declared, rules):
                break
            streak += 1
        rmse_rule = "" if n >= rules.rmse_min_results else (
            f"; RMSE not judged below rmse_min_results {rules.rmse_min_results}")  # fmt: skip
        reason = "; ".join(failures) or (
            f"{key.test} bias {bias:.2f}, RMSE {error:.2f} over {n} results within limits "
            f"(declared RMSE {declared:.2f}){rmse_rule}"
        )
    return TestHealth(
        model=key.model, version=key.version, role=key.role, product=key.product,
        test=key.test, n=n, bias=bias, raw_bias=mean(raw), rmse=error, raw_rmse=rmse(raw),
        declared_rmse=declared, degraded=bool(failures), reason=reason, streak=streak,
    )  # fmt: skip


def steps_down(health: TestHealth, rules: LoopQuality) -> bool:
    """Whether this series steps its (closed, step_down) loop down: degraded on
    `persist_results` newest results in a row, and its test one of `step_down_tests`."""
    return (
        health.degraded
        and health.streak >= rules.persist_results
        and health.test in rules.step_down_tests
    )


def first_degraded(healths: Iterable[TestHealth]) -> TestHealth | None:
    """The first degraded health in the given (test) order, or None."""
    return next((h for h in healths if h.degraded), None)


def step_down_for(loop: str, health: TestHealth, since: float) -> StepDown:
    """The step-down a degraded health causes; its reason says on how many results in a row."""
    return StepDown(
        loop=loop, since=since, model=health.model, version=health.version, test=health.test,
        reason=f"{health.reason}, on {health.streak} results in a row",
    )  # fmt: skip
