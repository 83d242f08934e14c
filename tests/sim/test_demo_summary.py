"""The demo's loop-off counterfactual replays the same plant, and its figures are computed
from the hidden truth as documented (docs/demo.md)."""

from __future__ import annotations

import tomllib
from collections import Counter

from agent.control.audit_chain import ChainReport
from agent.demo.mill import Mill
from agent.demo.show import demo_config_text
from agent.demo.stage import Tally, TruthRow, co2_per_t, compress
from agent.demo.summary import Lab, figures, lines, loop_off, story
from agent.quality.monitor import LoopQualityReport, StepDown, TestHealth

START = 1_767_225_600.0


def _rows(times: list[float]) -> list[TruthRow]:
    return [TruthRow(t, 0, 0, 0, 0, 0, 0, 0, None) for t in times]


def test_the_counterfactual_is_the_same_plant_with_the_same_events_at_the_same_ticks() -> None:
    times = [300.0, 600.0, 900.0, 1200.0]
    events = [(450.0, "clinker_quality_step", {"delta": -4.0})]
    off = loop_off(seed=5, start_time=START, rows=_rows(times), events=events,
                   lab_time_scale=10.0, wd_timeout_s=1800.0)  # fmt: skip
    mill = Mill(5, lab_time_scale=10.0, wd_timeout_s=1800.0, noise=True, lab_noise=False)
    expected = []
    for t in times:
        if t == 600.0:
            mill.step(1500)
            mill.inject("clinker_quality_step", None, delta=-4.0)
            mill.step(1500)
        else:
            mill.step(3000)
        expected.append(mill.truth()["S28"])
    assert [r.s28 for r in off] == expected
    quiet = loop_off(seed=5, start_time=START, rows=_rows(times), events=[],
                     lab_time_scale=10.0, wd_timeout_s=1800.0)  # fmt: skip
    assert quiet[0].s28 == off[0].s28 and quiet[-1].s28 > off[-1].s28 + 3.0


def test_figures_weigh_co2_by_feed_and_count_strength_at_or_above_target() -> None:
    main = [TruthRow(0, 48.0, 0, 0, 0, 0.80, 18.0, 100.0, None),
            TruthRow(60, 47.5, 0, 0, 0, 0.82, 18.0, 300.0, None)]  # fmt: skip
    off = [TruthRow(0, 47.0, 0, 0, 0, 0.83, 18.0, 100.0, None),
           TruthRow(60, 47.6, 0, 0, 0, 0.83, 18.0, 300.0, None)]  # fmt: skip
    tally = Tally(Counter(ok=3, rejected=1), Counter(min_interval=5, handshake=2))
    f = figures(main, off, tally, 0, (ChainReport(True, 10, 1, 10), Counter()))
    assert f.co2_loop == (co2_per_t(0.80, 18.0) * 100 + co2_per_t(0.82, 18.0) * 300) / 400
    assert f.above_loop == 1.0 and f.above_off == 0.5
    out = lines(f)
    assert "summary: writes ok=3 failed=1 after_restart=0" in out
    assert "summary: refused handshake=2 min_interval=5" in out
    assert "summary: audit chain_ok=true records=10" in out


def test_compress_divides_the_wall_clock_loop_timings_by_the_time_scale() -> None:
    text = compress(
        '[[loops]]\nmodel = "vrm-quality"\ncadence_s = 60.0\nmin_interval_s = 1800.0\n'
        "max_rate_per_h = 1.0\nmax_age_s = 10.0\n[[loops.inputs]]\nwindow_s = 21600.0  # C3S\n"
        "[api]\n",
        120.0,
    )
    assert "cadence_s = 1.0\n" in text and "min_interval_s = 15.0\n" in text
    assert "max_rate_per_h = 120.0\n" in text and "window_s = 1.0  # C3S\n" in text
    assert "max_age_s = 10.0\n" in text  # ages stay wall seconds
    assert "feature_window_s = 1.0\n" in text and "[api]\nenabled = false\n" in text


def test_compress_puts_the_lab_windows_on_the_wall_clock_and_nothing_else() -> None:
    """The demo's own config: a `[[quality.tags]]` window is a plant window (a lab sample's
    production hours), so it is divided by the scale like the plant's time; a loop input's
    window becomes the latest result (1 s); every other value is left as it was."""
    scale = 240.0
    before = tomllib.loads(demo_config_text())
    after = tomllib.loads(compress(demo_config_text(), scale))
    windows = [(t["test"], t["window_s"]) for t in before["quality"]["tags"]]
    assert windows and all(w >= 3600.0 for _, w in windows)
    assert [(t["test"], t["window_s"]) for t in after["quality"]["tags"]] == [
        (test, w / scale) for test, w in windows
    ]
    assert dict(after["quality"], tags=None) == dict(before["quality"], tags=None)
    for tags_before, tags_after in zip(before["quality"]["tags"], after["quality"]["tags"],
                                       strict=True):  # fmt: skip
        assert {**tags_after, "window_s": None} == {**tags_before, "window_s": None}
    for loop_before, loop_after in zip(before["loops"], after["loops"], strict=True):
        for i_before, i_after in zip(loop_before["inputs"], loop_after["inputs"], strict=True):
            assert i_after == (i_before | {"window_s": 1.0} if "window_s" in i_before
                               else i_before)  # fmt: skip
        assert loop_after["cadence_s"] == max(1.0, loop_before["cadence_s"] / scale)
    assert after["tags"] == before["tags"] and after["sources"] == before["sources"]


def _health(test: str, n: int, bias: float, declared: float) -> TestHealth:
    return TestHealth(model="vrm-quality", version="1.0.0", role="active", product="P",
                      test=test, n=n, bias=bias, raw_bias=bias, rmse=abs(bias),
                      raw_rmse=abs(bias), declared_rmse=declared, degraded=False, reason="",
                      streak=0)  # fmt: skip


def test_the_truth_loops_reports_make_the_lab_lines() -> None:
    tests = [_health("blaine", 5, -3.04, 42.0), _health("s2", 0, 0.0, 0.9)]
    sound = LoopQualityReport(loop="separator", product="P", model="vrm-quality",
                              version="1.0.0", step_down=None, offsets={}, tests=tests,
                              results_matched=5)  # fmt: skip
    down = StepDown("limestone", 0.0, "vrm-quality", "1.0.0", "s2", "s2 bias -1.31 over 6")
    stepped = LoopQualityReport(loop="limestone", product="P", model="vrm-quality",
                                version="1.0.0", step_down=down, offsets={},
                                results_matched=0)  # fmt: skip
    lab = Lab([sound, stepped], unmatched=2, units={"blaine": "cm2/g"})
    rows = [TruthRow(0, 48.0, 0, 0, 0, 0.80, 18.0, 100.0, None)]
    f = figures(rows, rows, Tally(), 0, (ChainReport(True, 1, 1, 1), Counter()), lab=lab)
    out = lines(f)
    assert "summary: lab unmatched=2 stepped_down=1" in out
    assert ("summary: lab_separator matched=5 step_down=no blaine_n=5 blaine_bias=-3.04 "
            "blaine_declared_rmse=42") in out  # fmt: skip
    assert "summary: lab_limestone matched=0 step_down=yes" in out
    (said,) = [line for line in story(f) if "Lab results" in line]
    assert "separator 5, limestone 0" in said
    assert "blaine bias -3.04 cm2/g over 5 (declared RMSE 42)" in said
    assert "s2 bias +" not in said  # a test without results is not shown
    assert "limestone STEPPED DOWN: s2 bias -1.31 over 6" in said
