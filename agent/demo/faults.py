"""Fault catalogue of the simulated mill (plant-model.md 1.5): validation, bookkeeping, and the
per-tag transformations of published readings.

Owns: which fault kinds exist, their parameters and defaults, the set of active faults, and the
pure functions that turn a tag's published (value, status, time) into what a client reads
(freeze, flatline, bias, drift, bad, uncertain, local_override) or adjust a sample as it is
published (spike).
Must not: change the process or the PLC (the mill applies the side effects of the global kinds:
trip, remote_disable, watchdog_stall, grindability_step, ...; drift.py those of the drift kinds
of plant-model 4.3), draw random numbers, or raise
anything but ValueError for a bad request.
Invariants: at most one fault per (kind, tag); sensor kinds always name a known tag, global kinds
never do; every stored fault carries all its parameters (defaults filled in), so
active_faults() reports exactly what is in force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.demo.tags import BY_NAME, Kind, TagSpec

Value = float | int | bool | None
Params = dict[str, float | str]

SENSOR_KINDS: tuple[str, ...] = (
    "freeze", "flatline", "bad", "uncertain", "spike", "drift", "bias", "local_override",
)  # fmt: skip
GLOBAL_KINDS: tuple[str, ...] = (
    "plc_reject_writes", "remote_disable", "watchdog_stall", "server_down", "clock_skew",
    "grindability_step", "clinker_quality_step", "trip",
    *("clinker_reactivity", "table_wear", "so3_optimum", "scale_drift"),
)  # fmt: skip
DRIFT_KINDS: tuple[str, ...] = ("clinker_reactivity", "table_wear", "so3_optimum", "scale_drift")
"""Plant-model 4.3: hidden drifts of the plant away from what a model learned (drift.py)."""
NUMERIC_KINDS = ("spike", "drift", "bias")
"""Kinds that alter a sample's value: only for Double tags that are sampled (update_s set)."""

CODES: dict[str, tuple[str, ...]] = {
    "bad": ("BadSensorFailure", "BadNoCommunication"),
    "uncertain": ("UncertainSensorNotAccurate", "UncertainLastUsableValue"),
    "plc_reject_writes": ("BadUserAccessDenied", "BadOutOfRange"),
}
"""Allowed `code` parameter values (asyncua StatusCodes names); the first is the default."""

_FIXED_DEFAULTS: dict[str, Params] = {
    "spike": {"period_s": 0.0},
    "server_down": {"duration_s": 30.0},
    "clock_skew": {"offset_s": 300.0},
    "grindability_step": {"delta": 0.15},
    "clinker_quality_step": {"delta": -3.0},
    "clinker_reactivity": {"mpa": -2.5},
    "table_wear": {"mpa_per_day": -0.05},
    "so3_optimum": {"mpa": -1.0},
    "scale_drift": {"pct": 3.0},
}


def _defaults(kind: str, spec: TagSpec | None) -> Params:
    """Default parameters. Value faults scale with the tag's normal span."""
    out: Params = dict(_FIXED_DEFAULTS.get(kind, {}))
    if kind in CODES:
        out["code"] = CODES[kind][0]
    if spec is not None:
        span = spec.normal[1] - spec.normal[0]
        if kind == "spike":
            out["magnitude"] = 0.5 * span
        elif kind == "drift":
            out["rate"] = 0.1 * span  # per hour
        elif kind == "bias":
            out["offset"] = 0.1 * span
    return out


@dataclass
class Fault:
    """One active fault. captured: (value, source_time) at injection, for freeze/flatline."""

    kind: str
    tag: str | None
    params: Params
    t0: float
    captured: tuple[Value, float] = (None, 0.0)
    next_spike: float = field(default=-math.inf)

    def num(self, key: str) -> float:
        value = self.params[key]
        assert isinstance(value, float)
        return value


def check_kind(kind: str) -> None:
    """ValueError unless kind is a known fault kind."""
    if kind not in SENSOR_KINDS and kind not in GLOBAL_KINDS:
        known = ", ".join(SENSOR_KINDS + GLOBAL_KINDS)
        raise ValueError(f"unknown fault kind {kind!r}; known kinds: {known}")


def validate(kind: str, tag: str | None, params: Params) -> Params:
    """Check a request and return its full parameter set; ValueError with a clear message."""
    check_kind(kind)
    spec: TagSpec | None = None
    if kind in SENSOR_KINDS:
        if tag is None:
            raise ValueError(f"fault {kind!r} needs a tag")
        if tag not in BY_NAME:
            raise ValueError(f"fault {kind!r}: unknown tag {tag!r}")
        spec = BY_NAME[tag]
        if kind in NUMERIC_KINDS and (spec.kind is not Kind.DOUBLE or spec.update_s is None):
            raise ValueError(f"fault {kind!r} needs a sampled Double tag, not {tag!r}")
    elif tag is not None:
        raise ValueError(f"fault {kind!r} is plant-wide and takes no tag (got {tag!r})")
    full = _defaults(kind, spec)
    for key, value in params.items():
        if key not in full:
            allowed = ", ".join(sorted(full)) or "none"
            raise ValueError(f"fault {kind!r}: unknown parameter {key!r} (allowed: {allowed})")
        if key == "code":
            if value not in CODES[kind]:
                raise ValueError(
                    f"fault {kind!r}: code must be one of {CODES[kind]}, not {value!r}"
                )
            full[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"fault {kind!r}: parameter {key!r} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"fault {kind!r}: parameter {key!r} must be finite")
        if key in ("duration_s", "period_s") and value < 0:
            raise ValueError(f"fault {kind!r}: parameter {key!r} must be >= 0")
        if key == "pct" and not -50.0 < value < 100.0:
            raise ValueError(f"fault {kind!r}: parameter 'pct' must be in (-50, 100), not {value}")
        full[key] = float(value)
    return full


class FaultSet:
    """The active faults, keyed by (kind, tag)."""

    def __init__(self) -> None:
        self.faults: dict[tuple[str, str | None], Fault] = {}
        self.by_tag: dict[str, dict[str, Fault]] = {}
        self.spike_tags: set[str] = set()

    def add(self, fault: Fault) -> None:
        self.faults[(fault.kind, fault.tag)] = fault
        if fault.tag is not None:
            self.by_tag.setdefault(fault.tag, {})[fault.kind] = fault
            if fault.kind == "spike":
                self.spike_tags.add(fault.tag)

    def get(self, kind: str) -> Fault | None:
        """The active plant-wide fault of this kind."""
        return self.faults.get((kind, None))

    def remove(self, kind: str | None = None, tag: str | None = None) -> list[Fault]:
        """Remove every fault matching kind and tag (None matches any); return the removed."""
        gone = [
            f
            for f in self.faults.values()
            if (kind is None or f.kind == kind) and (tag is None or f.tag == tag)
        ]
        for f in gone:
            del self.faults[(f.kind, f.tag)]
            if f.tag is not None:
                del self.by_tag[f.tag][f.kind]
                if not self.by_tag[f.tag]:
                    del self.by_tag[f.tag]
                if f.kind == "spike":
                    self.spike_tags.discard(f.tag)
        return gone

    def spike(self, tag: str, value: float, t: float) -> float:
        """Adjust a sample of `tag` published at time t (only call for tags in spike_tags)."""
        f = self.by_tag[tag]["spike"]
        period = f.num("period_s")
        if period <= 0.0:
            self.remove("spike", tag)
            return value + f.num("magnitude")
        if t < f.next_spike:
            return value
        # The next sample at least period_s later; 1 ms of slack (not 1e-9: unix times near
        # 1.7e9 are only precise to ~2.4e-7, so a tiny margin made the period jitter a tick).
        f.next_spike = t + period - min(1e-3, period / 2)
        return value + f.num("magnitude")

    def transform(self, tag: str, value: Value, t: float) -> tuple[Value, str, float]:
        """What a client reads of `tag`, given its published value and source time."""
        faults = self.by_tag.get(tag)
        if not faults:
            return value, "Good", t
        if "freeze" in faults:
            value, t = faults["freeze"].captured
        elif "flatline" in faults:
            value = faults["flatline"].captured[0]
        if isinstance(value, float):
            if "bias" in faults:
                value += faults["bias"].num("offset")
            if "drift" in faults:
                f = faults["drift"]
                value += f.num("rate") * max(0.0, t - f.t0) / 3600.0
        if "bad" in faults:
            return None, str(faults["bad"].params["code"]), t
        if "uncertain" in faults:
            return value, str(faults["uncertain"].params["code"]), t
        if "local_override" in faults:
            return value, "GoodLocalOverride", t
        return value, "Good", t
