"""The control cycle's input gates: may this cycle use what the PLC and the sensors say?

Owns: the verdicts of gate 1 (the PLC grants remote and echoes the agent's heartbeat) and
gate 2 (every model input is present, Good or Uncertain within its allowance, fresh, not
frozen, finite, and the value the model will see is inside the model's training range; a
feature the agent derives is inside it too), as plain values for the audit.
Must not: read a clock, do I/O, log, or look anything up: every time is a float passed in
(unix seconds, the same clock as `Sample.source_time`), every history and range is handed
over by the shell. It never repairs or imputes a value; it only says yes or no, and why.

Rules (checked in this order; the first that fails is the verdict's reason):

    handshake  RemoteActive present, Good, not in the future, fresh, and true
               heartbeat sent; its echo present, Good, fresh, a whole number, and
               0 <= sent - echo <= echo_lag_max (modulo `counter_modulus` when given)
    input      present -> not Bad -> not Good_LocalOverride -> timestamps finite and not
               in the future beyond `future_tolerance_s` -> age <= max_age_s ->
               Uncertain only while age <= uncertain_max_age_s (0 = never) -> a number
               -> finite -> not frozen -> inside the training range (the value the model
               will see: the shell's window mean when it hands one over, else the sample's)
    derived    each derived feature (no tag of its own) inside the training range

Invariants (property-tested): the functions never raise on any float, status or value;
every verdict carries a non-empty reason; an ok input verdict implies a finite numeric value
whose age is within [-future_tolerance_s, max_age_s]; NaN anywhere (times, limits, ranges)
fails closed, because every comparison is written so that NaN makes it false.
`check_inputs` returns exactly one verdict per rule, in the rules' order, and its overall
answer is ok only if every critical input is ok (non-critical failures are reported only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.domain.samples import GOOD_LOCAL_OVERRIDE, Quality, Sample

__all__ = [
    "FUTURE_TOLERANCE_S",
    "InputRule",
    "InputSpec",
    "Verdict",
    "check_derived",
    "check_handshake",
    "check_input",
    "check_inputs",
]

FUTURE_TOLERANCE_S = 2.0
"""How far a source timestamp may lie ahead of the agent's clock (skew) before it is refused."""

_CODE_MASK = 0xFFFF0000  # an OPC UA status code without its info bits


@dataclass(frozen=True)
class Verdict:
    """The answer of one gate: its name, whether it passed, and why (always filled)."""

    gate: str
    ok: bool
    reason: str


class InputSpec(Protocol):
    """What gate 2 needs to know about one input; `settings.LoopInput` satisfies it."""

    @property
    def feature(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def max_age_s(self) -> float: ...
    @property
    def critical(self) -> bool: ...
    @property
    def uncertain_max_age_s(self) -> float: ...
    @property
    def frozen_after_samples(self) -> int: ...


@dataclass(frozen=True)
class InputRule:
    """One model input: the feature it feeds, the tag it is read from, and its allowances."""

    feature: str
    tag: str
    max_age_s: float
    critical: bool = True
    uncertain_max_age_s: float = 0.0
    frozen_after_samples: int = 0


def _age(name: str, sample: Sample, now: float, tolerance: float) -> tuple[float, str | None]:
    """The sample's age from its source timestamp, or why its timestamp is unusable."""
    age = now - sample.source_time
    if not math.isfinite(age):
        return age, f"{name} has no usable timestamp (source {sample.source_time!r}, now {now!r})"
    if not age >= -tolerance:
        return age, f"{name}: timestamp in the future by {-age:.1f} s (clock skew)"
    return age, None


def _fresh_good(name: str, sample: Sample | None, now: float, max_age_s: float) -> str | None:
    """Why a handshake sample is unusable (missing, not Good, future, stale), or None."""
    if sample is None:
        return f"{name} missing"
    if sample.quality is not Quality.GOOD:
        return f"{name} is {sample.quality.name} (0x{sample.status:08X})"
    age, problem = _age(name, sample, now, FUTURE_TOLERANCE_S)
    if problem is not None:
        return problem
    if not age <= max_age_s:
        return f"{name} is {age:.1f} s old (max {max_age_s:g} s)"
    return None


def _whole(value: object) -> int | None:
    """An integral counter value (int, or a float holding a whole number), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def check_handshake(
    *,
    remote_active: Sample | None,
    heartbeat_sent: int | None,
    heartbeat_echo: Sample | None,
    now: float,
    max_age_s: float,
    echo_lag_max: int,
    counter_modulus: int | None = None,
    remote_max_age_s: float | None = None,
) -> Verdict:
    """Gate 1: the PLC grants remote mode and echoes the agent's heartbeat closely enough.

    `heartbeat_sent` is the last counter the agent wrote; the echo may lag it by up to
    `echo_lag_max` counts. With `counter_modulus` (e.g. 65536 for a UINT16 counter) the lag
    is taken modulo it, so a wrapped counter still counts as following. `remote_max_age_s`
    (default: `max_age_s`) is the age allowed to RemoteActive, which a subscription only
    publishes on change (a lost connection marks it Bad, so its age proves nothing more).
    """
    gate = "handshake"
    remote_age = max_age_s if remote_max_age_s is None else remote_max_age_s
    problem = _fresh_good("RemoteActive", remote_active, now, remote_age)
    if problem is not None:
        return Verdict(gate, False, problem)
    assert remote_active is not None
    value = remote_active.value
    if not (value is True or (_whole(value) == 1)):
        return Verdict(gate, False, f"RemoteActive is {value!r}: the PLC does not grant remote")
    if heartbeat_sent is None:
        return Verdict(gate, False, "no heartbeat sent yet")
    problem = _fresh_good("HeartbeatEcho", heartbeat_echo, now, max_age_s)
    if problem is not None:
        return Verdict(gate, False, problem)
    assert heartbeat_echo is not None
    echo = _whole(heartbeat_echo.value)
    if echo is None:
        return Verdict(gate, False, f"HeartbeatEcho is {heartbeat_echo.value!r}, not a counter")
    lag = heartbeat_sent - echo
    if counter_modulus is not None and counter_modulus > 0:
        lag %= counter_modulus
    if not 0 <= lag <= echo_lag_max:
        return Verdict(
            gate,
            False,
            f"HeartbeatEcho {echo} does not follow the heartbeat {heartbeat_sent} "
            f"(lag {lag}, max {echo_lag_max})",
        )
    return Verdict(gate, True, "ok")


def _number(value: object) -> float | None:
    """A model-usable number (bool reads as 0/1); None for strings, None and the like."""
    if isinstance(value, bool | int | float):
        try:
            return float(value)
        except OverflowError:  # an int beyond the float range
            return None
    return None


def check_input(
    rule: InputSpec,
    sample: Sample | None,
    history: Sequence[float],
    training_range: tuple[float, float] | None,
    now: float,
    *,
    future_tolerance_s: float = FUTURE_TOLERANCE_S,
    value: float | None = None,
) -> Verdict:
    """Gate 2 for one input; see the module docstring for the order of the rules.

    `history` holds the input's recent values, oldest first, ending with the current one;
    the input is frozen when its last `frozen_after_samples` values are all identical
    (only checked when the rule asks for it and the history is long enough). `value` is
    what the model will see (e.g. the mean of the input's window), the value the training
    range judges; None: the sample's own value.
    """
    name = rule.feature
    gate = f"input:{name}"

    def no(reason: str) -> Verdict:
        return Verdict(gate, False, reason)

    if sample is None:
        return no(f"{name} ({rule.tag}) missing")
    quality = sample.quality
    if quality is Quality.BAD:
        return no(f"{name} is Bad (0x{sample.status:08X})")
    if sample.status & _CODE_MASK == GOOD_LOCAL_OVERRIDE:
        return no(f"{name}: local override")
    age, problem = _age(name, sample, now, future_tolerance_s)
    if problem is not None:
        return no(problem)
    if not age <= rule.max_age_s:
        return no(f"{name} is {age:.1f} s old (max {rule.max_age_s:g} s)")
    ok_reason = "ok"
    if quality is Quality.UNCERTAIN:
        allowance = rule.uncertain_max_age_s
        if not (allowance > 0 and age <= allowance):
            return no(
                f"{name} is Uncertain (0x{sample.status:08X}), {age:.1f} s old "
                f"(Uncertain allowed for {allowance:g} s)"
            )
        ok_reason = f"ok (Uncertain, {age:.1f} s old, allowed {allowance:g} s)"
    number = _number(sample.value)
    if number is None:
        return no(f"{name} is {sample.value!r}, not a number")
    if not math.isfinite(number):
        return no(f"{name} is {number!r}, not finite")
    n = rule.frozen_after_samples
    if n > 0 and len(history) >= n:
        last = list(history[-n:])
        if all(v == last[0] for v in last):
            return no(f"{name} frozen: the last {n} values are all {last[0]!r}")
    if training_range is not None:
        seen = number if value is None else value
        lo, hi = training_range
        if not lo <= seen <= hi:
            return no(f"{name} = {seen:.6g} is out of the training range [{lo:.6g}, {hi:.6g}]")
    return Verdict(gate, True, ok_reason)


def check_inputs(
    rules: Sequence[InputSpec],
    samples: Mapping[str, Sample],
    histories: Mapping[str, Sequence[float]],
    ranges: Mapping[str, tuple[float, float]],
    now: float,
    *,
    future_tolerance_s: float = FUTURE_TOLERANCE_S,
    values: Mapping[str, float] | None = None,
) -> tuple[list[Verdict], bool]:
    """Gate 2 for every input: all verdicts (for the audit) and whether the cycle may go on.

    `samples` and `histories` are keyed by tag (what the drivers and the buffer know),
    `ranges` and `values` (what the model will see, e.g. each feature's own window mean:
    two features may read one tag over different windows) by feature (what the model's
    metadata knows). The cycle may go on only if every critical input is ok; a loop with no
    inputs at all fails closed.
    """
    if not rules:
        return [Verdict("inputs", False, "the loop declares no inputs")], False
    verdicts = [
        check_input(
            rule,
            samples.get(rule.tag),
            histories.get(rule.tag, ()),
            ranges.get(rule.feature),
            now,
            future_tolerance_s=future_tolerance_s,
            value=(values or {}).get(rule.feature),
        )
        for rule in rules
    ]
    ok = all(v.ok for rule, v in zip(rules, verdicts, strict=True) if rule.critical)
    return verdicts, ok


def check_derived(
    values: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]
) -> Verdict:
    """Gate 2 for the features the agent derives (`values`, by feature): each inside its
    training range in `ranges` (a feature without one passes; NaN never does)."""
    for name, value in values.items():
        lo, hi = ranges.get(name, (-math.inf, math.inf))
        if not lo <= value <= hi:
            why = f"{name} = {value:.4g} is out of the training range [{lo:.4g}, {hi:.4g}]"
            return Verdict("inputs", False, why)
    return Verdict("inputs", True, "derived features inside the training range")
