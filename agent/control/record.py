"""The decision record of a control cycle: typed, and the JSON its readers have always read.

Owns: the types of one cycle's record (design "Control loops and safety" 7: every gate's
verdict, the handshake and input snapshots with value, status and source time, the model's
identity, the features, the candidate summary, the guard's move, the write and its
read-back, the advice, the timings) with the state a restart must not lose as typed fields
(`safety_stop`, `baseline`; agent.control.latch reads them back), and their JSON form: the
keys the cloud, the demo, /status, bench/ and the audit chain read.
Must not: do I/O, read a clock, log, or decide anything: agent.control.loop fills the
record, agent.control.audit stores its JSON.
Invariants: every part is a frozen dataclass; `CycleRecord` itself is filled by the cycle
step by step and frozen in JSON by the audit. A part that did not happen is absent from the
JSON (`"write" in record` means a write was attempted); `safety_stop` and `baseline` are
always present (null when none), which is how agent.control.latch.carried tells a typed
record from one written before them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.control.gates import Verdict
from agent.control.latch import SafetyStop
from agent.control.products import ProductRecord
from agent.control.record_quality import QualityRecord
from agent.domain.samples import Sample

__all__ = [
    "Advice",
    "Candidates",
    "CycleRecord",
    "FeatureRecord",
    "GuardRecord",
    "Handshake",
    "InputRecord",
    "ModelRef",
    "Outcome",
    "ReadBack",
    "Reading",
    "WriteRecord",
    "WriteStatus",
]

Json = dict[str, Any]


class Outcome(StrEnum):
    """How a cycle ended."""

    WRITE = "write"
    ADVISE = "advise"
    SHADOW = "shadow"
    HOLD = "hold"
    BLOCKED = "blocked"


class WriteStatus(StrEnum):
    """What the PLC answered to a setpoint write."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CONNECTION_LOST = "connection_lost"  # not sent
    UNKNOWN = "unknown"  # may have been applied (a timeout, a link lost mid-request)


@dataclass(frozen=True)
class Reading:
    """A sample as the record keeps it: value (strict JSON), status code, source time."""

    value: bool | int | float | str | None
    status: int
    source_time: float

    @classmethod
    def of(cls, s: Sample | None) -> Reading | None:
        if s is None:
            return None
        v = s.value
        value = v if isinstance(v, bool | int | str) or v is None else float(v)
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        return cls(value, s.status, s.source_time)

    def to_json(self) -> Json:
        return {"value": self.value, "status": self.status, "source_time": self.source_time}


def _json(part: Reading | None) -> Json | None:
    return None if part is None else part.to_json()


@dataclass(frozen=True)
class Handshake:
    """Gate 1's evidence: the PLC's remote grant, its heartbeat echo, the counter sent."""

    remote: Reading | None
    echo: Reading | None
    sent: int | None

    def to_json(self) -> Json:
        return {"remote": _json(self.remote), "echo": _json(self.echo), "sent": self.sent}


@dataclass(frozen=True)
class InputRecord:
    """Gate 2 for one loop input: its tag, what it read, and the verdict."""

    tag: str
    reading: Reading | None
    ok: bool
    reason: str
    critical: bool

    def to_json(self) -> Json:
        return {"tag": self.tag, **(_json(self.reading) or {}), "ok": self.ok,
                "reason": self.reason, "critical": self.critical}  # fmt: skip


@dataclass(frozen=True)
class FeatureRecord:
    """One model input: its value and where it came from (measured, derived, imputed)."""

    value: float
    origin: str
    note: str = ""

    def to_json(self) -> Json:
        return {"value": round(self.value, 6), "origin": self.origin,
                **({"note": self.note} if self.note else {})}  # fmt: skip


@dataclass(frozen=True)
class ModelRef:
    """The model package the cycle ran."""

    name: str
    version: str
    sha256: str

    def to_json(self) -> Json:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Candidates:
    """The candidate search: target per axis, feasibility, binding constraints, and the
    objective's metrics for the current point (`now`), the chosen row (`best`) and the
    best row over the whole grid (`joint`, its axis values and headline metrics)."""

    target: Mapping[str, float]
    feasible: bool
    feasible_count: int
    candidates: int
    binding: tuple[str, ...]
    now: Mapping[str, float]
    best: Mapping[str, float]
    reason: str
    joint: Mapping[str, float] | None = None

    def to_json(self) -> Json:
        return {
            "target": dict(self.target), "feasible": self.feasible,
            "feasible_count": self.feasible_count, "candidates": self.candidates,
            "binding": list(self.binding), "now": dict(self.now), "best": dict(self.best),
            "reason": self.reason, "joint": None if self.joint is None else dict(self.joint),
        }  # fmt: skip


@dataclass(frozen=True)
class GuardRecord:
    """The guard's answer: from the current setpoint toward the target, the move (or None)."""

    current: float
    target: float
    baseline: float | None
    value: float | None
    clamped: bool

    def to_json(self) -> Json:
        return {"current": self.current, "target": self.target, "baseline": self.baseline,
                "value": self.value, "clamped": self.clamped}  # fmt: skip


@dataclass(frozen=True)
class ReadBack:
    """What the effective setpoint showed after an accepted write, and when it matched."""

    value: float | None
    after_s: float | None = None


@dataclass(frozen=True)
class WriteRecord:
    """One setpoint write: what was sent, the PLC's answer, and the read-back (if awaited)."""

    tag: str
    from_value: float
    value: float
    decision_ms: float
    status: WriteStatus
    reason: str | None = None
    readback: ReadBack | None = None

    def to_json(self) -> Json:
        out: Json = {"tag": self.tag, "from": self.from_value, "value": self.value,
                     "decision_ms": self.decision_ms, "status": self.status.value}  # fmt: skip
        if self.readback is not None:
            out["readback"] = self.readback.value
            if self.readback.after_s is not None:
                out["readback_s"] = self.readback.after_s
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Advice:
    """A suggestion shown to the operator, with the objective's predicted effect
    (`effect_<name>` in JSON), and whether (and when) the operator acknowledged it."""

    id: int
    value: float
    time: float
    effect_name: str
    effect: float | None
    acknowledged: bool | None = None
    ack_time: float | None = None

    def to_json(self) -> Json:
        out: Json = {"id": self.id, "value": self.value, "time": self.time,
                     f"effect_{self.effect_name}": self.effect}  # fmt: skip
        if self.acknowledged is not None:
            out["acknowledged"] = self.acknowledged
        if self.ack_time is not None:
            out["ack_time"] = self.ack_time
        return out


@dataclass
class CycleRecord:
    """One control cycle, in the order it happened; `to_json` is the audit record's body.

    `safety_stop` and `baseline` are the loop's state after the cycle (what a restart takes
    over): the stop in force, and the operator's baseline a writing loop holds (None in
    shadow mode and after a refused grant: a new grant takes a new baseline).
    """

    mode: str
    decided_at: float
    verdicts: list[Verdict] = field(default_factory=list)
    outcome: Outcome = Outcome.BLOCKED
    reason: str | None = None
    safety_stop: SafetyStop | None = None
    baseline: float | None = None
    handshake: Handshake | None = None
    model: ModelRef | None = None
    inputs: dict[str, InputRecord] | None = None
    features: dict[str, FeatureRecord] | None = None
    target: float | None = None
    candidates: Candidates | None = None
    predicted: Mapping[str, float] | None = None
    guard: GuardRecord | None = None
    inference_ms: float | None = None
    decision_ms: float | None = None
    suggestion: float | None = None
    write: WriteRecord | None = None
    advice: Advice | None = None
    advice_expired: Advice | None = None
    effective_mode: str | None = None
    quality: QualityRecord | None = None
    baseline_confirmed_at: float | None = None
    product: ProductRecord | None = None

    def to_json(self) -> Json:
        out: Json = {
            "mode": self.mode,
            "decided_at": self.decided_at,
            "verdicts": [{"gate": v.gate, "ok": v.ok, "reason": v.reason} for v in self.verdicts],
            "outcome": self.outcome.value,
            "safety_stop": None if self.safety_stop is None else self.safety_stop.to_json(),
            "baseline": self.baseline,
        }
        parts: dict[str, Any] = {
            "reason": self.reason,
            "handshake": self.handshake,
            "model": self.model,
            "inputs": None if self.inputs is None else {k: v.to_json() for k, v in
                                                        self.inputs.items()},
            "features": None if self.features is None else {k: v.to_json() for k, v in
                                                            self.features.items()},
            "target": self.target,
            "candidates": self.candidates,
            "predicted": None if self.predicted is None else dict(self.predicted),
            "guard": self.guard,
            "inference_ms": self.inference_ms,
            "decision_ms": self.decision_ms,
            "suggestion": self.suggestion,
            "write": self.write,
            "advice": self.advice,
            "advice_expired": self.advice_expired,
            "effective_mode": self.effective_mode,
            "quality": self.quality,
            "baseline_confirmed_at": self.baseline_confirmed_at,
            "product": self.product,
        }  # fmt: skip
        for key, part in parts.items():
            if part is not None:
                out[key] = part.to_json() if hasattr(part, "to_json") else part
        return out
