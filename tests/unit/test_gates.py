"""Gates 1 and 2: the PLC handshake and per-input validation, by example and by property."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from agent.config.settings import LoopInput
from agent.control.gates import (
    FUTURE_TOLERANCE_S,
    InputRule,
    Verdict,
    check_derived,
    check_handshake,
    check_input,
    check_inputs,
)
from agent.domain.samples import (
    BAD_NO_COMMUNICATION,
    GOOD,
    GOOD_LOCAL_OVERRIDE,
    UNCERTAIN_LAST_USABLE_VALUE,
    Sample,
)

NOW = 1_800_000_000.0
SEP = InputRule(feature="SeparatorSpeed", tag="VRM.SepSpeed", max_age_s=3.0)


def s(value: object, *, age: float = 0.5, status: int = GOOD, tag: str = "t") -> Sample:
    return Sample(tag=tag, source_time=NOW - age, value=value, status=status)  # type: ignore[arg-type]


def handshake(
    remote: Sample | None = None,
    sent: int | None = 42,
    echo: Sample | None = None,
    *,
    modulus: int | None = None,
) -> Verdict:
    return check_handshake(
        remote_active=s(True) if remote is None else remote,
        heartbeat_sent=sent,
        heartbeat_echo=s(41) if echo is None else echo,
        now=NOW,
        max_age_s=5.0,
        echo_lag_max=3,
        counter_modulus=modulus,
    )


def test_handshake_passes_when_remote_is_granted_and_the_echo_follows() -> None:
    assert handshake() == Verdict("handshake", True, "ok")
    assert handshake(remote=s(1), echo=s(42.0)).ok


def test_handshake_fails_closed() -> None:
    cases = {
        "remote false": handshake(remote=s(False)),
        "remote bad": handshake(remote=s(True, status=BAD_NO_COMMUNICATION)),
        "remote stale": handshake(remote=s(True, age=6.0)),
        "remote future": handshake(remote=s(True, age=-60.0)),
        "remote string": handshake(remote=s("true")),
        "nothing sent": handshake(sent=None),
        "echo lags": handshake(echo=s(38)),
        "echo ahead": handshake(echo=s(43)),
        "echo stale": handshake(echo=s(41, age=6.0)),
        "echo uncertain": handshake(echo=s(41, status=UNCERTAIN_LAST_USABLE_VALUE)),
        "echo not a counter": handshake(echo=s(41.5)),
        "echo bool": handshake(echo=s(True)),
    }
    for case, verdict in cases.items():
        assert not verdict.ok, case
        assert verdict.reason, case
    missing = check_handshake(
        remote_active=None,
        heartbeat_sent=1,
        heartbeat_echo=None,
        now=NOW,
        max_age_s=5.0,
        echo_lag_max=3,
    )
    assert missing == Verdict("handshake", False, "RemoteActive missing")
    assert "lag 4" in cases["echo lags"].reason


def test_handshake_follows_a_wrapped_counter_only_with_the_modulus() -> None:
    assert not handshake(sent=1, echo=s(65535)).ok
    assert handshake(sent=1, echo=s(65535), modulus=65536).ok


def test_a_good_fresh_input_in_range_is_ok() -> None:
    verdict = check_input(SEP, s(950.0), [949.0, 950.0], (800.0, 1100.0), NOW)
    assert verdict == Verdict("input:SeparatorSpeed", True, "ok")


def test_each_input_rule_refuses_with_its_reason() -> None:
    def reason(sample: Sample | None, rule: InputRule = SEP, history: Sequence[float] = ()) -> str:
        verdict = check_input(rule, sample, history, (800.0, 1100.0), NOW)
        assert not verdict.ok
        return verdict.reason

    assert reason(None) == "SeparatorSpeed (VRM.SepSpeed) missing"
    assert "Bad" in reason(s(950.0, status=BAD_NO_COMMUNICATION))
    assert reason(s(950.0, status=GOOD_LOCAL_OVERRIDE)) == "SeparatorSpeed: local override"
    assert reason(s(950.0, status=GOOD_LOCAL_OVERRIDE | 0x400)) == "SeparatorSpeed: local override"
    assert reason(s(950.0, age=12.3)) == "SeparatorSpeed is 12.3 s old (max 3 s)"
    assert "timestamp in the future" in reason(s(950.0, age=-FUTURE_TOLERANCE_S - 1))
    assert "Uncertain" in reason(s(950.0, status=UNCERTAIN_LAST_USABLE_VALUE))
    assert "not finite" in reason(s(math.nan))
    assert "not finite" in reason(s(math.inf))
    assert "not a number" in reason(s("950"))
    assert "not a number" in reason(s(None))
    assert reason(s(1200.0)) == "SeparatorSpeed = 1200 is out of the training range [800, 1100]"
    frozen = InputRule("SeparatorSpeed", "VRM.SepSpeed", 3.0, frozen_after_samples=3)
    assert "frozen" in reason(s(950.0), frozen, [1.0, 950.0, 950.0, 950.0])


def test_edges_that_pass() -> None:
    in_future = s(950.0, age=-FUTURE_TOLERANCE_S / 2)
    assert check_input(SEP, in_future, [], None, NOW).ok
    assert check_input(SEP, s(950.0, age=3.0), [], None, NOW).ok
    frozen = InputRule("SeparatorSpeed", "VRM.SepSpeed", 3.0, frozen_after_samples=3)
    assert check_input(frozen, s(950.0), [950.0, 950.0], None, NOW).ok  # too short to tell
    assert check_input(frozen, s(950.0), [950.0, 950.0, 950.1, 950.0], None, NOW).ok
    assert check_input(SEP, s(True), [], (0.0, 1.0), NOW).ok  # a flag reads as 1


def test_uncertain_only_within_its_allowance() -> None:
    rule = InputRule("LabBlaine", "LAB.Blaine", 10_800.0, uncertain_max_age_s=60.0)
    young = s(3900.0, age=30.0, status=UNCERTAIN_LAST_USABLE_VALUE)
    old = s(3900.0, age=90.0, status=UNCERTAIN_LAST_USABLE_VALUE)
    assert check_input(rule, young, [], None, NOW).ok
    assert "Uncertain" in check_input(rule, young, [], None, NOW).reason
    assert not check_input(rule, old, [], None, NOW).ok
    assert check_input(rule, s(3900.0, age=90.0), [], None, NOW).ok  # Good may be older
    never = s(950.0, age=-0.5, status=UNCERTAIN_LAST_USABLE_VALUE)
    assert not check_input(SEP, never, [], None, NOW).ok  # allowance 0: never Uncertain


def test_check_inputs_reports_all_and_blocks_only_on_critical() -> None:
    power = InputRule("MillPower", "VRM.Power", 3.0, critical=False)
    rules = [SEP, power]
    samples = {"VRM.SepSpeed": s(950.0, tag="VRM.SepSpeed")}
    verdicts, ok = check_inputs(rules, samples, {}, {"SeparatorSpeed": (800.0, 1100.0)}, NOW)
    assert [v.gate for v in verdicts] == ["input:SeparatorSpeed", "input:MillPower"]
    assert [v.ok for v in verdicts] == [True, False]
    assert ok
    verdicts, ok = check_inputs(rules, samples, {}, {"SeparatorSpeed": (800.0, 900.0)}, NOW)
    assert not verdicts[0].ok
    assert not ok
    assert check_inputs([], samples, {}, {}, NOW) == (
        [Verdict("inputs", False, "the loop declares no inputs")],
        False,
    )


def test_histories_are_keyed_by_tag_and_ranges_by_feature() -> None:
    rule = InputRule("SeparatorSpeed", "VRM.SepSpeed", 3.0, frozen_after_samples=2)
    samples = {"VRM.SepSpeed": s(950.0)}
    verdicts, ok = check_inputs(
        [rule], samples, {"VRM.SepSpeed": [950.0, 950.0]}, {"VRM.SepSpeed": (0.0, 1.0)}, NOW
    )
    assert not ok
    assert "frozen" in verdicts[0].reason


def test_the_training_range_judges_the_value_the_model_will_see() -> None:
    # A spiky sample whose window mean is inside the range passes, and the reverse refuses.
    bounds = (800.0, 1100.0)
    assert check_input(SEP, s(1200.0), [], bounds, NOW, value=1000.0).ok
    refused = check_input(SEP, s(950.0), [], bounds, NOW, value=1150.0)
    assert refused.reason == "SeparatorSpeed = 1150 is out of the training range [800, 1100]"
    assert not check_input(SEP, s(950.0), [], bounds, NOW, value=math.nan).ok
    tag = "VRM.SepSpeed"
    samples, ranges = {tag: s(950.0, tag=tag)}, {"SeparatorSpeed": bounds}
    seen = "SeparatorSpeed"  # what the model will see is keyed by feature, like the ranges
    assert check_inputs([SEP], samples, {}, ranges, NOW, values={seen: 1000.0})[1]
    verdicts, ok = check_inputs([SEP], samples, {}, ranges, NOW, values={seen: 1150.0})
    assert not ok and verdicts[0].reason == refused.reason


def test_two_features_on_one_tag_are_judged_on_their_own_window_means() -> None:
    # One tag read over two windows (say a lab C3S, smoothed and the latest): each feature's
    # own mean is judged, not whichever was computed last for the tag.
    tag = "LabC3S"
    smoothed = InputRule("c3s_smoothed", tag, 1e6)
    latest = InputRule("c3s_latest", tag, 1e6)
    ranges = {"c3s_smoothed": (55.0, 65.0), "c3s_latest": (55.0, 65.0)}
    samples = {tag: s(64.0, tag=tag)}
    values = {"c3s_smoothed": 60.0, "c3s_latest": 70.0}
    verdicts, ok = check_inputs([smoothed, latest], samples, {}, ranges, NOW, values=values)
    assert [v.ok for v in verdicts] == [True, False] and not ok
    assert verdicts[1].reason == "c3s_latest = 70 is out of the training range [55, 65]"


def test_derived_features_must_be_inside_their_training_range() -> None:
    ranges = {"g": (0.8, 1.2)}
    assert check_derived({"g": 1.0}, ranges).ok
    assert check_derived({"g": 1.3}, ranges) == Verdict(
        "inputs", False, "g = 1.3 is out of the training range [0.8, 1.2]"
    )
    assert not check_derived({"g": math.nan}, ranges).ok
    assert check_derived({"h": 5.0}, ranges).ok  # no range known: nothing to judge


def test_the_config_model_is_a_valid_input_spec() -> None:
    spec = LoopInput(feature="SeparatorSpeed", tag="VRM.SepSpeed", max_age_s=3.0)
    assert check_input(spec, s(950.0), [], None, NOW).ok
    assert not check_inputs([spec], {}, {}, {}, NOW)[1]


# --- properties -----------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True)
values = st.one_of(floats, st.integers(), st.booleans(), st.none(), st.text(max_size=3))
statuses = st.one_of(
    st.sampled_from([GOOD, GOOD_LOCAL_OVERRIDE, UNCERTAIN_LAST_USABLE_VALUE, BAD_NO_COMMUNICATION]),
    st.integers(0, 0xFFFFFFFF),
)


@given(
    value=values,
    status=statuses,
    source_time=floats,
    now=floats,
    max_age=floats,
    uncertain_age=floats,
    frozen_n=st.integers(0, 5),
    history=st.lists(floats, max_size=6),
    bounds=st.none() | st.tuples(floats, floats),
)
def test_an_ok_input_is_always_finite_fresh_and_in_range(
    value: object,
    status: int,
    source_time: float,
    now: float,
    max_age: float,
    uncertain_age: float,
    frozen_n: int,
    history: list[float],
    bounds: tuple[float, float] | None,
) -> None:
    rule = InputRule("F", "T", max_age, True, uncertain_age, frozen_n)
    sample = Sample("T", source_time, value, status)  # type: ignore[arg-type]
    verdict = check_input(rule, sample, history, bounds, now)
    assert verdict.reason
    assert verdict.gate == "input:F"
    if not verdict.ok:
        return
    assert isinstance(value, int | float)
    assert math.isfinite(value)
    assert -FUTURE_TOLERANCE_S <= now - source_time <= max_age
    assert status >> 30 != 2
    if status >> 30 == 1:
        assert uncertain_age > 0
        assert now - source_time <= uncertain_age
    if bounds is not None:
        assert bounds[0] <= value <= bounds[1]


@given(
    sent=st.none() | st.integers(-(2**40), 2**40),
    echo=values,
    remote=values,
    t=floats,
    lag_max=st.integers(0, 10),
)
def test_handshake_ok_implies_remote_true_and_echo_close(
    sent: int | None, echo: object, remote: object, t: float, lag_max: int
) -> None:
    verdict = check_handshake(
        remote_active=Sample("R", t, remote),  # type: ignore[arg-type]
        heartbeat_sent=sent,
        heartbeat_echo=Sample("E", t, echo),  # type: ignore[arg-type]
        now=NOW,
        max_age_s=5.0,
        echo_lag_max=lag_max,
    )
    assert verdict.reason
    if verdict.ok:
        assert remote in (True, 1)
        assert sent is not None
        assert isinstance(echo, int | float)
        assert 0 <= sent - echo <= lag_max
        assert -FUTURE_TOLERANCE_S <= NOW - t <= 5.0
