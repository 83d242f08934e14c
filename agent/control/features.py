"""The model's feature vector, built from the loop's input windows: averages and estimators.

Owns: the per-tag sample windows a loop keeps, the window averages that feed the model (the
demo model was trained on hourly means, so noisy inputs are averaged over
`feature_window_s`), and the derived features a model may ask for by name with no tag:
`grindability` (plant-model 2.2: (MillPower/FeedRate) / (18 (B/3800)^1.4) over 30 min) and
`blaine_bias` (EWMA of LabBlaine - analyser Blaine, updated once per new lab result).
Must not: read a clock, do I/O or judge quality: gate 2 (agent.control.gates) decides which
inputs may be used; this module only turns usable values into numbers, and says for every
feature where its number came from ("measured", "derived" or "imputed").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DERIVED",
    "BlaineBias",
    "Feature",
    "Window",
    "build_features",
    "grindability",
]

BIAS_ALPHA = 0.2
DERIVED: Mapping[str, tuple[str, ...]] = {
    "grindability": ("mill_power", "feed_rate", "product_fineness"),
    "blaine_bias": ("lab_blaine", "product_fineness"),
}
"""Derived features the agent knows, and the loop input features each needs."""


@dataclass
class Window:
    """Recent (source time, value) pairs of one tag, oldest first, at most `keep_s` old."""

    keep_s: float
    points: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, time: float, value: float) -> None:
        if not (math.isfinite(time) and math.isfinite(value)):
            return
        if self.points and time <= self.points[-1][0]:
            if time == self.points[-1][0]:
                return  # the same sample delivered again (resubscription)
            self.points.clear()  # the source's clock went back: start over
        self.points.append((time, value))
        while self.points and self.points[0][0] < time - self.keep_s:
            self.points.popleft()

    def mean(self, since: float) -> float | None:
        values = [v for t, v in self.points if t >= since]
        return math.fsum(values) / len(values) if values else None

    def last(self, n: int) -> list[float]:
        return [v for _, v in list(self.points)[-n:]] if n > 0 else []


def grindability(power_kw: float, feed_tph: float, blaine_cm2g: float) -> float:
    """The grindability index estimate of plant-model 2.2 (1.0 = the design clinker)."""
    specific = power_kw / max(feed_tph, 1.0)
    return float(specific / (18.0 * (max(blaine_cm2g, 1000.0) / 3800.0) ** 1.4))


@dataclass
class BlaineBias:
    """EWMA of (lab Blaine - analyser Blaine), updated once for each new lab result."""

    value: float = 0.0
    last_lab_time: float | None = None
    samples: int = 0

    def update(self, lab_time: float, lab_blaine: float, analyser_blaine: float) -> bool:
        if self.last_lab_time is not None and lab_time <= self.last_lab_time:
            return False
        if not (math.isfinite(lab_blaine) and math.isfinite(analyser_blaine)):
            return False
        error = lab_blaine - analyser_blaine
        self.value = (
            error if self.samples == 0 else BIAS_ALPHA * error + (1 - BIAS_ALPHA) * self.value
        )
        self.last_lab_time, self.samples = lab_time, self.samples + 1
        return True


@dataclass(frozen=True)
class Feature:
    """One model input of this cycle: its value and where it came from."""

    name: str
    value: float
    origin: str  # "measured" | "derived" | "imputed"
    note: str = ""


def build_features(
    names: Sequence[str],
    *,
    usable: Mapping[str, float | None],
    means: Mapping[str, float],
    bias: BlaineBias,
    estimator_means: Mapping[str, float | None],
) -> list[Feature]:
    """The model's inputs in its order.

    `usable` maps each loop feature to its window mean when gate 2 passed it, or None when
    it failed (a failed non-critical input is imputed with the model's training mean in
    `means`; the cycle never gets here when a critical one failed). `estimator_means` holds
    the 30-minute means of the estimators' inputs (None when there is no data).
    """
    out = []
    for name in names:
        if name == "grindability":
            p, f, b = (estimator_means.get(k) for k in DERIVED["grindability"])
            if p is None or f is None or b is None:
                out.append(Feature(name, means[name], "imputed", "no estimator data"))
            else:
                out.append(Feature(name, grindability(p, f, b), "derived"))
        elif name == "blaine_bias":
            note = f"{bias.samples} lab results" if bias.samples else "no lab result yet"
            out.append(Feature(name, bias.value, "derived", note))
        elif usable.get(name) is not None:
            value = usable[name]
            assert value is not None
            out.append(Feature(name, value, "measured"))
        else:
            out.append(Feature(name, means[name], "imputed", "input failed its gate"))
    return out
