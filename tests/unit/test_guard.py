"""The guard: the worked examples of plant-model §2.3 and its invariants over any floats."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.control.guard import RATE_WINDOW_S, GuardLimits, GuardResult, MoveHistory, guard

RULES = (
    "finite",
    "envelope",
    "hard_limits",
    "max_step",
    "max_rate",
    "min_interval",
    "deadband",
    "deviation",
)

# The VRM separator: <= 20 rpm per move, >= 10 min apart (plant-model §2.3 step 5).
SEPARATOR = GuardLimits(
    envelope_min=850.0,
    envelope_max=1050.0,
    max_step=20.0,
    max_rate_per_h=None,
    min_interval_s=600.0,
    deadband=1.0,
    max_deviation_from_baseline=None,
    hard_min=800.0,
    hard_max=1100.0,
)
T0 = 1_800_000_000.0
NO_MOVES = MoveHistory()


def with_(**changes: object) -> GuardLimits:
    fields = {**SEPARATOR.__dict__, **changes}
    return GuardLimits(**fields)


def run(
    current: float,
    target: float,
    limits: GuardLimits = SEPARATOR,
    history: MoveHistory = NO_MOVES,
    now: float = T0,
) -> GuardResult:
    return guard(current=current, target=target, limits=limits, history=history, now=now)


def test_weak_clinker_first_move_is_plus_20_rpm_toward_1005() -> None:
    result = run(950.0, 1005.0)
    assert result.value == 970.0
    assert result.clamped
    assert [v.gate for v in result.verdicts] == list(RULES)
    assert all(v.ok for v in result.verdicts)
    assert result.verdicts[3].reason == "move limited to 20"


def test_receding_horizon_reaches_the_target_in_20_rpm_moves_10_minutes_apart() -> None:
    current, history, now, written = 950.0, MoveHistory(), T0, []
    for _ in range(5):
        result = run(current, 1005.0, history=history, now=now)
        if result.value is None:
            break
        written.append(result.value)
        history = MoveHistory(
            moves=(*history.moves, (now, current, result.value)), last_move_time=now
        )
        current, now = result.value, now + 600.0
    assert written == [970.0, 990.0, 1005.0]
    assert result.value is None
    assert result.verdicts[-1].gate == "deadband"


def test_a_move_sooner_than_10_minutes_after_the_last_is_refused() -> None:
    history = MoveHistory(moves=((T0 - 599.0, 950.0, 970.0),), last_move_time=T0 - 599.0)
    result = run(970.0, 1005.0, history=history)
    assert result.value is None
    assert not result.clamped
    assert result.verdicts[-1] == result.verdicts[5]
    assert result.verdicts[-1].gate == "min_interval"
    assert not result.verdicts[-1].ok
    assert run(970.0, 1005.0, history=history, now=T0 + 1.0).value == 990.0


def test_last_move_time_zero_still_counts() -> None:
    history = MoveHistory(last_move_time=0.0)
    assert run(950.0, 1005.0, history=history, now=100.0).value is None


def test_target_outside_the_envelope_is_clamped_then_stepped() -> None:
    result = run(1040.0, 2000.0)
    assert result.value == 1050.0
    assert result.verdicts[1].reason == "target 2000 clamped to 1050"


def test_non_finite_target_or_current_is_no_write() -> None:
    for current, target in ((950.0, math.nan), (math.inf, 1000.0), (950.0, -math.inf)):
        result = run(current, target)
        assert result.value is None
        assert [v.gate for v in result.verdicts] == ["finite"]


def test_envelope_outside_the_hard_limits_is_refused() -> None:
    result = run(950.0, 1005.0, limits=with_(hard_max=1000.0))
    assert result.value is None
    assert result.verdicts[-1].gate == "hard_limits"


def test_current_more_than_one_step_outside_the_envelope_is_refused() -> None:
    result = run(820.0, 900.0)
    assert result.value is None
    assert result.verdicts[-1].gate == "max_step"
    assert run(840.0, 900.0).value == 860.0


def test_rate_counts_the_last_hour_of_moves_and_shrinks_the_move() -> None:
    limits = with_(max_rate_per_h=30.0, min_interval_s=0.0)
    history = MoveHistory(
        moves=(
            (T0 - RATE_WINDOW_S - 1.0, 900.0, 920.0),  # too old: not counted
            (T0 - 1800.0, 920.0, 930.0),
            (T0 - 900.0, 930.0, 940.0),
        )
    )
    result = run(940.0, 1005.0, limits=limits, history=history)
    assert result.value == 950.0
    assert "rate budget" in result.verdicts[4].reason
    spent = MoveHistory(moves=((T0 - 60.0, 940.0, 970.0),))
    refused = run(970.0, 1005.0, limits=limits, history=spent)
    assert refused.value is None
    assert refused.verdicts[-1].gate == "max_rate"


def test_a_move_rounded_past_max_step_is_nudged_back() -> None:
    lim = with_(
        envelope_min=0.0, envelope_max=1.0, hard_min=0.0, hard_max=1.0, max_step=0.2, deadband=0.0
    )
    result = run(0.1, 0.5, limits=lim)
    assert 0.1 + 0.2 - 0.1 > 0.2  # the naive sum overshoots by one ulp
    assert result.value is not None
    assert abs(result.value - 0.1) <= 0.2


def test_a_rate_shrink_short_of_the_envelope_is_refused() -> None:
    lim = with_(max_rate_per_h=5.0, min_interval_s=0.0)
    result = run(840.0, 900.0, limits=lim)
    assert result.value is None
    assert result.verdicts[-1].gate == "max_rate"


def test_deadband_refuses_small_moves() -> None:
    result = run(950.0, 950.5)
    assert result.value is None
    assert result.verdicts[-1].gate == "deadband"
    assert run(950.0, 951.0).value == 951.0


def test_deviation_from_the_baseline_shrinks_or_refuses() -> None:
    limits = with_(max_deviation_from_baseline=30.0)
    shrunk = run(970.0, 1005.0, limits=limits, history=MoveHistory(baseline=950.0))
    assert shrunk.value == 980.0
    assert shrunk.verdicts[-1].ok
    at_edge = run(980.0, 1005.0, limits=limits, history=MoveHistory(baseline=950.0))
    assert at_edge.value is None
    assert at_edge.verdicts[-1].gate == "deviation"
    assert run(970.0, 1005.0, limits=limits).value is None  # no baseline recorded
    back = run(1010.0, 960.0, limits=limits, history=MoveHistory(baseline=950.0))
    assert back.value is None  # the step lands outside the band: refused, not jumped


# --- properties over arbitrary floats -------------------------------------------------

wild = st.floats(allow_nan=True, allow_infinity=True)
plain = st.floats(min_value=-1e6, max_value=1e6)
anyf = st.one_of(wild, plain)
pos = st.one_of(wild, st.floats(min_value=1e-9, max_value=1e4))


@st.composite
def limits_(draw: st.DrawFn) -> GuardLimits:
    lo, hi = sorted((draw(anyf), draw(anyf)))
    pad = draw(st.floats(min_value=0.0, max_value=1e3))
    return GuardLimits(
        envelope_min=lo,
        envelope_max=hi,
        max_step=draw(pos),
        max_rate_per_h=draw(st.none() | pos),
        min_interval_s=draw(st.one_of(wild, st.floats(0.0, 1e4))),
        deadband=draw(st.one_of(wild, st.floats(0.0, 10.0))),
        max_deviation_from_baseline=draw(st.none() | pos),
        hard_min=draw(st.one_of(st.just(lo - pad), anyf)),
        hard_max=draw(st.one_of(st.just(hi + pad), anyf)),
    )


@st.composite
def histories(draw: st.DrawFn) -> MoveHistory:
    moves = draw(st.lists(st.tuples(anyf, anyf, anyf), max_size=4))
    return MoveHistory(
        moves=tuple(moves),
        last_move_time=draw(st.none() | anyf),
        baseline=draw(st.none() | anyf),
    )


@st.composite
def realistic(draw: st.DrawFn) -> tuple[float, float, GuardLimits, MoveHistory, float]:
    """Mostly valid inputs near the envelope, so that writes happen and get checked."""
    scale = draw(st.sampled_from([1.0, 1e3, 1e6, 1e150, 1e300]))
    lo = draw(st.floats(-scale, scale))
    hi = lo + draw(st.floats(1e-3, scale))
    if not math.isfinite(hi) or hi <= lo:
        hi = math.nextafter(lo, math.inf)
    width = hi - lo
    near = st.floats(lo - width / 4, hi + width / 4)
    now = draw(st.floats(0.0, 2e9))
    ago = st.floats(0.0, 2 * RATE_WINDOW_S).map(lambda a: now - a)
    moves = draw(st.lists(st.tuples(ago, near, near), max_size=3))
    lim = GuardLimits(
        envelope_min=lo,
        envelope_max=hi,
        max_step=draw(st.floats(1e-12, 1.0).map(lambda f: max(f * width, 1e-300))),
        max_rate_per_h=draw(st.none() | st.floats(1e-12, 3.0).map(lambda f: f * width or 1.0)),
        min_interval_s=draw(st.floats(0.0, 600.0)),
        deadband=draw(st.just(0.0) | st.floats(0.0, 0.1).map(lambda f: f * width)),
        max_deviation_from_baseline=draw(
            st.none() | st.floats(1e-6, 1.0).map(lambda f: f * width or 1.0)
        ),
        hard_min=lo - draw(st.floats(0.0, scale)),
        hard_max=hi + draw(st.floats(0.0, scale)),
    )
    history = MoveHistory(
        moves=tuple(moves), last_move_time=draw(st.none() | ago), baseline=draw(st.none() | near)
    )
    return draw(near), draw(st.one_of(near, anyf)), lim, history, now


@given(anyf, anyf, limits_(), histories(), anyf)
def test_a_written_value_keeps_every_limit_for_wild_inputs(
    current: float, target: float, lim: GuardLimits, history: MoveHistory, now: float
) -> None:
    check_limits(current, target, lim, history, now)


@settings(max_examples=500)
@given(realistic())
@example(
    (
        0.75,
        1.0,
        with_(
            envelope_min=1.0,
            envelope_max=2.0,
            hard_min=1.0,
            hard_max=2.0,
            max_step=1.0,
            max_rate_per_h=0.125,
            min_interval_s=0.0,
            deadband=0.0,
        ),
        MoveHistory(),
        0.0,
    )
)
@example(
    (
        0.1,
        0.5,
        with_(
            envelope_min=0.0,
            envelope_max=1.0,
            hard_min=0.0,
            hard_max=1.0,
            max_step=0.2,
            deadband=0.0,
        ),
        MoveHistory(),
        0.0,
    )
)
def test_a_written_value_keeps_every_limit_for_realistic_inputs(
    case: tuple[float, float, GuardLimits, MoveHistory, float],
) -> None:
    check_limits(*case)


def check_limits(
    current: float, target: float, lim: GuardLimits, history: MoveHistory, now: float
) -> GuardResult:
    result = run(current, target, limits=lim, history=history, now=now)
    gates = [v.gate for v in result.verdicts]
    assert gates == list(RULES[: len(gates)])
    assert all(v.reason for v in result.verdicts)
    if result.value is None:
        assert not result.verdicts[-1].ok
        assert result.reason == result.verdicts[-1].reason
        return result
    value = result.value
    assert gates == list(RULES)
    assert all(v.ok for v in result.verdicts)
    assert math.isfinite(value)
    assert lim.envelope_min <= value <= lim.envelope_max
    assert lim.hard_min <= value <= lim.hard_max
    move = abs(value - current)
    assert 0 < move <= lim.max_step
    assert move >= lim.deadband
    goal = min(max(target, lim.envelope_min), lim.envelope_max)
    assert min(current, goal) <= value <= max(current, goal)
    if lim.max_rate_per_h is not None:
        used = sum(abs(b - a) for t, a, b in history.moves if t > now - RATE_WINDOW_S)
        assert used + move <= lim.max_rate_per_h
    if lim.max_deviation_from_baseline is not None:
        assert history.baseline is not None
        assert abs(value - history.baseline) <= lim.max_deviation_from_baseline
    times = [t for t, _, _ in history.moves]
    if history.last_move_time is not None:
        times.append(history.last_move_time)
    assert all(now - t >= lim.min_interval_s for t in times)
    assert result.clamped == (value != target)
    return result


@given(plain, plain, st.floats(min_value=1e-6, max_value=1e3))
def test_sane_limits_always_move_toward_the_target(
    current: float, target: float, step: float
) -> None:
    lim = with_(
        envelope_min=-1e6,
        envelope_max=1e6,
        hard_min=-2e6,
        hard_max=2e6,
        max_step=step,
        deadband=0.0,
    )
    result = run(current, target, limits=lim)
    if abs(target - current) >= 1.0:  # beyond the deadband: a move must happen
        assert result.value is not None
        assert abs(result.value - current) <= step
        assert (result.value - current) * (target - current) > 0
