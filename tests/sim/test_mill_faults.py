"""Fault injection of the simulated mill (plant-model.md 1.5): each fault changes what read() returns."""

from __future__ import annotations

import pytest

from agent.demo.mill import Mill, Reading


def value(reading: Reading) -> float:
    assert isinstance(reading.value, float)
    return reading.value


def test_freeze_stops_value_and_time_with_good_status() -> None:
    mill = Mill(seed=1)
    mill.step(10)
    before = mill.read("MillPower")
    mill.inject("freeze", "MillPower")
    mill.step(20)
    assert mill.read("MillPower") == before
    assert mill.read("MillPower").status == "Good"
    mill.clear("freeze", "MillPower")
    after = mill.read("MillPower")
    assert after.source_time > before.source_time and after.value != before.value


def test_flatline_keeps_value_but_time_advances() -> None:
    mill = Mill(seed=1)
    mill.step(10)
    before = mill.read("Vibration")
    mill.inject("flatline", "Vibration")
    mill.step(20)
    now = mill.read("Vibration")
    assert now.value == before.value and now.status == "Good"
    assert now.source_time == mill.time > before.source_time


@pytest.mark.parametrize("code", [None, "BadNoCommunication"])
def test_bad_nulls_the_value(code: str | None) -> None:
    mill = Mill(seed=1)
    if code is None:
        mill.inject("bad", "FeedRate")
    else:
        mill.inject("bad", "FeedRate", code=code)
    mill.step(3)
    reading = mill.read("FeedRate")
    assert reading.value is None
    assert reading.status == (code or "BadSensorFailure")
    assert reading.source_time == mill.time
    assert mill.read("SeparatorSpeed").status == "Good"  # only the faulted tag
    mill.clear(tag="FeedRate")
    assert mill.read("FeedRate").value is not None


def test_uncertain_keeps_the_live_value() -> None:
    mill = Mill(seed=1)
    mill.inject("uncertain", "MillDifferentialPressure", code="UncertainLastUsableValue")
    mill.step(2)
    first = mill.read("MillDifferentialPressure")
    mill.step(2)
    second = mill.read("MillDifferentialPressure")
    assert first.status == second.status == "UncertainLastUsableValue"
    assert first.value != second.value
    mill.inject("uncertain", "LabBlaine")
    assert mill.read("LabBlaine").status == "UncertainSensorNotAccurate"
    assert mill.read("LabBlaine").value == 3800.0


def test_local_override_status() -> None:
    mill = Mill(seed=1)
    mill.inject("local_override", "SeparatorSpeed")
    mill.step()
    reading = mill.read("SeparatorSpeed")
    assert reading.status == "GoodLocalOverride"
    assert value(reading) == pytest.approx(950.0, abs=10.0)


def test_bias_and_drift_offset_the_value() -> None:
    mill = Mill(noise=False, dt=1.0)
    mill.inject("bias", "MillPower", offset=-100.0)
    mill.inject("drift", "FeedRate", rate=6.0)  # t/h per hour
    mill.step(600)
    assert value(mill.read("MillPower")) == pytest.approx(3140.0)
    assert value(mill.read("FeedRate")) == pytest.approx(181.0)
    mill.inject("drift", "MillDifferentialPressure")  # default rate: 10 % of the span per hour
    mill.step(360)
    assert value(mill.read("MillDifferentialPressure")) == pytest.approx(41.6 + 0.8, abs=1e-6)


def test_one_off_spike_hits_one_sample() -> None:
    mill = Mill(noise=False, dt=0.1)
    mill.inject("spike", "MillPower", magnitude=500.0)
    assert ("spike", "MillPower", {"magnitude": 500.0, "period_s": 0.0}) in mill.active_faults()
    values = []
    for _ in range(10):
        mill.step()
        values.append(value(mill.read("MillPower")))
    assert sorted(set(values)) == [3240.0, 3740.0]
    assert values.count(3740.0) == 2  # one 200 ms sample, seen on two 100 ms ticks
    assert mill.active_faults() == []


def test_periodic_spike() -> None:
    mill = Mill(noise=False, dt=0.1)
    mill.inject("spike", "FeedRate", magnitude=-50.0, period_s=1.0)
    spiked = 0
    for _ in range(30):
        mill.step()
        spiked += mill.read("FeedRate").value == 130.0
    assert spiked == 3


def test_remote_disable_and_clear() -> None:
    mill = Mill(noise=False)
    mill.inject("remote_disable")
    assert mill.read("RemoteEnable").value is False
    assert mill.read("RemoteActive").value is False
    mill.clear("remote_disable")
    assert mill.read("RemoteEnable").value is True
    assert mill.read("RemoteActive").value is True


def test_watchdog_stall_stops_the_echo() -> None:
    mill = Mill(noise=False)
    mill.write("Heartbeat", 1)
    mill.step()
    mill.inject("watchdog_stall")
    mill.write("Heartbeat", 2)
    mill.step(5)
    assert mill.read("HeartbeatEcho").value == 1
    assert mill.read("WatchdogFault").value is False  # the PLC still sees the heartbeat
    mill.clear("watchdog_stall")
    mill.step()
    assert mill.read("HeartbeatEcho").value == 2


def test_server_down_expires() -> None:
    mill = Mill(noise=False, dt=1.0)
    assert mill.server_down_until() is None
    mill.inject("server_down", duration_s=10.0)
    until = mill.server_down_until()
    assert until == mill.time + 10.0
    mill.step(9)
    assert mill.server_down_until() == until
    mill.step(1)
    assert mill.server_down_until() is None
    assert mill.active_faults() == []


def test_clock_skew_offsets_every_source_time() -> None:
    mill = Mill(noise=False)
    mill.step(5)
    before = mill.snapshot()
    mill.inject("clock_skew", offset_s=-120.0)
    after = mill.snapshot()
    for name, reading in after.items():
        assert reading.source_time == before[name].source_time - 120.0
        assert reading.value == before[name].value


def test_grindability_step_lowers_fineness_and_capacity() -> None:
    mill = Mill(noise=False, dt=2.0, wd_timeout_s=1e9)
    mill.inject("grindability_step")
    assert mill.truth()["g"] == pytest.approx(1.15)
    mill.step(1800)
    truth = mill.truth()
    assert truth["B"] == pytest.approx(3800.0 - 60.0, abs=0.5)
    assert truth["F_max"] == pytest.approx(211.11 / 1.15, abs=0.1)
    mill.clear("grindability_step")
    assert mill.truth()["g"] == pytest.approx(1.0)


def test_clinker_quality_step_lowers_strength() -> None:
    mill = Mill(noise=False, dt=2.0, wd_timeout_s=1e9)
    mill.inject("clinker_quality_step")
    mill.step(10)
    assert mill.truth()["S28"] == pytest.approx(48.0)
    assert mill.truth()["C3S"] == pytest.approx(60.0 - 3.99)


def test_clear_all_and_listing() -> None:
    mill = Mill(noise=False)
    mill.inject("bad", "FeedRate")
    mill.inject("clock_skew")
    mill.inject("bias", "MillPower", offset=3)
    kinds = [(kind, tag) for kind, tag, _ in mill.active_faults()]
    assert kinds == [("bad", "FeedRate"), ("clock_skew", None), ("bias", "MillPower")]
    mill.clear()
    assert mill.active_faults() == []
    assert mill.read("FeedRate").status == "Good"


@pytest.mark.parametrize(
    ("kind", "tag", "params", "message"),
    [
        ("melt", None, {}, "unknown fault kind"),
        ("bad", None, {}, "needs a tag"),
        ("bad", "NoSuchTag", {}, "unknown tag"),
        ("trip", "FeedRate", {}, "takes no tag"),
        ("bad", "FeedRate", {"code": "Good"}, "code must be one of"),
        ("bias", "FeedRate", {"amount": 1.0}, "unknown parameter"),
        ("bias", "Running", {}, "sampled Double tag"),
        ("spike", "FeedRateSetpoint", {}, "sampled Double tag"),
        ("server_down", None, {"duration_s": -1.0}, ">= 0"),
        ("clock_skew", None, {"offset_s": "x"}, "must be a number"),
    ],
)
def test_bad_requests_raise(
    kind: str, tag: str | None, params: dict[str, float | str], message: str
) -> None:
    mill = Mill(noise=False)
    with pytest.raises(ValueError, match=message):
        mill.inject(kind, tag, **params)
    assert mill.active_faults() == []


def test_clear_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Mill().clear("melt")
