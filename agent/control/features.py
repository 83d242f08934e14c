"""The model's feature vector, built from the loop's input windows and the objective's
derived features.

Owns: the per-tag sample windows a loop keeps, the window averages that feed the model (a
model trained on hourly means sees noisy inputs averaged over `feature_window_s`), and the
order of the model's inputs with where each number came from: "measured" (a loop input's
window mean), "derived" (computed by the loop's objective, agent.objectives) or "imputed"
(the model's training mean, for a non-critical input that failed its gate or a derived
feature without data).
Must not: read a clock, do I/O or judge quality: gate 2 (agent.control.gates) decides which
inputs may be used; this module only turns usable values into numbers. It knows no
process quantity: which features are derived, and how, is the objective's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.objectives.base import Derived

__all__ = ["Feature", "Window", "build_features"]


@dataclass
class Window:
    """Recent (source time, value) pairs of one tag, oldest first, at most `keep_s` older
    than the newest."""

    keep_s: float
    points: deque[tuple[float, float]] = field(default_factory=deque)
    dropped: float = -math.inf
    """The time of the newest point let go (a span reaching back to it is no longer whole)."""

    def add(self, time: float, value: float) -> None:
        if not (math.isfinite(time) and math.isfinite(value)):
            return
        if self.points and time <= self.points[-1][0]:
            if time == self.points[-1][0]:
                return  # the same sample delivered again (resubscription)
            self.points.clear()  # the source's clock went back: start over
            self.dropped = -math.inf
        self.points.append((time, value))
        while self.points and self.points[0][0] < time - self.keep_s:
            self.dropped = self.points.popleft()[0]

    def kept(self, since: float) -> bool:
        """Whether every point since `since` is still here (none of them was let go)."""
        return since > self.dropped

    def mean(self, since: float, until: float = math.inf) -> float | None:
        """The mean of the values with a time in [since, until] (None: none there)."""
        values = [v for t, v in self.points if since <= t <= until]
        return math.fsum(values) / len(values) if values else None

    def last(self, n: int) -> list[float]:
        return [v for _, v in list(self.points)[-n:]] if n > 0 else []


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
    derived: Mapping[str, Derived],
) -> list[Feature]:
    """The model's inputs in its order.

    `usable` maps each loop feature to its window mean when gate 2 passed it, or None when
    it failed (a failed non-critical input is imputed with the model's training mean in
    `means`; the cycle never gets here when a critical one failed). `derived` holds the
    objective's value for each feature it derives (a value of None is imputed).
    """
    out = []
    for name in names:
        if name in derived:
            d = derived[name]
            if d.value is None:
                out.append(Feature(name, means[name], "imputed", d.note))
            else:
                out.append(Feature(name, d.value, "derived", d.note))
        elif (value := usable.get(name)) is not None:
            out.append(Feature(name, value, "measured"))
        else:
            out.append(Feature(name, means[name], "imputed", "input failed its gate"))
    return out
