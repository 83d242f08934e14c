"""PLC emulation of the simulated mill: watchdog, bumpless fallback, trips, write statuses."""

from __future__ import annotations

import math

import pytest

from agent.demo.mill import Mill


def beat(mill: Mill) -> None:
    hb = mill.read("Heartbeat").value
    assert isinstance(hb, int)
    assert mill.write("Heartbeat", hb + 1) == "Good"


def run(mill: Mill, seconds: float, *, beating: bool = True) -> None:
    for _ in range(round(seconds / mill.dt)):
        if beating:
            beat(mill)
        mill.step()


def flag(mill: Mill, name: str) -> bool:
    value = mill.read(name).value
    assert isinstance(value, bool)
    return value


def number(mill: Mill, name: str) -> float:
    value = mill.read(name).value
    assert isinstance(value, float)
    return value


def test_start_state() -> None:
    mill = Mill(noise=False)
    assert flag(mill, "RemoteEnable") and flag(mill, "RemoteActive") and flag(mill, "Running")
    assert not flag(mill, "WatchdogFault")
    assert mill.read("SeparatorSpeedSetpoint").value == 950.0
    assert mill.read("Heartbeat") == mill.read("HeartbeatEcho")


def test_echo_follows_heartbeat() -> None:
    mill = Mill(noise=False)
    assert mill.write("Heartbeat", 41) == "Good"
    mill.step()
    assert mill.read("HeartbeatEcho").value == 41
    assert mill.read("HeartbeatEcho").source_time == mill.time


def test_watchdog_latches_holds_bumpless_and_needs_the_operator() -> None:
    mill = Mill(noise=False, dt=0.5)
    run(mill, 60.0)
    assert not flag(mill, "WatchdogFault") and flag(mill, "RemoteActive")
    assert mill.write("SeparatorSpeedSetpoint", 1100.0) == "Good"
    run(mill, 10.0)
    assert number(mill, "SeparatorSpeedSetpointEffective") == pytest.approx(970.0)

    last_beat = mill.read("Heartbeat").source_time  # the last write
    while not flag(mill, "WatchdogFault"):
        mill.step()
        assert mill.time - last_beat <= 15.0 + mill.dt
    assert mill.time - last_beat > 15.0
    assert not flag(mill, "RemoteActive")
    assert mill.read("RemoteActive").source_time == mill.time
    held = number(mill, "SeparatorSpeedSetpointEffective")
    assert 990.0 < held < 1100.0  # the ramp had not finished: it stops where it was

    run(mill, 60.0)  # the agent comes back: the latch stays, the SP holds
    assert flag(mill, "WatchdogFault") and not flag(mill, "RemoteActive")
    assert mill.write("SeparatorSpeedSetpoint", 900.0) == "Good"  # stored, not in force
    run(mill, 30.0)
    assert number(mill, "SeparatorSpeedSetpointEffective") == held

    mill.operator("remote_enable", False)
    mill.operator("remote_enable", True)
    assert not flag(mill, "WatchdogFault")
    run(mill, 1.0)
    assert flag(mill, "RemoteActive")
    # bumpless return: the remote SP tracked the held local SP; the stale 900 was dropped
    assert mill.read("SeparatorSpeedSetpoint").value == held
    assert number(mill, "SeparatorSpeedSetpointEffective") == held
    assert mill.write("SeparatorSpeedSetpoint", 900.0) == "Good"
    run(mill, 5.0)
    assert number(mill, "SeparatorSpeedSetpointEffective") == pytest.approx(held - 10.0)


def test_watchdog_latches_without_any_agent() -> None:
    mill = Mill(noise=False, dt=1.0, wd_timeout_s=20.0)
    mill.step(20)
    assert not flag(mill, "WatchdogFault")
    mill.step(1)
    assert flag(mill, "WatchdogFault") and not flag(mill, "RemoteActive")


def test_watchdog_only_watches_while_remote_is_enabled() -> None:
    mill = Mill(noise=False, dt=1.0)
    mill.operator("remote_enable", False)
    mill.step(120)
    assert not flag(mill, "WatchdogFault")
    mill.operator("remote_enable", True)  # the timer restarts at enabling
    mill.step(15)
    assert not flag(mill, "WatchdogFault") and flag(mill, "RemoteActive")
    mill.step(1)
    assert flag(mill, "WatchdogFault")


def test_overload_trips_and_reset_restarts() -> None:
    mill = Mill(noise=False, dt=1.0)
    mill.inject("grindability_step")
    assert mill.write("FeedRateSetpoint", 200.0) == "Good"
    vib_high_since = None
    for _ in range(2 * 3600):
        beat(mill)
        mill.step()
        if vib_high_since is None and mill.truth()["vib"] > 8.0:
            vib_high_since = mill.time
        if not flag(mill, "Running"):
            break
    assert not flag(mill, "Running")
    assert mill.trip_reason == "vibration/dp"
    assert vib_high_since is not None
    assert mill.time - vib_high_since == 4.0  # high on 5 consecutive 1 s ticks
    assert mill.truth()["vib"] > 8.0 and mill.truth()["dp"] < 70.0
    assert mill.time - 1_767_225_600.0 > 600.0  # the overload integrator creeps up first
    assert not flag(mill, "RemoteActive") and not flag(mill, "WatchdogFault")
    run(mill, 600.0)
    assert number(mill, "FeedRate") == pytest.approx(0.0, abs=0.1)
    assert number(mill, "MillPower") == pytest.approx(400.0, rel=0.05)
    assert number(mill, "FeedRateSetpointEffective") == 0.0
    assert not flag(mill, "Running")  # stays down until the operator resets

    mill.clear("grindability_step")
    mill.operator("reset_trip")
    assert flag(mill, "Running")
    run(mill, 60.0)
    assert flag(mill, "RemoteActive")
    assert number(mill, "FeedRateSetpointEffective") == pytest.approx(60.0)  # 1 t/h/s from 0
    run(mill, 1800.0)
    assert flag(mill, "Running")
    assert number(mill, "FeedRate") == pytest.approx(200.0, abs=0.5)


def test_trip_fault_is_an_event() -> None:
    mill = Mill(noise=False, dt=1.0)
    mill.inject("trip")
    assert not flag(mill, "Running") and not flag(mill, "RemoteActive")
    assert mill.trip_reason == "fault"
    assert mill.active_faults() == []
    mill.step(100)
    assert not flag(mill, "Running")
    mill.operator("reset_trip")
    mill.step(1)
    assert flag(mill, "Running")


def test_write_statuses() -> None:
    mill = Mill(noise=False)
    assert mill.write("FeedRate", 100.0) == "BadNotWritable"
    assert mill.write("RemoteEnable", True) == "BadNotWritable"
    assert mill.write("HeartbeatEcho", 3) == "BadNotWritable"
    assert mill.write("FeedRateSetpoint", 300.01) == "BadOutOfRange"
    assert mill.write("FeedRateSetpoint", -0.1) == "BadOutOfRange"
    assert mill.write("FeedRateSetpoint", math.nan) == "BadOutOfRange"
    assert mill.write("FeedRateSetpoint", math.inf) == "BadOutOfRange"
    assert mill.write("FeedRateSetpoint", True) == "BadTypeMismatch"
    assert mill.write("FeedRateSetpoint", "190") == "BadTypeMismatch"  # type: ignore[arg-type]
    assert mill.write("Heartbeat", 1.0) == "BadTypeMismatch"
    assert mill.write("Heartbeat", False) == "BadTypeMismatch"
    assert mill.write("Heartbeat", 2**31) == "BadOutOfRange"
    assert mill.read("FeedRateSetpoint").value == 180.0  # nothing above got through
    assert mill.write("FeedRateSetpoint", 190) == "Good"
    assert mill.read("FeedRateSetpoint").value == 190.0
    assert mill.write("LimestoneShareSetpoint", 20.0) == "Good"  # the hard limit itself
    with pytest.raises(KeyError):
        mill.write("NoSuchTag", 1.0)
    with pytest.raises(KeyError):
        mill.read("NoSuchTag")


def test_plc_reject_writes() -> None:
    mill = Mill(noise=False)
    mill.inject("plc_reject_writes")
    assert mill.write("FeedRateSetpoint", 190.0) == "BadUserAccessDenied"
    assert mill.write("Heartbeat", 5) == "Good"  # the heartbeat is always accepted
    mill.inject("plc_reject_writes", code="BadOutOfRange")
    assert mill.write("SeparatorSpeedSetpoint", 960.0) == "BadOutOfRange"
    assert mill.read("SeparatorSpeedSetpoint").value == 950.0
    mill.clear("plc_reject_writes")
    assert mill.write("SeparatorSpeedSetpoint", 960.0) == "Good"
