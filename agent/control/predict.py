"""Gate 2 and the model for one control cycle: usable inputs -> feature vector -> prediction.

Owns: the loop's input windows and Blaine-bias estimator (`LoopInputs`, fed with every
driver batch), running gate 2 (agent.control.gates) on the loop's latest samples, averaging usable
inputs over `feature_window_s`, checking every model feature (averaged, derived or imputed)
against the model's training range, imputing a failed non-critical input with its training
mean, and running one batched inference: the candidate grid (agent.control.optimizer) or the
model's direct output. Everything it saw goes into the cycle's audit record.
Must not: write, remember anything between cycles or read a clock (`now` is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.config.settings import Loop
from agent.control.features import DERIVED, BlaineBias, Window, build_features
from agent.control.gates import Verdict, check_inputs
from agent.control.model_fit import GRID_INPUTS, GRID_OUTPUTS
from agent.control.optimizer import Axis, Objective, build_grid, choose
from agent.domain.latest import LatestValues
from agent.domain.samples import Quality, Sample
from agent.packages.manifest import ModelRejectedError

if TYPE_CHECKING:
    from agent.packages.session import ModelSession

__all__ = ["BlockedError", "LoopInputs", "features_for", "infer", "sample_record"]

Vector = np.ndarray[Any, np.dtype[np.float64]]


class BlockedError(Exception):
    """A gate refused this cycle; carries its verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


class LoopInputs:
    """A loop's recent input samples (Good, numeric) per tag, and its Blaine-bias estimator.

    Each window keeps what its uses need: the feature window (or the input's own
    `window_s`), the estimator window for the estimators' inputs, and enough samples for
    the frozen-sensor check.
    """

    def __init__(self, loop: Loop) -> None:
        estimator = {f for needs in DERIVED.values() for f in needs}
        self.windows = {
            i.tag: Window(
                max(
                    loop.feature_window_s,
                    i.window_s or 0.0,
                    loop.estimator_window_s if i.feature in estimator else 0.0,
                    3 * i.max_age_s if i.frozen_after_samples else 0.0,
                )
            )
            for i in loop.inputs
        }
        self.bias = BlaineBias()
        self._tag_of = {i.feature: i.tag for i in loop.inputs}

    def observe(self, batch: Sequence[Sample]) -> None:
        windows, lab = self.windows, self._tag_of.get("lab_blaine")
        for s in batch:
            window = windows.get(s.tag)
            if window is None or s.quality is not Quality.GOOD:
                continue
            v = s.value
            if isinstance(v, int | float) and not isinstance(v, bool):
                window.add(s.source_time, float(v))
                if s.tag == lab:
                    fine = self.mean("product_fineness", s.source_time - 3600.0)
                    if fine is not None:
                        self.bias.update(s.source_time, float(v), fine)

    def mean(self, feature: str, since: float) -> float | None:
        tag = self._tag_of.get(feature)
        return None if tag is None else self.windows[tag].mean(since)


def sample_record(s: Sample | None) -> dict[str, Any] | None:
    """A sample as strict JSON (value, status, source time) for the audit."""
    if s is None:
        return None
    v = s.value
    value = v if isinstance(v, bool | int | str) or v is None else float(v)
    if isinstance(value, float) and not math.isfinite(value):
        value = repr(value)
    return {"value": value, "status": s.status, "source_time": s.source_time}


def features_for(
    loop: Loop,
    session: ModelSession,
    *,
    latest: LatestValues,
    windows: Mapping[str, Window],
    bias: BlaineBias,
    mean: Callable[[str, float], float | None],
    now: float,
    rec: dict[str, Any],
) -> Vector:
    """Gate 2 and the model's feature vector (raises BlockedError)."""
    m = session.manifest
    ranges = {i.name: (i.min, i.max) for i in m.inputs}
    samples = {i.tag: s for i in loop.inputs if (s := latest.get(i.tag)) is not None}
    histories = {i.tag: windows[i.tag].last(i.frozen_after_samples) for i in loop.inputs}
    # The training range is checked below on the averaged value the model will see.
    verdicts, ok = check_inputs(loop.inputs, samples, histories, {}, now)
    usable: dict[str, float | None] = {}
    rec["inputs"] = inputs = {}
    for i, v in zip(loop.inputs, verdicts, strict=True):
        value: float | None = None
        verdict = v
        if v.ok:
            raw = samples[i.tag].value
            value = windows[i.tag].mean(now - (i.window_s or loop.feature_window_s))
            if value is None and isinstance(raw, int | float):
                value = float(raw)
            lo, hi = ranges.get(i.feature, (-math.inf, math.inf))
            if value is not None and not lo <= value <= hi:
                why = f"{i.feature} = {value:.6g} is out of the training range [{lo:.6g}, {hi:.6g}]"
                verdict, value = Verdict("input", False, why), None
        usable[i.feature] = value
        inputs[i.feature] = {"tag": i.tag, **(sample_record(samples.get(i.tag)) or {}),
                             "ok": verdict.ok, "reason": verdict.reason,
                             "critical": i.critical}  # fmt: skip
        if not verdict.ok and i.critical:
            ok = False
    if not ok:
        bad = [f for f, r in inputs.items() if not r["ok"] and r["critical"]]
        reason = inputs[bad[0]]["reason"] if bad else verdicts[0].reason
        raise BlockedError(Verdict("inputs", False, reason))
    missing = [i.name for i in m.inputs if i.name not in DERIVED and i.name not in usable]
    if missing:
        raise BlockedError(Verdict("inputs", False, f"the model needs {missing}, not in the loop"))
    since = now - loop.estimator_window_s
    est = {f: mean(f, since) for needs in DERIVED.values() for f in needs}
    features = build_features([i.name for i in m.inputs], usable=usable,
                              means={i.name: i.mean for i in m.inputs}, bias=bias,
                              estimator_means=est)  # fmt: skip
    for f in features:
        lo, hi = ranges[f.name]
        if f.origin == "derived" and not lo <= f.value <= hi:
            why = f"{f.name} = {f.value:.4g} is out of the training range [{lo:.4g}, {hi:.4g}]"
            raise BlockedError(Verdict("inputs", False, why))
    rec["features"] = {f.name: {"value": round(f.value, 6), "origin": f.origin,
                                **({"note": f.note} if f.note else {})}
                       for f in features}  # fmt: skip
    imputed = [f.name for f in features if f.origin == "imputed"]
    note = f"{sum(r['ok'] for r in inputs.values())}/{len(inputs)} inputs ok" + (
        f"; imputed with the training mean: {imputed}" if imputed else ""
    )
    rec["verdicts"].append(vars(Verdict("inputs", True, note)))
    return np.array([f.value for f in features], dtype=np.float64)


def infer(
    loop: Loop, x: Vector, session: ModelSession, latest: LatestValues
) -> tuple[int, dict[str, Any]]:
    """One batched inference; (rows, what the record keeps: target, candidates, predicted).

    A grid axis with a `setpoint_tag` is centred on that setpoint (a steady-state model's
    lever is where the setpoint is, not the noisy measured value of the last minute).
    """
    m = session.manifest
    columns = {i.name: k for k, i in enumerate(m.inputs)}
    outputs = {o.name: k for k, o in enumerate(m.outputs)}
    if loop.strategy == "direct":
        if loop.output not in outputs:
            raise ModelRejectedError(str(session.directory), f"no output {loop.output!r}")
        y = session.predict(x[None, :].astype(np.float32))
        predicted = {o.name: round(float(y[0, k]), 4) for k, o in enumerate(m.outputs)}
        return 1, {"target": float(y[0, outputs[str(loop.output)]]), "predicted": predicted}
    needed = [a.feature for a in loop.grid] + list(GRID_INPUTS)
    absent = [f for f in needed if f not in columns] + [o for o in GRID_OUTPUTS if o not in outputs]
    if absent:  # a model version that does not fit this loop: refused, rolled back
        raise ModelRejectedError(str(session.directory), f"the grid search needs {absent}")
    axes = [Axis(a.feature, columns[a.feature], a.span, a.step, a.move_penalty) for a in loop.grid]
    x = x.copy()
    for a in loop.grid:
        s = latest.get(a.setpoint_tag) if a.setpoint_tag else None
        if s is not None and s.quality is Quality.GOOD and isinstance(s.value, int | float):
            x[columns[a.feature]] = float(s.value)
    grid = build_grid(x, axes)
    y = session.predict(grid)
    ob = loop.objective
    sigma = m.validation.rmse.get("s28", 0.0) if m.validation is not None else 0.0
    choice = choose(
        grid, y, axes=axes, outputs=outputs, limestone_col=columns.get("limestone_share"),
        gypsum_col=columns.get("gypsum_share"), feed=float(x[columns["feed_rate"]]),
        lever=loop.lever, ranges={columns[a.feature]: (m.inputs[columns[a.feature]].min,
                                  m.inputs[columns[a.feature]].max) for a in loop.grid},
        objective=Objective(ob.s28_target_mpa, ob.risk_z, sigma, ob.blaine_min_cm2g,
                            ob.blaine_max_cm2g, ob.residue45_max_pct, ob.mill_power_limit_kw,
                            ob.capacity_margin, ob.clinker_co2_kg_per_t,
                            ob.electricity_co2_kg_per_kwh),
    )  # fmt: skip
    return len(grid), {"target": choice.target[str(loop.lever)],
                       "candidates": choice.summary(), "predicted": choice.now}  # fmt: skip
