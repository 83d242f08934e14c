"""The simulated lab as a LIMS (plant-model 4.2): sample ids, windows, entry delays, the
record of every result entered (`Mill.lab_results`) and its tags with their sample times."""

from __future__ import annotations

import pytest

from agent.demo.lab_record import LabRecord
from agent.demo.mill import PRODUCT, Mill
from agent.demo.tags import DAY, HOUR

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC
AGE = {"s2": 2 * DAY, "s7": 7 * DAY, "s28": 28 * DAY}
TRUTH = {"blaine": "B", "residue45": "R45", "s2": "S2", "s7": "S7", "s28": "S28"}
DT = 10.0


def run(mill: Mill, until: float) -> tuple[list[float], dict[str, list[float]], list[LabRecord]]:
    """Step to START + until; return the tick times, the truths at every tick, and every lab
    result as it appeared, each checked against the tags at the tick it was entered."""
    times: list[float] = []
    truths: dict[str, list[float]] = {key: [] for key in (*TRUTH.values(), "C3S")}
    seen: list[LabRecord] = []
    while mill.time < START + until - 1e-6:
        mill.step()
        times.append(mill.time)
        truth = mill.truth()
        for key, series in truths.items():
            series.append(truth[key])
        new = mill.lab_results(since_entry=seen[-1].entry_time if seen else -float("inf"))
        for r in new:
            assert r.entry_time <= mill.time + 1e-6 < r.entry_time + DT, r  # on its tick
        latest = {r.tag: r for r in new}  # the last of a tag in one tick is what it shows
        for tag, r in latest.items():
            reading = mill.read(tag)
            assert (reading.value, reading.source_time) == (r.value, r.sample_time), r
            assert mill.read(f"{tag}SampleTime").value == r.sample_time
            assert mill.read(f"{tag}SampleTime").source_time == r.sample_time
        seen += new
    assert seen == mill.lab_results()
    return times, truths, seen


def window_mean(times: list[float], series: list[float], lo: float, hi: float) -> float:
    values = [x for x, t in zip(series, times, strict=True) if lo < t <= hi]
    return sum(values) / len(values)


def test_every_result_has_its_sample_id_window_entry_time_and_truth() -> None:
    scale = 96.0  # 2 d + 2..6 h -> 31.25..33.75 min; 28 d + 6 h -> 7.06 h
    mill = Mill(noise=False, dt=DT, lab_time_scale=scale, wd_timeout_s=1e9)
    mill.operator("remote_enable", False)
    mill.operator("local_setpoint", 1000.0, tag="SeparatorSpeedSetpoint")  # quality moves
    times, truths, records = run(mill, 16 * HOUR)
    by_test: dict[str, list[LabRecord]] = {}
    for r in records:
        by_test.setdefault(r.test, []).append(r)
        assert r.product == PRODUCT and r.value == r.truth  # a noise-free lab
    assert set(by_test) == {"blaine", "residue45", "c3s", "s2", "s7", "s28"}
    first = {test: rs[0] for test, rs in by_test.items()}
    assert first["blaine"].sample_id == first["residue45"].sample_id == "B-20260101T0100Z"
    assert first["c3s"].sample_id == "C-20260101T0200Z"
    assert first["s2"].sample_id == first["s7"].sample_id == "S-20260101T0400Z"
    assert first["s28"].sample_id == "S-20260101T0400Z"
    units = {"blaine": "cm2/g", "residue45": "%", "c3s": "%", "s2": "MPa", "s7": "MPa",
             "s28": "MPa"}  # fmt: skip
    windows = {"blaine": HOUR, "residue45": HOUR, "c3s": 2 * HOUR, "s2": 4 * HOUR, "s7": 4 * HOUR,
               "s28": 4 * HOUR}  # fmt: skip
    for test, rs in by_test.items():
        for r in rs:
            assert (r.unit, r.window_s) == (units[test], windows[test]), r
            assert r.sample_time % windows[test] == 0.0, r
            if test in TRUTH:
                key = TRUTH[test]
                mean = window_mean(times, truths[key], r.window_start, r.sample_time)
                assert r.truth == pytest.approx(mean, rel=1e-12), r
            if test in AGE:
                delay = (r.entry_time - r.sample_time) * scale - AGE[test]
                assert delay + 1e-6 >= 2 * HOUR and delay - 1e-6 <= 6 * HOUR, r
                assert delay / 60.0 == pytest.approx(round(delay / 60.0), abs=1e-6)  # minutes
            else:
                delay = {"c3s": 30 * 60.0}.get(test, 45 * 60.0)
                assert r.entry_time == pytest.approx(r.sample_time + delay / scale), r
    assert [r.sample_time for r in by_test["s2"]] == [START + k * 4 * HOUR for k in (1, 2, 3)]
    assert [r.sample_time for r in by_test["s28"]] == [START + 4 * HOUR, START + 8 * HOUR]
    assert len({r.entry_time - r.sample_time for r in by_test["s2"]}) == 3  # drawn, not fixed
    assert by_test["s2"][0].value > 25.6 and by_test["s28"][0].value > 51.3  # finer product
    assert by_test["c3s"][0].value == 60.0  # no reactivity change: C3S at its mean


def test_entry_delays_are_seeded_and_the_same_with_or_without_lab_noise() -> None:
    def entries(seed: int, noise: bool) -> list[tuple[str, str, float]]:
        mill = Mill(seed, noise=noise, dt=60.0, lab_time_scale=1440.0, wd_timeout_s=1e9)
        mill.step(round(DAY / 60.0))
        return [(r.sample_id, r.test, r.entry_time) for r in mill.lab_results() if r.test[0] == "s"]

    quiet, noisy = entries(3, False), entries(3, True)
    assert quiet == noisy and len(quiet) >= 15
    assert entries(4, False) != quiet


def test_lab_noise_is_drawn_around_the_truth() -> None:
    mill = Mill(5, dt=60.0, lab_time_scale=1440.0, wd_timeout_s=1e9)
    mill.step(round(2 * DAY / 60.0))
    records = mill.lab_results()
    for test, sigma in (("blaine", 40.0), ("s2", 0.8), ("s7", 1.0), ("s28", 1.2)):
        errors = [r.value - r.truth for r in records if r.test == test]
        assert len(errors) >= 4 and all(e != 0.0 for e in errors), test
        assert max(abs(e) for e in errors) < 6 * sigma, test


def test_lab_results_since_an_entry_time() -> None:
    mill = Mill(noise=False, dt=60.0, wd_timeout_s=1e9)
    mill.step(round(5 * HOUR / 60.0))
    everything = mill.lab_results()
    cut = everything[3].entry_time
    assert mill.lab_results(since_entry=cut) == [r for r in everything if r.entry_time > cut]
    assert mill.lab_results(since_entry=mill.time) == []
    assert Mill(product="CEM I 42.5 R").product == "CEM I 42.5 R"
