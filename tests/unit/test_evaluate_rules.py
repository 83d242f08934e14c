"""Issue 15: the rules of `edge-agent evaluate` as pure functions: a saving counts only at equal
conformity (plant-model 4.5), the goal, the per-product figures, and what one 2-day result asks
of the operators (agent.demo.evaluate.figures, agent.demo.evaluate.operator)."""

from __future__ import annotations

import math

import pytest

from agent.demo.evaluate.figures import (
    ProductFigures,
    equal_conformity,
    goal,
    overall_figures,
    product_figures,
)
from agent.demo.evaluate.operator import Recipe, correction, recipe_point
from agent.demo.evaluate.scenario import SCENARIOS
from agent.demo.lab_record import LabRecord
from agent.demo.products import DEFAULT_PRODUCT_ID, PRODUCTS

P = "CEM II/A-LL 42.5 R"


def figs(
    share: float, minimum: float, cf: float, kwh: float = 30.0, n: int = 100
) -> ProductFigures:
    return ProductFigures(P, 42.5, n, share, minimum, 48.0, 2.0, cf, kwh, 1000.0)


def test_a_saving_counts_at_equal_or_better_conformity_with_none_below_the_limit() -> None:
    base, agent = figs(1.0, 43.0, 0.83, 30.0), figs(1.0, 43.5, 0.81, 31.0)
    saving = equal_conformity(base, agent)
    assert saving.counts
    expected = (850 * 0.83 + 0.4 * 30.0) - (850 * 0.81 + 0.4 * 31.0)
    assert saving.co2_kg_t == pytest.approx(expected)
    assert saving.cf_points == pytest.approx(2.0)
    assert saving.why.startswith(f"at equal conformity: {expected:.1f} kg CO2/t saved")
    # a baseline with results below the limit: the agent needs its share and none below
    assert equal_conformity(figs(0.97, 41.0, 0.83), figs(0.98, 42.6, 0.82)).counts


def test_no_saving_when_conformity_is_worse_or_the_worst_case_is() -> None:
    worse = equal_conformity(figs(1.0, 43.0, 0.83), figs(0.99, 42.0, 0.80))
    assert not worse.counts and math.isnan(worse.co2_kg_t)
    assert worse.why.startswith("no saving claimed: conformity is worse with the agent (99.0%")
    # below the limit where the baseline is not: the agent's worst case is worse
    below = equal_conformity(figs(1.0, 42.6, 0.83), figs(1.0, 42.4, 0.80))
    assert not below.counts
    assert below.why == ("no saving claimed: a 28-day result with the agent is below the lower "
                         "limit and below the baseline's worst (the minimum 42.4 MPa against "
                         "minimum 42.6 MPa)")  # fmt: skip
    lower = equal_conformity(figs(0.95, 40.0, 0.83), figs(0.97, 39.9, 0.80))
    assert not lower.counts and "(the minimum 39.9 MPa against minimum 40.0 MPa)" in lower.why
    empty = equal_conformity(figs(math.nan, math.nan, 0.83, n=0), figs(1.0, 44.0, 0.80))
    assert not empty.counts and "no 28-day results" in empty.why


def test_a_baseline_below_the_limit_cannot_ask_none_below_of_the_agent() -> None:
    """plant-model 4.5's "none below" is the agent's share and worst case against a baseline
    that itself has results below the limit: at least its share, its minimum not lower."""
    assert equal_conformity(figs(0.95, 40.0, 0.83), figs(0.97, 41.9, 0.80)).counts
    assert equal_conformity(figs(0.95, 40.0, 0.83), figs(0.95, 40.0, 0.80)).counts
    assert not equal_conformity(figs(0.95, 40.0, 0.83), figs(0.94, 42.6, 0.80)).counts


def _fig(product: str, lower: float, cf: float, kwh: float, tonnes: float) -> ProductFigures:
    return ProductFigures(product, lower, 1, 1.0, lower, lower, 0.0, cf, kwh, tonnes)


def test_overall_figures_weigh_products_by_the_same_tonnes_and_each_result_by_its_limit() -> None:
    lowers = {P: 42.5, "B": 32.5}
    results = [_lab(P, 44.0), _lab(P, 42.0), _lab("B", 33.0), _lab("B", 32.5), _lab("x", 1.0)]
    per = [_fig(P, 42.5, 0.80, 30.0, 300.0), _fig("B", 32.5, 0.60, 20.0, 100.0)]
    f = overall_figures(per, results, lowers)
    assert f.overall and (f.n, f.share_ok, f.minimum) == (4, 0.75, -0.5)
    assert f.clinker_factor == pytest.approx((300 * 0.80 + 100 * 0.60) / 400)
    assert f.kwh_t == pytest.approx((300 * 30.0 + 100 * 20.0) / 400)
    same_mix = overall_figures(per, results, lowers, {P: 100.0, "B": 100.0})
    assert same_mix.clinker_factor == pytest.approx(0.70)
    agent = overall_figures([_fig(P, 42.5, 0.78, 30.0, 300.0), _fig("B", 32.5, 0.60, 20.0, 100.0)],
                            [_lab(P, 44.0), _lab(P, 43.0), _lab("B", 33.0), _lab("B", 32.0)],
                            lowers)  # fmt: skip
    saving = equal_conformity(f, agent)
    assert saving.counts and saving.cf_points == pytest.approx(1.5)
    worse = equal_conformity(f, overall_figures(per, [*results, _lab("B", 31.0)], lowers))
    assert worse.why.startswith("no saving claimed: conformity is worse with the agent (60.0% of "
                                "28-day results >= their product's lower limit")  # fmt: skip
    empty = equal_conformity(figs(math.nan, math.nan, 0.83, n=0), figs(1.0, 44.0, 0.80))
    assert not empty.counts and "no 28-day results" in empty.why


def test_the_goal_needs_equal_conformity_and_two_points_of_clinker() -> None:
    assert goal(equal_conformity(figs(1.0, 43.0, 0.83), figs(1.0, 43.0, 0.81)))[0]
    met, why = goal(equal_conformity(figs(1.0, 43.0, 0.83), figs(1.0, 43.0, 0.815)))
    assert not met and "1.50 %-points below" in why
    met, why = goal(equal_conformity(figs(1.0, 43.0, 0.83), figs(1.0, 43.0, 0.835)))
    assert not met and "0.50 %-points above the baseline's" in why
    assert not goal(equal_conformity(figs(1.0, 43.0, 0.83), figs(0.9, 40.0, 0.75)))[0]


def _lab(product: str, value: float) -> LabRecord:
    return LabRecord(
        "S-1", 0.0, 14400.0, product, "s28", value, "MPa", 0.0, "LabStrength28d", value
    )


def test_product_figures_weight_by_production_and_keep_products_apart() -> None:
    rows = [(0.0, P, 100.0, 0.80, 3000.0, 0, 0, 0), (60.0, P, 300.0, 0.84, 6000.0, 0, 0, 0),
            (120.0, "other", 200.0, 0.50, 1.0, 0, 0, 0), (180.0, P, 0.0, 0.10, 400.0, 0, 0, 0)]  # fmt: skip
    results = [_lab(P, 44.0), _lab(P, 42.0), _lab(P, 46.0), _lab("other", 10.0)]
    f = product_figures(P, 42.5, rows, results, 60.0)
    assert (f.n, f.minimum, f.mean) == (3, 42.0, 44.0)
    assert f.share_ok == pytest.approx(2 / 3)
    assert f.sd == pytest.approx(2.0)
    assert f.clinker_factor == pytest.approx((100 * 0.80 + 300 * 0.84) / 400)  # not stopped
    assert f.kwh_t == pytest.approx(9000.0 / 400.0)
    assert f.co2_t == pytest.approx(850 * f.clinker_factor + 0.4 * f.kwh_t)


RECIPE = Recipe(2, P, 42.5, 48.0, 51.0, 12.0, 950.0, 0.83, (10.5, 13.5), (880.0, 1040.0))


def test_the_recipe_spends_limestone_first_then_the_separator_inside_the_window() -> None:
    ls, n = recipe_point(RECIPE)
    assert (ls, n) == (13.5, 880.0)  # 48 MPa is below what the window allows
    wide = Recipe(2, P, 42.5, 48.0, 51.0, 12.0, 950.0, 0.83, (6.0, 20.0), (850.0, 1100.0))
    ls, n = recipe_point(wide)
    assert n == 950.0 and wide.expected_s28(ls, n) == pytest.approx(48.0, abs=0.01)


def test_a_2_day_result_asks_for_the_separator_first_and_limestone_when_far_off() -> None:
    expected = 24.0
    assert correction(23.5, expected, 12.0, 950.0, RECIPE)[:2] == (12.0, 950.0)  # dead band
    assert correction(22.9, expected, 12.0, 950.0, RECIPE)[:2] == (12.0, 970.0)  # low: finer
    assert correction(21.9, expected, 12.0, 950.0, RECIPE)[:2] == (11.0, 970.0)  # far: + clinker
    assert correction(25.1, expected, 12.0, 950.0, RECIPE)[:2] == (12.0, 930.0)  # high: coarser
    assert correction(22.9, expected, 12.0, 1040.0, RECIPE)[:2] == (11.0, 1040.0)  # at the edge
    ls, n, why = correction(25.5, expected, 13.5, 880.0, RECIPE)
    assert (ls, n) == (13.5, 880.0) and why.endswith("both levers at the edge")


def test_the_default_campaign_is_a_week_of_shifts_repeated_over_the_run() -> None:
    scenario = SCENARIOS["default"]
    changes = scenario.changes(28.0)
    assert len(changes) == 4 * len(scenario.campaign) and changes[:4] == list(scenario.campaign)
    assert all(day == pytest.approx(round(day * 3) / 3) for day, _, _ in changes)  # shifts
    assert all(silo in PRODUCTS[pid].silos for _, pid, silo in changes)
    days: dict[int, float] = {}
    product, since = DEFAULT_PRODUCT_ID, 0.0
    for day, pid, _ in (*scenario.changes(7.0), (7.0, DEFAULT_PRODUCT_ID, 2)):
        days[product] = days.get(product, 0.0) + day - since
        product, since = pid, day
    assert days == pytest.approx({2: 11 / 3, 1: 2.0, 3: 4 / 3})  # a week, starting on product 2
    assert max(day for day, _, _ in scenario.changes(3.0)) < 3.0
