"""The guard: turn the model's target setpoint into one safe move, or into no write at all.

Owns: output conditioning (plant-model §3 D, design gate 5): how far, how often and how
close to its limits a loop may move its setpoint in this cycle. The target is where the
optimiser would like to be; the guard returns the next *move* toward it (receding horizon).
Must not: read a clock, do I/O, log, or remember anything: the past writes, the operator's
baseline and `now` are handed in, and the shell records the move it actually makes. It
never writes "safe values" and never moves away from the (clamped) target.

Rules, applied in this order; each adds one verdict; a refusal stops the guard there, so
the last verdict of a refusal is the reason (the verdicts of a write are all eight):

    finite        current, target, now, limits, history and baseline are finite numbers,
                  and the limits are well-formed (max_step > 0, deadband >= 0, ...)
    envelope      clamp the target into [envelope_min, envelope_max]
    hard_limits   the envelope must lie inside [hard_min, hard_max] (else refuse)
    max_step      move toward the target by at most max_step; the result must land
                  inside the envelope (a current value further out refuses)
    max_rate      sum |to - from| of the writes made in the last hour (time > now - 3600,
                  later ones included) + |this move| <= max_rate_per_h: shrink, or refuse
                  when nothing is left or the shrunk move stops short of the envelope
    min_interval  now - last write >= min_interval_s (else refuse)
    deadband      a move of zero, or smaller than the deadband, is no write
    deviation     |value - baseline| <= max_deviation_from_baseline: shrink the move
                  toward the band's edge, or refuse if that is not a shrink (or falls
                  below the deadband); no baseline with a limit set refuses

Invariants (property-tested over arbitrary floats, NaN, inf and huge values): a returned
value is finite, lies in [envelope_min, envelope_max] and in [hard_min, hard_max], between
`current` and the clamped target, with 0 < |value - current| <= max_step, >= deadband,
within the hourly rate budget and the baseline deviation, and at least min_interval_s after
the last write. All bounds hold exactly in floating point: a move rounded past a limit is
nudged back by one ulp at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from agent.control.gates import Verdict

__all__ = ["RATE_WINDOW_S", "GuardLimits", "GuardResult", "MoveHistory", "guard"]

RATE_WINDOW_S = 3600.0
"""The window of `max_rate_per_h`."""


@dataclass(frozen=True)
class GuardLimits:
    """A loop's output limits (from `[[loops]]`) and its target tag's write_min/write_max."""

    envelope_min: float
    envelope_max: float
    max_step: float
    max_rate_per_h: float | None
    min_interval_s: float
    deadband: float
    max_deviation_from_baseline: float | None
    hard_min: float
    hard_max: float


@dataclass(frozen=True)
class MoveHistory:
    """The loop's past writes as (time, from, to), its last write time, and the baseline."""

    moves: tuple[tuple[float, float, float], ...] = ()
    last_move_time: float | None = None
    baseline: float | None = None


@dataclass(frozen=True)
class GuardResult:
    """The move to write (`value`, None for no write) and the verdicts that led there."""

    value: float | None
    verdicts: tuple[Verdict, ...]
    clamped: bool
    reason: str


class _RefusedError(Exception):
    """Internal: a rule refused; carries its verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def _refuse(gate: str, reason: str) -> _RefusedError:
    return _RefusedError(Verdict(gate, False, reason))


def _toward(current: float, value: float, limit: float, fits: Callable[[float], bool]) -> float:
    """`value` pulled toward `current` until the move is at most `limit` and `fits` holds.

    The result lies between `current` and `value`; `current` itself if nothing else fits.
    """
    if fits(value):
        return value
    candidate = current + math.copysign(limit, value - current)
    if not (min(current, value) <= candidate <= max(current, value)):
        candidate = current
    for _ in range(8):
        if fits(candidate):
            return candidate
        candidate = math.nextafter(candidate, current)
    return current


def _check_finite(
    current: float, target: float, lim: GuardLimits, h: MoveHistory, now: float
) -> None:
    gate = "finite"
    named = {
        "current": current,
        "target": target,
        "now": now,
        "envelope_min": lim.envelope_min,
        "envelope_max": lim.envelope_max,
        "max_step": lim.max_step,
        "max_rate_per_h": lim.max_rate_per_h,
        "min_interval_s": lim.min_interval_s,
        "deadband": lim.deadband,
        "max_deviation_from_baseline": lim.max_deviation_from_baseline,
        "hard_min": lim.hard_min,
        "hard_max": lim.hard_max,
        "baseline": h.baseline,
        "last_move_time": h.last_move_time,
    }
    for name, value in named.items():
        if value is not None and not math.isfinite(value):
            raise _refuse(gate, f"{name} is {value!r}, not a finite number")
    if not all(math.isfinite(x) for move in h.moves for x in move):
        raise _refuse(gate, "the move history holds a non-finite entry")
    if not (lim.max_step > 0 and lim.deadband >= 0 and lim.min_interval_s >= 0):
        raise _refuse(gate, "limits malformed: need max_step > 0, deadband >= 0, interval >= 0")
    for name, positive in (
        ("max_rate_per_h", lim.max_rate_per_h),
        ("max_deviation_from_baseline", lim.max_deviation_from_baseline),
    ):
        if positive is not None and not positive > 0:
            raise _refuse(gate, f"limits malformed: {name} must be above 0, is {positive:g}")


def _rules(
    *,
    current: float,
    target: float,
    lim: GuardLimits,
    h: MoveHistory,
    now: float,
    verdicts: list[Verdict],
) -> float:
    """Apply the rules in order, appending to `verdicts`; raise `_RefusedError` at a refusal."""

    def passed(gate: str, reason: str) -> None:
        verdicts.append(Verdict(gate, True, reason))

    _check_finite(current, target, lim, h, now)
    passed("finite", "ok")

    lo, hi = lim.envelope_min, lim.envelope_max
    if not lo < hi:
        raise _refuse("envelope", f"envelope [{lo:g}, {hi:g}] is empty")
    goal = min(max(target, lo), hi)
    passed("envelope", "ok" if goal == target else f"target {target:g} clamped to {goal:g}")

    if not lim.hard_min <= lo < hi <= lim.hard_max:
        raise _refuse(
            "hard_limits",
            f"envelope [{lo:g}, {hi:g}] not inside the hard limits "
            f"[{lim.hard_min:g}, {lim.hard_max:g}]",
        )
    passed("hard_limits", "ok")

    step = lim.max_step
    value = _toward(current, goal, step, lambda v: abs(v - current) <= step)
    if not lo <= value <= hi:
        raise _refuse(
            "max_step", f"current {current:g} is more than one step ({step:g}) off the envelope"
        )
    passed("max_step", "ok" if value == goal else f"move limited to {step:g}")

    value = _rate(current=current, value=value, lim=lim, h=h, now=now, passed=passed)

    times = [t for t, _, _ in h.moves]
    if h.last_move_time is not None:
        times.append(h.last_move_time)
    last = max(times, default=-math.inf)
    since = now - last
    if not since >= lim.min_interval_s:
        raise _refuse(
            "min_interval", f"last write {since:.0f} s ago (min {lim.min_interval_s:g} s)"
        )
    passed("min_interval", "ok")

    _deadband(current, value, lim.deadband, "deadband")
    passed("deadband", "ok")

    value = _deviation(current, value, lim, h.baseline, passed)
    return value


def _rate(
    *,
    current: float,
    value: float,
    lim: GuardLimits,
    h: MoveHistory,
    now: float,
    passed: Callable[[str, str], None],
) -> float:
    rate = lim.max_rate_per_h
    if rate is None:
        passed("max_rate", "no rate limit")
        return value
    used = sum(abs(to - frm) for t, frm, to in h.moves if t > now - RATE_WINDOW_S)
    budget = rate - used
    if value == current:
        passed("max_rate", "ok")
        return value
    if not budget > 0:
        raise _refuse("max_rate", f"moved {used:g} in the last hour (max {rate:g})")
    limited = _toward(current, value, budget, lambda v: used + abs(v - current) <= rate)
    if limited == current:
        raise _refuse("max_rate", f"moved {used:g} in the last hour (max {rate:g})")
    if not lim.envelope_min <= limited <= lim.envelope_max:
        raise _refuse("max_rate", f"the rate budget {budget:g} falls short of the envelope")
    passed("max_rate", "ok" if limited == value else f"move shrunk to the rate budget {budget:g}")
    return limited


def _deadband(current: float, value: float, deadband: float, gate: str) -> None:
    move = abs(value - current)
    if move == 0:
        raise _refuse(gate, f"already at {current:g}: nothing to move")
    if move < deadband:
        raise _refuse(gate, f"move {move:g} is below the deadband {deadband:g}")


def _deviation(
    current: float,
    value: float,
    lim: GuardLimits,
    baseline: float | None,
    passed: Callable[[str, str], None],
) -> float:
    gate = "deviation"
    limit = lim.max_deviation_from_baseline
    if limit is None:
        passed(gate, "no deviation limit")
        return value
    if baseline is None:
        raise _refuse(gate, "no baseline recorded for the deviation limit")

    def fits(v: float) -> bool:
        return abs(v - baseline) <= limit

    if fits(value):
        passed(gate, "ok")
        return value
    edge = baseline + math.copysign(limit, value - baseline)
    for _ in range(8):
        if fits(edge):
            break
        edge = math.nextafter(edge, baseline)
    between = min(current, value) <= edge <= max(current, value)
    inside = lim.envelope_min <= edge <= lim.envelope_max
    if not (fits(edge) and between and inside and edge != current):
        raise _refuse(
            gate,
            f"current {current:g} leaves no room within {limit:g} of the baseline {baseline:g}",
        )
    _deadband(current, edge, lim.deadband, gate)
    passed(gate, f"move shrunk to stay within {limit:g} of the baseline {baseline:g}")
    return edge


def guard(
    *, current: float, target: float, limits: GuardLimits, history: MoveHistory, now: float
) -> GuardResult:
    """The next move from `current` toward `target` under `limits`, or no write (value None)."""
    verdicts: list[Verdict] = []
    try:
        value = _rules(
            current=current, target=target, lim=limits, h=history, now=now, verdicts=verdicts
        )
    except _RefusedError as refused:
        verdicts.append(refused.verdict)
        return GuardResult(None, tuple(verdicts), False, refused.verdict.reason)
    clamped = value != target
    reason = f"move {current:g} -> {value:g}" + (f" (target {target:g})" if clamped else "")
    return GuardResult(value, tuple(verdicts), clamped, reason)
