"""Gate 2 and the model for one control cycle: usable inputs -> feature vector -> prediction.

Owns: the loop's input windows (`LoopInputs`, fed with every driver batch, which also hands
the samples its objective observes to the objective), running gate 2 (agent.control.gates)
on the loop's latest samples with the model's training ranges and the window means the
model will see, asking the objective for its derived features (and the gate for their
ranges), imputing a failed non-critical input with its training mean, and running one
batched inference: the candidate grid (agent.control.optimizer, scored by the loop's
objective) or the model's direct output. What it saw goes into the cycle's record.
Must not: write, remember anything between cycles but the windows and the objective's
estimators, read a clock (`now` is passed in), judge a value itself (the gates do), or name
a process quantity (the objective does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from agent.config.settings import Loop
from agent.control.features import Window, build_features
from agent.control.gates import Verdict, check_derived, check_inputs
from agent.control.optimizer import Axis, build_grid, choose
from agent.control.record import Candidates, CycleRecord, FeatureRecord, InputRecord, Reading
from agent.domain.latest import LatestValues
from agent.domain.samples import Quality, Sample
from agent.objectives.base import Objective, Rows
from agent.packages.manifest import ModelRejectedError

if TYPE_CHECKING:
    from agent.packages.session import ModelSession

__all__ = ["BlockedError", "Inference", "LoopInputs", "features_for", "infer"]

Vector = np.ndarray[Any, np.dtype[np.float64]]


class BlockedError(Exception):
    """A gate refused this cycle; carries its verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


class LoopInputs:
    """A loop's recent input samples (Good, numeric) per tag; the samples its objective
    observes are handed on to it.

    A tag's window keeps what every use of it needs (several features may read one tag):
    each feature's window (or its own `window_s`), the estimator window for the inputs of
    the objective's derived features, the history the objective declares (`history_s`),
    and enough samples for the frozen-sensor check.
    """

    def __init__(self, loop: Loop, objective: Objective) -> None:
        estimator = {f for needs in objective.derived.values() for f in needs}
        keep: dict[str, float] = {}
        for i in loop.inputs:
            keep[i.tag] = max(
                keep.get(i.tag, 0.0),
                loop.feature_window_s,
                i.window_s or 0.0,
                loop.estimator_window_s if i.feature in estimator else 0.0,
                objective.history_s.get(i.feature, 0.0),
                3 * i.max_age_s if i.frozen_after_samples else 0.0,
            )
        self.windows = {tag: Window(keep_s) for tag, keep_s in keep.items()}
        self.objective = objective
        self._tag_of = {i.feature: i.tag for i in loop.inputs}
        self._observed: dict[str, list[str]] = {}
        for i in loop.inputs:
            if i.feature in objective.observes:
                self._observed.setdefault(i.tag, []).append(i.feature)

    def observe(self, batch: Sequence[Sample]) -> None:
        windows, observed = self.windows, self._observed
        for s in batch:
            window = windows.get(s.tag)
            if window is None or s.quality is not Quality.GOOD:
                continue
            v = s.value
            if isinstance(v, int | float) and not isinstance(v, bool):
                window.add(s.source_time, float(v))
                for feature in observed.get(s.tag, ()):
                    self.objective.observe(feature, s.source_time, float(v), self._history)

    def mean(self, feature: str, since: float, until: float) -> float | None:
        """The mean of the feature's samples with a source time in [since, until] (None:
        no such sample)."""
        tag = self._tag_of.get(feature)
        return None if tag is None else self.windows[tag].mean(since, until)

    def _history(self, feature: str, since: float, until: float) -> float | None:
        """`mean` for the objective's `observe`: None, not a partial mean, when part of
        that span is no longer kept (a sample arriving later than its `history_s`)."""
        tag = self._tag_of.get(feature)
        if tag is None or not self.windows[tag].kept(since):
            return None
        return self.windows[tag].mean(since, until)


def features_for(
    loop: Loop,
    session: ModelSession,
    *,
    latest: LatestValues,
    inputs: LoopInputs,
    now: float,
    rec: CycleRecord,
) -> Vector:
    """Gate 2 and the model's feature vector (raises BlockedError)."""
    m, objective, windows = session.manifest, inputs.objective, inputs.windows
    ranges = {i.name: (i.min, i.max) for i in m.inputs}
    samples = {i.tag: s for i in loop.inputs if (s := latest.get(i.tag)) is not None}
    frozen: dict[str, int] = {}  # per tag: the longest history any of its features checks
    for i in loop.inputs:
        frozen[i.tag] = max(frozen.get(i.tag, 0), i.frozen_after_samples)
    histories = {tag: windows[tag].last(n) for tag, n in frozen.items()}
    seen = {  # what the model will see of each input feature: its own window's mean
        i.feature: mean
        for i in loop.inputs
        if (mean := windows[i.tag].mean(now - (i.window_s or loop.feature_window_s), now))
        is not None
    }
    verdicts, ok = check_inputs(loop.inputs, samples, histories, ranges, now, values=seen)
    usable: dict[str, float | None] = {}
    rec.inputs = records = {}
    for i, v in zip(loop.inputs, verdicts, strict=True):
        value: float | None = None
        if v.ok:
            raw = samples[i.tag].value
            value = seen.get(i.feature)
            if value is None and isinstance(raw, int | float):
                value = float(raw)
        usable[i.feature] = value
        records[i.feature] = InputRecord(i.tag, Reading.of(samples.get(i.tag)), v.ok, v.reason,
                                         i.critical)  # fmt: skip
    if not ok:
        bad = [r for r in records.values() if not r.ok and r.critical]
        raise BlockedError(Verdict("inputs", False, bad[0].reason if bad else verdicts[0].reason))
    derived_names = [i.name for i in m.inputs if i.name in objective.derived]
    missing = [i.name for i in m.inputs if i.name not in objective.derived and i.name not in usable]
    if missing:
        raise BlockedError(Verdict("inputs", False, f"the model needs {missing}, not in the loop"))
    since = now - loop.estimator_window_s
    derived = {}
    for name in derived_names:
        derived[name] = objective.derive(name, {f: inputs.mean(f, since, now)
                                                for f in objective.derived[name]})  # fmt: skip
    means = {i.name: i.mean for i in m.inputs}
    features = build_features([i.name for i in m.inputs], usable=usable, means=means,
                              derived=derived)  # fmt: skip
    verdict = check_derived({f.name: f.value for f in features if f.origin == "derived"}, ranges)
    if not verdict.ok:
        raise BlockedError(verdict)
    rec.features = {f.name: FeatureRecord(f.value, f.origin, f.note) for f in features}
    imputed = [f.name for f in features if f.origin == "imputed"]
    note = f"{sum(r.ok for r in records.values())}/{len(records)} inputs ok" + (
        f"; imputed with the training mean: {imputed}" if imputed else ""
    )
    rec.verdicts.append(Verdict("inputs", True, note))
    return np.array([f.value for f in features], dtype=np.float64)


@dataclass(frozen=True)
class Inference:
    """One batched inference: rows run, the target, the predictions kept, the search."""

    rows: int
    target: float
    predicted: Mapping[str, float]
    candidates: Candidates | None = None
    raw: Mapping[str, float] | None = None
    """Every model output at the current point as the model said it (before any offset)."""
    corrected: Mapping[str, float] | None = None
    """The outputs that carry an offset, at the current point, as the loop used them."""
    point: Vector | None = None
    """The features of the current point, where `raw` was predicted (a grid search's lever
    columns at their setpoints): a challenger is run on exactly these."""


def _offset(
    y: NDArray[np.float64], outputs: Mapping[str, int], offsets: Mapping[str, float]
) -> tuple[NDArray[np.float64], dict[str, float], dict[str, float]]:
    """The predictions as the loop uses them (each output's offset added: the truth loop's
    bias correction), and the current point (the last row) raw and corrected."""
    raw_now = {name: round(float(y[-1, k]), 4) for name, k in outputs.items()}
    used = y
    corrected: dict[str, float] = {}
    for name, offset in offsets.items():
        k = outputs.get(name)
        if k is None or offset == 0.0:
            continue
        if used is y:
            used = y.copy()
        used[:, k] += offset
        corrected[name] = round(float(used[-1, k]), 4)
    return used, raw_now, corrected


def infer(
    loop: Loop,
    x: Vector,
    session: ModelSession,
    latest: LatestValues,
    objective: Objective,
    *,
    offsets: Mapping[str, float] | None = None,
) -> Inference:
    """One batched inference: the named output (strategy "direct"), or the grid search.

    `offsets` (output -> value, the truth loop's bias correction in force) are added to the
    model's predictions before anything uses them; the raw predictions stay in the result.

    A grid axis with a `setpoint_tag` is centred on that setpoint (a steady-state model's
    lever is where the setpoint is, not the noisy measured value of the last minute).
    """
    m = session.manifest
    columns = {i.name: k for k, i in enumerate(m.inputs)}
    outputs = {o.name: k for k, o in enumerate(m.outputs)}
    if loop.strategy == "direct":
        if loop.output not in outputs:
            raise ModelRejectedError(str(session.directory), f"no output {loop.output!r}")
        y1, raw, corrected = _offset(
            session.predict(x[None, :].astype(np.float32)).astype(np.float64),
            outputs, offsets or {},
        )  # fmt: skip
        predicted = {o.name: round(float(y1[0, k]), 4) for k, o in enumerate(m.outputs)}
        target = float(y1[0, outputs[str(loop.output)]])
        return Inference(1, target, predicted, None, raw, corrected, x)
    needed = [a.feature for a in loop.grid] + list(objective.inputs)
    absent = [f for f in needed if f not in columns] + [
        o for o in objective.outputs if o not in outputs
    ]
    if absent:  # a model version that does not fit this loop: refused, rolled back
        raise ModelRejectedError(str(session.directory), f"the grid search needs {absent}")
    axes = [Axis(a.feature, columns[a.feature], a.span, a.step, a.move_penalty) for a in loop.grid]
    x = x.copy()
    for a in loop.grid:
        s = latest.get(a.setpoint_tag) if a.setpoint_tag else None
        if s is not None and s.quality is Quality.GOOD and isinstance(s.value, int | float):
            x[columns[a.feature]] = float(s.value)
    grid = build_grid(x, axes)
    y, raw, corrected = _offset(session.predict(grid).astype(np.float64), outputs, offsets or {})
    rmse = dict(m.validation.rmse) if m.validation is not None else {}
    rows = Rows(grid.astype(np.float64), y, x, columns, outputs, rmse)
    ranges = {a.column: (m.inputs[a.column].min, m.inputs[a.column].max) for a in axes}
    choice = choose(rows, axes=axes, objective=objective, lever=loop.lever, ranges=ranges)
    target = choice.target[str(loop.lever)]
    return Inference(len(grid), target, choice.now, choice, raw, corrected, x)
