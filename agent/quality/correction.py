"""Bias correction: the bounded offsets on a loop's predicted strength, and when a change of
one is worth an audit record (plant-model 4.4; issue 14).

Owns: `Offset` (an output's offset in force, the figures it rests on and on how many results),
`offsets` (the rule), `changed` (the audit threshold) and the constants of both.
Must not: do I/O, read a clock, log, or judge a model (agent.quality.monitor does).
The rules (documented for plant IT in docs/operations.md 12); all on RAW residuals of the active
model version (so an offset never feeds on itself), over the last `correction_results` of a
test ordered by (sample_time, sample_id):
- s2: the mean m2 of the last n2 s2 residuals, once n2 >= `min_results`; applied only when
  significant and large enough to be a drift, |m2| > max(`SIGNIFICANCE_Z` x SE,
  `correction_min_sigmas` x declared), else 0 (a deadband on noise), and, once applied, kept
  until |m2| < max(`RELEASE_Z` x SE, half that minimum) (hysteresis: an offset does not switch
  on and off with every result). The minimum: the model's s2 error follows the clinker of the
  day (a composite is 2 days old when its result comes), which a mean over a few days shows as
  a "bias" that is gone by the time an offset would act on new production (the headless month
  without drift: means of 0.2-0.5 MPa, against 1.25 MPa for the -2.5 MPa s28 drift).
  SE = the declared s2 RMSE / sqrt(n_eff), n_eff = n2 (1 - r) / (1 + r) with r
  the series' lag-1 autocorrelation (clamped to [0, 0.95]): successive composites share the
  clinker of the day, so 20 results hold fewer than 20 independent ones (the headless month:
  without it the offset switched 29 times in a month with no drift). No declared s2 RMSE: no
  offset (noise cannot be told from bias);
- s28 = b x (the applied s2 term) + d, with b the product's `s28_per_s2` and d the mapping error
  learned from 28-day results: the mean over the last `correction_results` SAME-SAMPLE pairs
  (an s28 and an s2 residual of one sample id, i.e. one composite window; when the ids differ,
  of one sample time: the residual rows carry no window) of (s28_raw - b x s2_raw), used only
  with >= `min_results` pairs, a declared s28 RMSE, and |d| > `SIGNIFICANCE_Z` x SE_d
  (SE_d = sqrt(decl_s28^2 + b^2 decl_s2^2) / sqrt(pairs_eff), pairs_eff as n_eff), else 0
  (no hysteresis: it changes only as 28-day results arrive). Both members of a pair
  describe the same production, so a drift after that window moves neither and a drift within
  it moves both: 28-day results confirm or replace the early estimate without reporting
  28-day-old production as today's. The s28 offset exists once the s2 term does;
- each offset is clamped to +-`max_correction_mpa`, and says its figures in `source`
  ("s2 mean -1.24 over 20 x s28_per_s2 2.0 + mapping 0.00 over 0 pairs").
Invariants: offsets exist only for "s2" and "s28", only for outputs the model predicts, and only
with `rules.correction`; recomputable from stored residuals alone. A change is audited when
the value moves by more than `AUDIT_STEP_MPA`, no offset counting as 0 (an offset of 0 appearing
is no change; the figures in `source` move with every result, so they alone are no change).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from agent.config.quality_settings import LoopQuality
from agent.quality.monitor import mean
from agent.quality.results import Residual

__all__ = [
    "AUDIT_STEP_MPA", "CORRECTED", "RELEASE_Z", "SIGNIFICANCE_Z", "Offset", "changed", "lag1",
    "offsets",
]  # fmt: skip

CORRECTED = ("s2", "s28")
"""The outputs that can carry an offset."""

AUDIT_STEP_MPA = 0.05
"""An offset that moves by more than this (or appears, or disappears) is audited."""

SIGNIFICANCE_Z = 2.0
"""A mean residual is applied only beyond this many of its standard errors (else 0)."""

RELEASE_Z = 1.0
"""An applied term is kept until its mean falls below this many standard errors."""

MAX_AUTOCORRELATION = 0.95


@dataclass(frozen=True)
class Offset:
    """An offset in force on one output: corrected = raw + value."""

    output: str
    value: float
    source: str  # the figures: "s2 mean -1.24 over 20 x s28_per_s2 2.0 + mapping ..."
    results: int  # residuals it was estimated from (s2 results, plus pairs for s28)


@dataclass(frozen=True)
class _Term:
    applied: float  # the mean when significant, else 0
    text: str


def _ordered(residuals: Sequence[Residual]) -> list[Residual]:
    return sorted(residuals, key=lambda r: (r.sample_time, r.sample_id))


def _declared(declared: Mapping[str, float], test: str) -> float | None:
    value = declared.get(test)
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def lag1(values: Sequence[float]) -> float:
    """The lag-1 autocorrelation of `values`, clamped to [0, MAX_AUTOCORRELATION] (0 for
    fewer than 3 values or no spread)."""
    if len(values) < 3:
        return 0.0
    m = mean(values)
    dev = [v - m for v in values]
    var = math.fsum(d * d for d in dev)
    if var <= 0.0:
        return 0.0
    r = math.fsum(a * b for a, b in zip(dev[1:], dev[:-1], strict=True)) / var
    return max(0.0, min(MAX_AUTOCORRELATION, r))


def _se(sigma: float, values: Sequence[float]) -> tuple[float, float]:
    """The standard error of the mean of `values` with noise `sigma`, and the lag-1
    autocorrelation that widened it."""
    r = lag1(values)
    n_eff = max(1.0, len(values) * (1.0 - r) / (1.0 + r))
    return sigma / math.sqrt(n_eff), r


def _significant(values: Sequence[float], sigma: float, what: str, unit: str = "", *,
                 held: bool, least: float = 0.0) -> _Term:  # fmt: skip
    """The mean of `values` when it is beyond z standard errors and `least` (once `held`: the
    release thresholds, RELEASE_Z and half of `least`), else 0."""
    value = mean(values)
    se, r = _se(sigma, values)
    z, floor = (RELEASE_Z, least / 2.0) if held else (SIGNIFICANCE_Z, least)
    figures = f"{what} {value:.2f} over {len(values)}{unit} (lag-1 r {r:.2f}, SE {se:.2f})"
    if abs(value) > z * se and abs(value) > floor:
        return _Term(value, figures)
    if abs(value) <= z * se:
        return _Term(0.0, f"{figures} within {float(z)} x SE: 0")
    return _Term(0.0, f"{figures} within {floor:.2f}: 0")


def _pairs(s2: Sequence[Residual], s28: Sequence[Residual]) -> list[tuple[Residual, Residual]]:
    """(s28, s2) residuals of the same sample (id, else sample time), oldest first."""
    by_id = {r.sample_id: r for r in s2}
    by_time = {r.sample_time: r for r in s2}
    found = []
    for late in _ordered(s28):
        early = by_id.get(late.sample_id) or by_time.get(late.sample_time)
        if early is not None:
            found.append((late, early))
    return found


def _mapping(pairs: Sequence[tuple[Residual, Residual]], b: float, decl_s2: float,
             decl_s28: float | None, rules: LoopQuality) -> _Term:  # fmt: skip
    m = len(pairs)
    if m < rules.min_results or decl_s28 is None:
        why = "no declared s28 RMSE" if decl_s28 is None else f"< min_results {rules.min_results}"
        return _Term(0.0, f"mapping 0.00 over {m} pairs ({why}: 0)")
    diffs = [late.raw_residual - b * early.raw_residual for late, early in pairs]
    sigma = math.sqrt(decl_s28**2 + b**2 * decl_s2**2)
    return _significant(diffs, sigma, "mapping", " pairs", held=False)


def _clamp(value: float, bound: float) -> float:
    return max(-bound, min(bound, value))


def offsets(
    residuals: Mapping[str, Sequence[Residual]],
    rules: LoopQuality,
    *,
    s28_per_s2: float,
    outputs: Collection[str],
    declared: Mapping[str, float],
    previous: Mapping[str, Offset] | None = None,
) -> dict[str, Offset]:
    """The offsets in force, by output, from the active model version's residuals by test
    (`residuals["s2"]`, `residuals["s28"]`; one model version and product), the RMSE its
    package declares per output, and the offsets in force before (for the hysteresis)."""
    before = previous or {}
    decl_s2 = _declared(declared, "s2")
    s2_all = residuals.get("s2", ())
    s2_last = _ordered(s2_all)[-rules.correction_results :]
    if not rules.correction or decl_s2 is None or len(s2_last) < rules.min_results:
        return {}
    n2, bound, b = len(s2_last), rules.max_correction_mpa, float(s28_per_s2)
    held_s2 = "s2" in before and before["s2"].value != 0.0
    early = _significant([r.raw_residual for r in s2_last], decl_s2, "s2 mean", held=held_s2,
                         least=rules.correction_min_sigmas * decl_s2)  # fmt: skip
    found: dict[str, Offset] = {}
    if "s2" in outputs:
        found["s2"] = Offset("s2", _clamp(early.applied, bound), early.text, n2)
    if "s28" in outputs:
        pairs = _pairs(s2_all, residuals.get("s28", ()))[-rules.correction_results :]
        late = _mapping(pairs, b, decl_s2, _declared(declared, "s28"), rules)
        value = _clamp(b * early.applied + late.applied, bound)
        source = f"{early.text} x s28_per_s2 {b} + {late.text}"
        found["s28"] = Offset("s28", value, source, n2 + len(pairs))
    return found


def changed(previous: Offset | None, new: Offset | None) -> bool:
    """Whether going from `previous` to `new` is worth an audit record."""
    before = 0.0 if previous is None else previous.value
    after = 0.0 if new is None else new.value
    return abs(after - before) > AUDIT_STEP_MPA
