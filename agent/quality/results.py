"""Lab results and predictions as the truth loop's data: what they are and how one is told
from another (plant-model 4.2, 4.4).

Owns: `LabResult` (one test on one sample: sample id, the production window it describes,
product, test, value, unit, entry time, the path it came by), `Ingested` (what a result did to
the store: new, duplicate, correction), `Prediction` (what a loop's model said of one cycle's
production, raw and corrected, per output) and `Residual` (a result joined with the mean
prediction of its window).
Must not: do I/O, read a clock or log.
Invariants: a result's identity is (sample_id, test); the same identity with the same value
(within 1e-9 relative) is a duplicate, with another value a correction that replaces it (its
`revision` counts up); the window is (sample_time - window_s, sample_time]; a result is joined
only by sample time and window, never by entry or publication time.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Ingested", "LabResult", "Prediction", "Residual", "same_value"]


class Ingested(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CORRECTION = "correction"


@dataclass(frozen=True)
class LabResult:
    """One lab test of one sample.

    sample_time: the end of the production window the sample describes (unix s, UTC).
    window_s: the window's length (an hourly spot sample 3600, a 4-hour composite 14400).
    entry_time: when the LIMS entered it (unix s; the tag's server time, the CSV's entry
        column, the cloud's received time), for the record only.
    source: "tag:<tag>", "csv:<file>:<line>" or "cloud".
    """

    sample_id: str
    sample_time: float
    window_s: float
    product: str
    test: str
    value: float
    unit: str
    entry_time: float
    source: str
    revision: int = 0

    @property
    def window_start(self) -> float:
        return self.sample_time - self.window_s

    def as_event(self) -> dict[str, object]:
        """The event that carries it to the cloud (strict JSON)."""
        return {
            "kind": "lab_result",
            "sample_id": self.sample_id,
            "sample_time": self.sample_time,
            "window_s": self.window_s,
            "product": self.product,
            "test": self.test,
            "value": self.value,
            "unit": self.unit,
            "entry_time": self.entry_time,
            "source": self.source,
            "revision": self.revision,
        }


def same_value(a: float, b: float) -> bool:
    """Two results of one sample and test say the same (a re-delivery, not a correction)."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True)
class Prediction:
    """What one loop's model predicted for one cycle's production (the current point).

    role: "active" (the version the loop steers with) or "challenger" (shadow).
    raw: output name -> the model's prediction; corrected: output -> raw + the offset in force
    (only outputs that have an offset; the others are as raw).
    """

    loop: str
    model: str
    version: str
    role: str
    product: str
    time: float
    raw: Mapping[str, float]
    corrected: Mapping[str, float] = field(default_factory=dict)

    def used(self, output: str) -> float | None:
        """The prediction the loop acted on (corrected where an offset was in force)."""
        value = self.corrected.get(output, self.raw.get(output))
        return None if value is None else float(value)


@dataclass(frozen=True)
class Residual:
    """A lab result joined with the mean prediction of its window by one model version.

    residual = value - used (the prediction as the loop used it); raw_residual = value - raw.
    """

    loop: str
    model: str
    version: str
    role: str
    product: str
    test: str
    sample_id: str
    sample_time: float
    value: float
    raw: float
    used: float
    predictions: int

    @property
    def residual(self) -> float:
        return self.value - self.used

    @property
    def raw_residual(self) -> float:
        return self.value - self.raw
