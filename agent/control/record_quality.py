"""The truth loop's part of a cycle record: the correction beside the raw prediction.

Owns: `QualityRecord` (the product the cycle's production belongs to, a step-down in force,
the offsets on the model's outputs, the current point's raw and corrected predictions, the
challenger's prediction) and its JSON.
Must not: do I/O, read a clock, log or decide anything (agent.control.truth_link fills it).
Invariants: `raw` holds every output the model gave at the current point, `corrected` only
those an offset moved; the record's `predicted` (agent.control.record) is what the loop used,
so a reader always finds the raw value beside it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["QualityRecord"]


@dataclass
class QualityRecord:
    """What the truth loop meant for one cycle."""

    product: str
    offsets: dict[str, float] = field(default_factory=dict)
    step_down: str | None = None
    stepped_down_since: float | None = None
    raw: dict[str, float] = field(default_factory=dict)
    corrected: dict[str, float] = field(default_factory=dict)
    challenger: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"product": self.product, "offsets": dict(self.offsets)}
        if self.step_down is not None:
            out["step_down"] = {"reason": self.step_down, "since": self.stepped_down_since}
        if self.raw:
            out["raw"] = dict(self.raw)
        if self.corrected:
            out["corrected"] = dict(self.corrected)
        if self.challenger is not None:
            out["challenger"] = self.challenger
        return out
