"""The demo's loop-off counterfactual replays the same plant, and its figures are computed
from the hidden truth as documented (docs/demo.md)."""

from __future__ import annotations

from collections import Counter

from agent.control.audit_chain import ChainReport
from agent.demo.mill import Mill
from agent.demo.stage import Tally, TruthRow, co2_per_t, compress
from agent.demo.summary import figures, lines, loop_off

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
        "max_rate_per_h = 1.0\nwindow_s = 21600.0\nmax_age_s = 10.0\n[api]\n",
        120.0,
    )
    assert "cadence_s = 1.0\n" in text and "min_interval_s = 15.0\n" in text
    assert "max_rate_per_h = 120.0\n" in text and "window_s = 1.0\n" in text
    assert "max_age_s = 10.0\n" in text  # ages stay wall seconds
    assert "feature_window_s = 1.0\n" in text and "[api]\nenabled = false\n" in text
