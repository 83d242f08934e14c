"""Steady state, sensitivities, clamp/ramp and determinism of the simulated mill (plant-model.md 1.3)."""

from __future__ import annotations

import itertools
import math

import pytest

from agent.demo.mill import Mill
from agent.demo.plc import MV_TAGS, RAMPS, Plc


def run(mill: Mill, seconds: float, *, beat: bool = True) -> None:
    """Step the mill for `seconds`, writing a fresh heartbeat before every tick if beat."""
    for _ in range(round(seconds / mill.dt)):
        if beat:
            hb = mill.read("Heartbeat").value
            assert isinstance(hb, int)
            assert mill.write("Heartbeat", hb + 1) == "Good"
        mill.step()


def settled(writes: dict[str, float], seconds: float = 3600.0) -> dict[str, float]:
    """Truth after remote writes through the PLC (heartbeat alive) and `seconds` of settling."""
    mill = Mill(noise=False, dt=2.0)
    for name, value in writes.items():
        assert mill.write(name, value) == "Good"
    run(mill, seconds)
    assert mill.read("RemoteActive").value is True
    return mill.truth()


def test_nominal_steady_state_is_reproduced() -> None:
    mill = Mill(noise=False, dt=1.0)
    run(mill, 1800.0)
    truth = mill.truth()
    expected = {"F": 180.0, "n": 950.0, "LS": 12.0, "B": 3800.0, "R45": 4.0, "P": 3240.0,
                "e_ss": 18.0, "dp": 41.6, "vib": 2.0, "S28": 51.0, "S2": 25.5, "CF": 0.83,
                "g": 1.0, "S_clk": 51.0, "L": 0.0}  # fmt: skip
    for key, value in expected.items():
        assert truth[key] == pytest.approx(value, abs=1e-6), key
    assert truth["F_max"] == pytest.approx(211.1, abs=0.1)
    assert truth["MillPower"] == truth["P"]
    assert truth["T_out"] == pytest.approx(95.0, abs=1.0)  # the inlet-gas sine passes through
    published = {"FeedRate": 180.0, "SeparatorSpeed": 950.0, "LimestoneShare": 12.0,
                 "MillPower": 3240.0, "MillDifferentialPressure": 41.6, "Vibration": 2.0,
                 "SeparatorPower": 120.75, "BucketElevatorPower": 76.0, "FanPower": 1483.1,
                 "GypsumShare": 5.0, "WaterInjection": 2.0, "FanSpeed": 85.0}  # fmt: skip
    for name, value in published.items():
        assert mill.read(name).value == pytest.approx(value, abs=0.05), name


SENSITIVITIES = [
    ("SeparatorSpeedSetpoint", 950.0, 960.0, {"B": 13.0, "S28": 0.16, "P": 15.0, "F_max": -1.0}),
    ("FeedRateSetpoint", 180.0, 190.0, {"B": -40.0, "S28": -0.48, "P": 130.0}),
    ("LimestoneShareSetpoint", 12.0, 13.0, {"B": 60.0, "S28": -0.61, "P": -0.005 * 3240.0}),
    ("WaterInjectionSetpoint", 2.5, 3.5, {"B": -15.0, "S28": -0.18, "T_out": -3.0}),
]


@pytest.mark.parametrize(("tag", "before", "after", "expected"), SENSITIVITIES)
def test_steady_state_sensitivities_within_10_percent(
    tag: str, before: float, after: float, expected: dict[str, float]
) -> None:
    base = settled({tag: before})
    moved = settled({tag: after})
    for key, value in expected.items():
        assert moved[key] - base[key] == pytest.approx(value, rel=0.10), key


def test_limestone_leaves_clinker_fineness_unchanged() -> None:
    base, moved = settled({}), settled({"LimestoneShareSetpoint": 13.0})
    assert moved["B_eff"] == pytest.approx(base["B_eff"], abs=1.0)
    assert moved["R45"] < base["R45"]


def test_operator_local_setpoint_moves_the_plant_in_local_mode() -> None:
    mill = Mill(noise=False, dt=2.0)
    mill.operator("remote_enable", False)
    mill.operator("local_setpoint", 960.0, tag="SeparatorSpeedSetpoint")
    run(mill, 3600.0, beat=False)
    assert mill.read("RemoteActive").value is False
    assert mill.read("SeparatorSpeedSetpoint").value == 950.0  # the remote SP is untouched
    assert mill.truth()["B"] == pytest.approx(3813.0, abs=0.5)


def test_effective_setpoints_ramp_at_the_plc_rates() -> None:
    mill = Mill(noise=False, dt=0.1)
    assert mill.write("SeparatorSpeedSetpoint", 1100.0) == "Good"
    assert mill.write("FeedRateSetpoint", 150.0) == "Good"
    run(mill, 10.0)
    assert mill.read("SeparatorSpeedSetpointEffective").value == pytest.approx(970.0, abs=1e-6)
    assert mill.read("FeedRateSetpointEffective").value == pytest.approx(170.0, abs=1e-6)
    run(mill, 80.0)
    assert mill.read("SeparatorSpeedSetpointEffective").value == pytest.approx(1100.0)
    assert mill.read("FeedRateSetpointEffective").value == pytest.approx(150.0)


@pytest.mark.parametrize("j", range(6))
def test_every_mv_ramp_and_clamp_in_the_plc(j: int) -> None:
    plc = Plc(0.0, 0.5, 15.0)
    plc.remote_enable = False
    plc.tick(0.5)  # now local
    start = plc.eff[j]
    plc.local[j] = 1e6  # the operator asks for far too much: the PLC clamps to the hard range
    for k in range(4):
        plc.tick(1.0 + 0.5 * k)
    assert plc.eff[j] == pytest.approx(start + 4 * 0.5 * RAMPS[j])
    for k in range(100_000):
        plc.tick(3.0 + 0.5 * k)
        if plc.eff[j] == plc.hi[j]:
            break
    assert plc.eff[j] == plc.hi[j]
    assert len(MV_TAGS) == len(RAMPS) == 6


def test_local_setpoint_beyond_hard_range_is_clamped() -> None:
    mill = Mill(noise=False, dt=1.0)
    mill.operator("remote_enable", False)
    mill.operator("local_setpoint", 2000.0, tag="SeparatorSpeedSetpoint")
    run(mill, 400.0, beat=False)
    assert mill.read("SeparatorSpeedSetpointEffective").value == 1500.0
    with pytest.raises(ValueError, match="finite"):
        mill.operator("local_setpoint", math.nan, tag="FeedRateSetpoint")
    with pytest.raises(ValueError, match="tag"):
        mill.operator("local_setpoint", 1.0, tag="FeedRate")
    with pytest.raises(ValueError, match="unknown operator action"):
        mill.operator("open_the_pod_bay_doors")


def test_same_seed_same_snapshot_and_reads_do_not_disturb() -> None:
    a, b, c = Mill(seed=7), Mill(seed=7), Mill(seed=8)
    for _ in range(300):
        a.step()
        a.snapshot()  # reads must not consume randomness
    b.step(300)
    c.step(300)
    assert a.snapshot() == b.snapshot()
    assert a.truth() == b.truth()
    assert a.snapshot() != c.snapshot()
    assert a.read("FeedRate").value != c.read("FeedRate").value


def test_measurement_noise_has_the_tag_sigma() -> None:
    mill = Mill(seed=3, dt=0.1)
    samples = []
    for _ in range(4000):
        mill.step()
        value = mill.read("MillPower").value
        assert isinstance(value, float)
        samples.append(value - mill.truth()["P"])
    mean = sum(samples) / len(samples)
    sd = math.sqrt(sum((x - mean) ** 2 for x in samples) / len(samples))
    assert sd == pytest.approx(15.0, rel=0.05)
    assert abs(mean) < 1.0


def test_update_period_is_respected() -> None:
    mill = Mill(seed=1, dt=0.1)
    seen: dict[float, float | int | bool | None] = {}
    for _ in range(50):
        mill.step()
        reading = mill.read("BucketElevatorPower")  # a 500 ms tag
        seen.setdefault(reading.source_time, reading.value)
        assert seen[reading.source_time] == reading.value  # no change between updates
    times = sorted(seen)
    assert times[0] == mill.time - 5.0  # the nominal at start, then one sample per 0.5 s
    assert len(times) == 11
    assert all(b - a == pytest.approx(0.5) for a, b in itertools.pairwise(times))
