"""The bias correction's pure rules by hand-computed figures: the s2 offset is the MEAN of the
last correction_results raw s2 residuals, applied only beyond 2 standard errors; the s28 offset
is s28_per_s2 x that + the mapping error d learned from same-sample (s28, s2) pairs, itself
applied only beyond 2 of its standard errors; 28-day results of production from before a drift
do not wipe the s2-based offset; the clamp; and which changes are audited (plant-model 4.4)."""

from __future__ import annotations

import math

import pytest

from agent.config.quality_settings import LoopQuality
from agent.quality.correction import Offset, changed, lag1, offsets
from agent.quality.results import Residual

RULES = LoopQuality(min_results=4, correction_results=4, max_correction_mpa=3.0)
BOTH = {"s2", "s28", "blaine"}
DECLARED = {"s2": 1.0, "s28": 1.0}  # SE of a mean over 4: 0.5; of d over 4 pairs, b = 1: 0.707
NO_MAPPING = "mapping 0.00 over 0 pairs (< min_results 4: 0)"


def res(test: str, i: int, value: float, raw: float, used: float | None = None,
        sample_id: str | None = None) -> Residual:  # fmt: skip
    return Residual("sep", "vrm", "1.0.0", "active", "P", test, sample_id or f"S{i}", 1000.0 * i,
                    value, raw, raw if used is None else used, 2)  # fmt: skip


def s2(*errors: float, start: int = 0) -> list[Residual]:
    return [res("s2", start + i, 30.0 + e, 30.0) for i, e in enumerate(errors)]


def s28(*errors: float, start: int = 0, prefix: str = "S") -> list[Residual]:
    return [res("s28", start + i, 50.0 + e, 50.0, sample_id=f"{prefix}{start + i}")
            for i, e in enumerate(errors)]  # fmt: skip


def found(residuals: dict[str, list[Residual]], b: float = 1.8, **rules: object
          ) -> dict[str, Offset]:  # fmt: skip
    return offsets(residuals, RULES.model_copy(update=rules), s28_per_s2=b, outputs=BOTH,
                   declared=DECLARED)  # fmt: skip


def test_no_offset_before_min_results_nor_without_a_declared_s2_rmse() -> None:
    assert found({"s2": s2(-2.0, -2.0, -2.0)}) == {}
    four = {"s2": s2(-2.0, -2.0, -2.0, -2.0)}
    assert set(found(four)) == {"s2", "s28"}
    for declared in ({}, {"s2": 0.0}, {"s2": math.nan}, {"s28": 1.0}):
        assert offsets(four, RULES, s28_per_s2=2.0, outputs=BOTH, declared=declared) == {}


def test_s2_offset_is_the_mean_and_s28_follows_through_the_relation() -> None:
    got = found({"s2": s2(-1.0, -2.0, 0.0, -3.0)})  # mean -1.50 > 2 x SE 0.50
    assert got["s2"] == Offset("s2", -1.5, "s2 mean -1.50 over 4 (lag-1 r 0.00, SE 0.50)", 4)
    assert got["s28"].value == pytest.approx(-2.7)  # 1.8 x -1.5, no pairs yet
    assert (
        got["s28"].source
        == f"s2 mean -1.50 over 4 (lag-1 r 0.00, SE 0.50) x s28_per_s2 1.8 + {NO_MAPPING}"
    )
    assert got["s28"].results == 4
    assert set(got) == {"s2", "s28"}  # never blaine


def test_a_mean_within_two_standard_errors_is_noise_and_not_applied() -> None:
    got = found({"s2": s2(-1.0, 0.0, -1.0, 0.0)})  # mean -0.50 <= 2 x 0.5
    assert got["s2"] == Offset(
        "s2", 0.0, "s2 mean -0.50 over 4 (lag-1 r 0.00, SE 0.50) within 2.0 x SE: 0", 4
    )
    assert got["s28"].value == 0.0
    just = found({"s2": s2(-1.0, -1.0, -1.0, -1.04)})  # -1.01 > 1.00
    assert just["s2"].value == pytest.approx(-1.01)


def test_only_the_last_correction_results_count() -> None:
    got = found({"s2": s2(9.0, 9.0, -2.0, -2.0, -2.0, -2.0)})  # the two 9s are older
    assert got["s2"].value == pytest.approx(-2.0) and got["s2"].results == 4
    wider = found({"s2": s2(9.0, 9.0, -2.0, -2.0, -2.0, -2.0)}, correction_results=6)
    assert wider["s2"].value == pytest.approx(5.0 / 3.0)  # (18 - 8) / 6, SE 0.408


def test_28_day_results_of_production_before_a_drift_do_not_wipe_the_s2_offset() -> None:
    # samples 0-3 before the drift, 4-7 after: s2 moved by -1.25, s28 (b = 2) by -2.5; only the
    # 28-day results of the old samples 0-3 are known yet, and they say 0
    early = s2(0.0, 0.0, 0.0, 0.0) + s2(-1.25, -1.25, -1.25, -1.25, start=4)
    got = found({"s2": early, "s28": s28(0.0, 0.0, 0.0, 0.0)}, b=2.0)
    assert got["s28"].value == pytest.approx(-2.5)  # 2 x -1.25 + d, d = mean(0 - 2 x 0) = 0
    assert got["s28"].source == (
        "s2 mean -1.25 over 4 (lag-1 r 0.00, SE 0.50) x s28_per_s2 2.0 + mapping 0.00 over 4 "
        "pairs (lag-1 r 0.00, SE 1.12) within 2.0 x SE: 0"  # sqrt(1 + 4) / sqrt(4)
    )
    assert got["s28"].results == 8


def test_a_drift_moves_both_members_of_a_pair_so_d_stays_0() -> None:
    early = s2(0.0, 0.0, 0.0, 0.0) + s2(-1.25, -1.25, -1.25, -1.25, start=4)
    late = s28(0.0, 0.0, 0.0, 0.0) + s28(-2.5, -2.5, -2.5, -2.5, start=4)
    got = found({"s2": early, "s28": late}, b=2.0, correction_results=8)
    # d = mean(s28 - 2 x s2) = 0 over all 8 pairs, before and after the drift alike
    assert got["s28"].source.endswith(
        "mapping 0.00 over 8 pairs (lag-1 r 0.00, SE 0.79) within 2.0 x SE: 0"
    )
    last = found({"s2": early, "s28": late}, b=2.0)  # the last 4 of each: both drifted
    assert last["s28"].value == pytest.approx(-2.5)
    assert "mapping 0.00 over 4 pairs" in last["s28"].source


def test_a_significant_mapping_error_corrects_the_relation() -> None:
    # the relation misses +2 MPa at 28 days: d = 2 > 2 x sqrt(1 + 1) / sqrt(4) = 1.414
    got = found({"s2": s2(0.0, 0.0, 0.0, 0.0), "s28": s28(2.0, 2.0, 2.0, 2.0)}, b=1.0)
    assert got["s2"].value == 0.0
    assert got["s28"].value == pytest.approx(2.0)
    assert got["s28"].source.endswith("+ mapping 2.00 over 4 pairs (lag-1 r 0.00, SE 0.71)")
    small = found({"s2": s2(0.0, 0.0, 0.0, 0.0), "s28": s28(1.4, 1.4, 1.4, 1.4)}, b=1.0)
    assert small["s28"].value == 0.0  # 1.4 is within 1.414: noise
    few = found({"s2": s2(0.0, 0.0, 0.0, 0.0), "s28": s28(2.0, 2.0, 2.0)}, b=1.0)
    assert few["s28"].value == 0.0 and "over 3 pairs (< min_results 4: 0)" in few["s28"].source
    undeclared = offsets({"s2": s2(0.0, 0.0, 0.0, 0.0), "s28": s28(2.0, 2.0, 2.0, 2.0)}, RULES,
                         s28_per_s2=1.0, outputs=BOTH, declared={"s2": 1.0})  # fmt: skip
    assert undeclared["s28"].value == 0.0 and "no declared s28 RMSE" in undeclared["s28"].source


def test_pairs_fall_back_to_the_sample_time_when_the_ids_differ() -> None:
    late = s28(2.0, 2.0, 2.0, 2.0, prefix="LabStrength28d@")  # same sample times, other ids
    got = found({"s2": s2(0.0, 0.0, 0.0, 0.0), "s28": late}, b=1.0)
    assert got["s28"].value == pytest.approx(2.0)
    unpaired = [res("s28", i, 52.0, 50.0, sample_id=f"X{i}") for i in range(10, 14)]
    alone = found({"s2": s2(0.0, 0.0, 0.0, 0.0), "s28": unpaired}, b=1.0)
    assert "over 0 pairs" in alone["s28"].source  # another sample: no pair


def test_offsets_feed_on_raw_residuals_never_on_corrected_ones() -> None:
    corrected = [res("s2", i, 28.5, raw=30.0, used=28.5) for i in range(4)]  # used: 0
    assert found({"s2": corrected})["s2"].value == -1.5


def test_offsets_are_clamped() -> None:
    got = found({"s2": s2(-2.5, -2.5, -2.5, -2.5)}, b=2.0)
    assert got["s2"].value == pytest.approx(-2.5)
    assert got["s28"].value == -3.0  # 2 x -2.5 clamped to the bound
    up = found({"s2": s2(9.0, 9.0, 9.0, 9.0)}, b=2.0)
    assert up["s2"].value == 3.0 and up["s28"].value == 3.0
    none = found({"s2": s2(-2.5, -2.5, -2.5, -2.5)}, max_correction_mpa=0.0)
    assert none["s2"].value == 0.0


def test_only_outputs_the_model_predicts_and_only_when_correction_is_on() -> None:
    errors = {"s2": s2(-2.0, -2.0, -2.0, -2.0)}
    assert set(offsets(errors, RULES, s28_per_s2=2.0, outputs={"s28"}, declared=DECLARED)) == {
        "s28"}  # fmt: skip
    assert set(offsets(errors, RULES, s28_per_s2=2.0, outputs={"s2"}, declared=DECLARED)) == {
        "s2"}  # fmt: skip
    assert found(errors, correction=False) == {}


def test_changed_is_a_move_of_more_than_five_hundredths_no_offset_counting_as_0() -> None:
    a = Offset("s28", -1.00, "s2 mean -0.50 over 20 x s28_per_s2 2.0 + ...", 20)
    assert not changed(a, Offset("s28", -1.04, "s2 mean -0.52 over 20 x s28_per_s2 2.0", 20))
    assert changed(a, Offset("s28", -1.06, "s2 mean -0.53 over 20 x s28_per_s2 2.0", 20))
    assert not changed(a, Offset("s28", -1.00, "other figures", 25))  # figures alone: no
    assert changed(None, a) and changed(a, None) and not changed(None, None)
    zero = Offset("s2", 0.0, "s2 mean -0.10 over 20 within 2.0 x SE: 0", 20)
    assert not changed(None, zero) and not changed(zero, None)  # no offset is an offset of 0


def test_an_autocorrelated_series_holds_fewer_independent_results() -> None:
    # Residuals that move together day by day: mean -1.0 over 8, but each pair repeats, so the
    # lag-1 autocorrelation is high and the standard error wider than 1 / sqrt(8) = 0.354.
    drifting = s2(-2.0, -2.0, -1.5, -1.5, -0.5, -0.5, 0.0, 0.0)
    r = lag1([e.raw_residual for e in drifting])
    assert r == pytest.approx(0.65)  # by hand: sum of lagged products 3.25 / sum sq 5.0
    got = found({"s2": drifting}, correction_results=8)
    n_eff = 8 * (1 - r) / (1 + r)  # 1.70
    assert got["s2"].value == 0.0  # -1.0 is within 2 x 1 / sqrt(1.70) = 1.54
    assert f"SE {1 / math.sqrt(n_eff):.2f}" in got["s2"].source
    independent = s2(-2.0, 0.0, -1.5, -0.5, -2.0, 0.0, -1.5, -0.5)  # the same values, shuffled
    assert found({"s2": independent}, correction_results=8)["s2"].value == pytest.approx(-1.0)


def test_an_applied_offset_is_kept_until_its_mean_falls_below_one_standard_error() -> None:
    weak = {"s2": s2(-1.0, -0.5, -1.0, -0.5)}  # mean -0.75: within 2 x SE 0.5, beyond 1 x SE
    assert found(weak)["s2"].value == 0.0  # not switched on by it
    held = {"s2": Offset("s2", -1.5, "before", 4)}
    kept = offsets(weak, RULES, s28_per_s2=2.0, outputs=BOTH, declared=DECLARED, previous=held)
    assert kept["s2"].value == pytest.approx(-0.75)  # once on, it stays on
    assert kept["s28"].value == pytest.approx(-1.5)
    faded = {"s2": s2(-0.5, 0.0, -0.5, 0.0)}  # mean -0.25 < 1 x SE 0.5: released
    assert offsets(faded, RULES, s28_per_s2=2.0, outputs=BOTH, declared=DECLARED,
                   previous=held)["s2"].value == 0.0  # fmt: skip


def test_a_significant_but_small_mean_is_the_day_s_clinker_not_a_drift() -> None:
    # 20 results of -0.7: beyond 2 x SE (1 / sqrt(20) = 0.22) but below 0.75 x declared 1.0
    small = {"s2": s2(*([-0.7] * 20))}
    got = found(small, correction_results=20)
    assert got["s2"].value == 0.0 and got["s2"].source.endswith("within 0.75: 0")
    big = found({"s2": s2(*([-0.8] * 20))}, correction_results=20)
    assert big["s2"].value == pytest.approx(-0.8)
    lower = found(small, correction_results=20, correction_min_sigmas=0.5)
    assert lower["s2"].value == pytest.approx(-0.7)
