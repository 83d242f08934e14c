"""Lab, analyser and backfill of the simulated mill (plant-model.md 1.4)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.demo.dynamics import TRUTH_NAMES
from agent.demo.mill import Mill, backfill
from agent.demo.tags import ALL_TAGS, DAY, HOUR

START = 1_767_225_600.0  # midnight UTC


def local_mill(*, dt: float = 10.0, scale: float = 1.0, psd: bool = True) -> Mill:
    """A noise-free mill in local mode, separator moved so that quality leaves nominal."""
    mill = Mill(noise=False, dt=dt, lab_time_scale=scale, has_online_psd=psd)
    mill.operator("remote_enable", False)
    mill.operator("local_setpoint", 1000.0, tag="SeparatorSpeedSetpoint")
    return mill


def record(mill: Mill, until: float, keys: tuple[str, ...]) -> dict[str, list[float]]:
    """Step to `until` (seconds after START), recording truths after every step."""
    out: dict[str, list[float]] = {key: [] for key in (*keys, "t")}
    while mill.time < START + until - 1e-6:
        mill.step()
        truth = mill.truth()
        for key in keys:
            out[key].append(truth[key])
        out["t"].append(mill.time)
    return out


def window_mean(rec: dict[str, list[float]], key: str, lo: float, hi: float) -> float:
    """Mean of the samples taken in (START + lo, START + hi]."""
    values = [v for v, t in zip(rec[key], rec["t"], strict=True) if START + lo < t <= START + hi]
    return sum(values) / len(values)


def test_hourly_composite_published_45_min_after_the_hour() -> None:
    mill = local_mill()
    rec = record(mill, HOUR + 2690.0, ("B", "R45"))
    early = mill.read("LabBlaine")
    assert (early.value, early.status, early.source_time) == (3800.0, "Good", START)
    mill.step()  # 01:45:00
    blaine, residue = mill.read("LabBlaine"), mill.read("LabResidue45")
    assert blaine.source_time == residue.source_time == START + HOUR
    assert blaine.value == pytest.approx(window_mean(rec, "B", 0.0, HOUR))
    assert residue.value == pytest.approx(window_mean(rec, "R45", 0.0, HOUR))
    assert blaine.value != pytest.approx(3800.0)
    mill.step(300)  # the value holds between reports
    assert mill.read("LabBlaine") == blaine


def test_lab_time_scale_divides_the_delays() -> None:
    mill = local_mill(scale=60.0)
    mill.step(round((HOUR + 40.0) / 10.0))
    assert mill.read("LabBlaine").source_time == START
    mill.step(1)  # 45 min / 60 = 45 s after the hour
    assert mill.read("LabBlaine").source_time == START + HOUR


def test_clinker_spot_sample_every_two_hours_after_30_min() -> None:
    mill = Mill(noise=False, dt=10.0, wd_timeout_s=1e9)
    mill.inject("clinker_quality_step", delta=-1.5)
    mill.step(round((2 * HOUR + 1790.0) / 10.0))
    assert mill.read("LabClinkerC3S").source_time == START
    mill.step(1)
    c3s = mill.read("LabClinkerC3S")
    assert c3s.source_time == START + 2 * HOUR
    assert c3s.value == pytest.approx(60.0 - 1.33 * 1.5)


def test_strength_composites_every_four_hours_with_compressed_delays() -> None:
    mill = local_mill(scale=1440.0)  # 2 d + 2..6 h -> 125..135 s, 28 d + 2..6 h -> 28.1..28.25 min
    rec = record(mill, 4 * HOUR + 140.0, ("S2", "S28"))
    s2 = mill.read("LabStrength2d")
    assert s2.source_time == START + 4 * HOUR  # the 4-hour composite, not a daily one
    assert s2.value == pytest.approx(window_mean(rec, "S2", 0.0, 4 * HOUR))
    assert mill.read("LabStrength2dSampleTime").value == START + 4 * HOUR
    assert mill.read("LabStrength28d").value == 51.0  # not yet
    mill.step(round((28.25 * 60.0 - 140.0) / 10.0) + 1)
    s28 = mill.read("LabStrength28d")
    assert s28.source_time == START + 4 * HOUR
    assert s28.value == pytest.approx(window_mean(rec, "S28", 0.0, 4 * HOUR))
    assert isinstance(s28.value, float) and s28.value > 51.3  # finer product: faster separator


def test_analyser_publishes_every_minute_three_minutes_late() -> None:
    mill = local_mill(dt=1.0)
    rec = record(mill, 600.0, ("B",))
    reading = mill.read("ProductFineness")
    assert reading.source_time == START + 600.0
    assert reading.value == pytest.approx(rec["B"][rec["t"].index(START + 420.0)])
    mill.step(59)
    assert mill.read("ProductFineness") == reading
    mill.step(1)
    assert mill.read("ProductFineness").source_time == START + 660.0
    absent = local_mill(psd=False)
    absent.step(30)
    assert absent.read("ProductFineness").value is None
    assert absent.read("ProductFineness").status == "BadNoCommunication"


def test_lab_noise_is_drawn() -> None:
    mill = Mill(seed=4, dt=10.0, wd_timeout_s=1e9)
    mill.step(round(3 * HOUR / 10.0))
    values = {mill.read(name).value for name in ("LabBlaine", "LabResidue45")}
    assert 3800.0 not in values and 4.0 not in values


def test_backfill_shapes_truths_and_excitation() -> None:
    data = backfill(2.0, seed=1)  # its speed is a figure of docs/benchmarks.md, not a test
    n = round(2 * DAY / 10.0)
    for name in ("time", *(t.name for t in ALL_TAGS), *TRUTH_NAMES, "LabBlaine_source_time"):
        assert data[name].shape == (n,), name
        assert data[name].dtype == np.float64
    assert np.all(np.diff(data["time"]) == pytest.approx(10.0))
    assert data["time"][0] == START + 10.0
    for name in TRUTH_NAMES:
        assert np.isfinite(data[name]).all(), name
    sep = np.unique(data["SeparatorSpeedSetpoint"])
    assert len(sep) >= 3 and set(np.diff(sep)) == {50.0}
    assert len(np.unique(data["FeedRateSetpoint"])) >= 2
    assert len(np.unique(data["LimestoneShareSetpoint"])) >= 2
    assert len(np.unique(data["GrindingAidSetpoint"])) >= 2
    assert np.ptp(data["n"]) >= 100.0 and np.ptp(data["S28"]) > 1.0
    assert len(np.unique(data["LabBlaine_source_time"])) >= 40  # hourly reports
    assert set(np.unique(data["RemoteActive"])) <= {0.0, 1.0}


def test_backfill_is_deterministic_and_excitation_can_be_off() -> None:
    a, b = backfill(0.25, seed=5), backfill(0.25, seed=5)
    c = backfill(0.25, seed=6)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["S28"], c["S28"])
    flat = backfill(0.25, seed=5, excitation=False)
    for name in ("SeparatorSpeedSetpoint", "FeedRateSetpoint", "LimestoneShareSetpoint"):
        assert np.ptp(flat[name]) == 0.0
    with pytest.raises(ValueError, match="days"):
        backfill(0.0)
