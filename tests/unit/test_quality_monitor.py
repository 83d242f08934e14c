"""The monitor's pure rules: the join of a result with its window's predictions, the mean bias
and RMSE by hand-computed figures, the bias judged against its standard error, the RMSE only
over rmse_min_results, the streak of degraded results, which tests step a loop down, and the
reason texts (plant-model 4.4)."""

from __future__ import annotations

import math

import pytest

from agent.config.quality_settings import LoopQuality
from agent.quality.monitor import (
    SeriesKey,
    StepDown,
    TestHealth,
    first_degraded,
    join,
    judge,
    mean,
    rmse,
    step_down_for,
    steps_down,
)
from agent.quality.results import LabResult, Prediction, Residual

KEY = SeriesKey("sep", "vrm", "1.0.0", "active", "CEM I 42.5 R", "s2")
BLAINE = SeriesKey("sep", "vrm", "1.0.0", "active", "CEM I 42.5 R", "blaine")
RULES = LoopQuality(results=10, min_results=5, bias_sigmas=1.0, rmse_min_results=10,
                    rmse_ratio=1.5, persist_results=2)  # fmt: skip


def residual(i: int, value: float, used: float, raw: float | None = None,
             test: str = "s2") -> Residual:  # fmt: skip
    return Residual("sep", "vrm", "1.0.0", "active", "CEM I 42.5 R", test, f"S{i}",
                    1000.0 * i, value, used if raw is None else raw, used, 3)  # fmt: skip


def errors(*values: float) -> list[Residual]:
    """Residuals (lab - prediction) of `values`, oldest first (prediction 30.0)."""
    return [residual(i, 30.0 + v, 30.0) for i, v in enumerate(values)]


def prediction(
    t: float, s2: float, *, product: str = "P", corrected: float | None = None
) -> Prediction:
    return Prediction("sep", "vrm", "1.0.0", "active", product, t, {"s2": s2, "s28": 50.0},
                      {} if corrected is None else {"s2": corrected})  # fmt: skip


def test_join_takes_the_mean_of_the_window_as_used_and_raw() -> None:
    result = LabResult("S1", 3600.0, 3600.0, "P", "s2", 30.0, "MPa", 4000.0, "test")
    found = join(result, [
        prediction(0.0, 99.0),  # at the window's start: outside, (start, end]
        prediction(600.0, 28.0, corrected=27.0),
        prediction(1800.0, 30.0),
        prediction(3600.0, 32.0),  # at the end: inside
        prediction(3601.0, 99.0),  # after the sample time
        prediction(1200.0, 99.0, product="Q"),  # another product
    ])  # fmt: skip
    assert found is not None
    assert found.predictions == 3
    assert found.raw == pytest.approx(30.0)  # (28 + 30 + 32) / 3
    assert found.used == pytest.approx(29.666666666)  # (27 + 30 + 32) / 3
    assert found.residual == pytest.approx(0.333333333)
    assert found.raw_residual == pytest.approx(0.0)


def test_join_without_a_prediction_in_the_window_is_unmatched() -> None:
    result = LabResult("S1", 3600.0, 600.0, "P", "s2", 30.0, "MPa", 4000.0, "test")
    assert join(result, [prediction(2000.0, 30.0), prediction(3700.0, 30.0)]) is None
    blaine = LabResult("S1", 3600.0, 3600.0, "P", "blaine", 3900.0, "cm2/g", 4000.0, "test")
    assert join(blaine, [prediction(3000.0, 30.0)]) is None  # the model does not predict it


def test_mean_and_rmse_by_hand() -> None:
    assert mean([1.0, 2.0, 4.0]) == pytest.approx(7.0 / 3.0)
    assert mean([]) == 0.0
    assert rmse([3.0, 4.0]) == pytest.approx(math.sqrt(12.5))
    assert rmse([]) == 0.0


def test_a_biased_series_is_degraded_from_min_results_on_with_its_figures() -> None:
    series = errors(*[-1.31] * 6)
    early = judge(KEY, series[:4], 0.91, RULES)
    assert not early.degraded and early.streak == 0
    assert early.reason == "s2 4 results < min_results 5"
    health = judge(KEY, series, 0.91, RULES)
    assert health.degraded and health.n == 6 and health.streak == 2
    assert health.bias == pytest.approx(-1.31) and health.rmse == pytest.approx(1.31)
    # SE = 0.91 / sqrt(6) = 0.3715; the RMSE is not judged on 6 < rmse_min_results 10
    assert health.reason == (
        "s2 bias -1.31 over 6 results > 1.0 x declared RMSE 0.91 and > 3.0 x its standard "
        "error 0.37"
    )
    step = step_down_for("sep", health, 1234.0)
    assert step == StepDown(
        "sep", 1234.0, "vrm", "1.0.0", "s2", f"{health.reason}, on 2 results in a row"
    )


def test_the_bias_is_the_mean_of_the_window_not_an_ewma() -> None:
    # eight sound results, then two at -2: mean -0.40 (an EWMA with alpha 0.3 would say -1.02)
    health = judge(KEY, errors(*[0.0] * 8, -2.0, -2.0), 0.91, RULES)
    assert health.bias == pytest.approx(-0.4) and health.raw_bias == pytest.approx(-0.4)
    assert health.rmse == pytest.approx(math.sqrt(0.8))
    assert not health.degraded and health.streak == 0
    assert health.reason == (
        "s2 bias -0.40, RMSE 0.89 over 10 results within limits (declared RMSE 0.91)"
    )


def test_on_few_results_the_bias_must_also_pass_three_standard_errors() -> None:
    # -1.20 is beyond 1.0 x 0.91, but over 5 results 3 x 0.91 / sqrt(5) = 1.2209 is the limit
    five = judge(KEY, errors(*[-1.2] * 5), 0.91, RULES)
    assert five.bias == pytest.approx(-1.2) and not five.degraded
    assert five.reason.startswith("s2 bias -1.20, RMSE 1.20 over 5 results within limits")
    assert five.reason.endswith("; RMSE not judged below rmse_min_results 10")
    six = judge(KEY, errors(*[-1.2] * 6), 0.91, RULES)  # 3 x 0.91 / sqrt(6) = 1.1145
    assert six.degraded and six.reason.endswith("and > 3.0 x its standard error 0.37")
    # on many results 1.0 x declared is the larger limit: 3 x 0.91 / sqrt(10) = 0.8633
    ten = judge(KEY, errors(*[-0.9] * 10), 0.91, RULES)
    assert not ten.degraded and abs(ten.bias) > 3.0 * 0.91 / math.sqrt(10)


def test_the_rmse_is_judged_only_over_rmse_min_results() -> None:
    noisy = [2.0 if i % 2 == 0 else -2.0 for i in range(10)]  # mean 0, RMSE 2.00 > 1.365
    few = judge(KEY, errors(*noisy[:8]), 0.91, RULES)
    assert few.rmse == pytest.approx(2.0) and few.bias == pytest.approx(0.0)
    assert not few.degraded
    health = judge(KEY, errors(*noisy), 0.91, RULES)
    assert health.degraded and health.streak == 1  # its 9-result window was not judged on RMSE
    assert health.reason == "s2 RMSE 2.00 over 10 results > 1.5 x declared RMSE 0.91"
    default = LoopQuality()
    assert (default.results, default.rmse_min_results) == (20, 20)


def test_the_streak_counts_degraded_results_in_a_row_and_a_sound_one_resets_it() -> None:
    series = errors(*[-1.31] * 5)
    first = judge(KEY, series, 0.91, RULES)  # its 4-result prefix had no verdict
    assert first.degraded and first.streak == 1 and not steps_down(first, RULES)
    second = judge(KEY, errors(*[-1.31] * 6), 0.91, RULES)
    assert second.streak == 2 and steps_down(second, RULES)
    longer = judge(KEY, errors(*[-1.31] * 9), 0.91, RULES)
    assert longer.streak == 2  # counted up to persist_results
    # a sound result: 5 x -1.31 + 1.31 over 7 = -0.936 < 3 x 0.91 / sqrt(7) = 1.0318
    reset = judge(KEY, errors(*[-1.31] * 6, 1.31), 0.91, RULES)
    assert not reset.degraded and reset.streak == 0 and not steps_down(reset, RULES)
    once = RULES.model_copy(update={"persist_results": 1})
    assert steps_down(judge(KEY, series, 0.91, once), once)


def test_the_streak_is_the_same_whatever_order_the_residuals_come_in() -> None:
    series = errors(*[0.0] * 4, -7.0, -7.0)  # windows of 5 (-1.40) and 6 (-2.33): degraded
    shuffled = [series[i] for i in (5, 0, 4, 2, 1, 3)]
    assert judge(KEY, shuffled, 0.91, RULES) == judge(KEY, series, 0.91, RULES)
    assert judge(KEY, series, 0.91, RULES).streak == 2


def test_only_step_down_tests_step_a_loop_down() -> None:
    blaine = [residual(i, 3700.0, 3800.0, test="blaine") for i in range(6)]  # -100 each
    health = judge(BLAINE, blaine, 42.0, RULES)
    assert health.degraded and health.streak == 2  # judged, shown and alarmed ...
    assert RULES.step_down_tests == ["s2", "s28"]
    assert not steps_down(health, RULES)  # ... but Blaine steps nothing down by default
    listed = RULES.model_copy(update={"step_down_tests": ["blaine", "s2"]})
    assert steps_down(health, listed)


def test_only_the_last_n_results_are_judged_in_sample_time_order() -> None:
    old = [residual(i, 20.0, 30.0) for i in range(5)]  # -10 each, older than the last 10
    recent = [residual(i, 30.1, 30.0) for i in range(5, 15)]
    health = judge(KEY, list(reversed(recent)) + old, 0.91, RULES)  # order does not matter
    assert health.n == 10 and not health.degraded
    assert health.bias == pytest.approx(0.1) and health.rmse == pytest.approx(0.1)
    assert "within limits" in health.reason


def test_bias_as_used_is_judged_and_raw_bias_is_kept_beside_it() -> None:
    series = [residual(i, 28.69, used=28.7, raw=30.0) for i in range(6)]  # corrected by -1.3
    health = judge(KEY, series, 0.91, RULES)
    assert not health.degraded
    assert health.bias == pytest.approx(-0.01) and health.raw_bias == pytest.approx(-1.31)
    assert health.raw_rmse == pytest.approx(1.31)


def test_no_declared_rmse_never_degrades() -> None:
    series = [residual(i, 20.0, 30.0) for i in range(6)]
    for declared in (None, 0.0, math.nan):
        health = judge(KEY, series, declared, RULES)
        assert not health.degraded and health.reason == "s2 no declared RMSE"
        assert health.streak == 0


def test_first_degraded_keeps_the_order_given() -> None:
    ok = judge(KEY, [residual(i, 30.0, 30.0) for i in range(6)], 0.91, RULES)
    bad = judge(KEY, [residual(i, 20.0, 30.0) for i in range(6)], 0.91, RULES)
    assert first_degraded([ok, bad, ok]) is bad
    assert first_degraded([ok]) is None
    assert isinstance(ok, TestHealth)
