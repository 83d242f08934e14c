"""Issue 15, the operator baseline of plant-model 4.5 on the simulated mill: a low 2-day result
leads to a correction (separator +20 rpm, limestone -1 %-point when far off) applied one shift
(8 h) after the result was entered, through the operators' local setpoints; never "nobody
reacts". The recipe sheets are the simulator's product table with the plant's estimate of
their strength, which a noise-free mill confirms."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.demo.evaluate.operator import (
    LIMESTONE,
    SEPARATOR,
    Action,
    Operator,
    Recipe,
    recipe_point,
)
from agent.demo.evaluate.scenario import recipes
from agent.demo.headless.config import rig_config
from agent.demo.mill import PRODUCT, Mill
from agent.demo.products import PRODUCTS

DAY = 86400.0
SHIFT_S = 8 * 3600.0  # plant-model 4.5: applied a shift later
RECIPE = Recipe(2, PRODUCT, 42.5, 48.0, 51.0, 12.0, 950.0, 0.83, (10.5, 13.5), (880.0, 1040.0))


def test_a_low_2_day_result_is_corrected_a_shift_later() -> None:
    mill = Mill(2, dt=10.0)
    operator = Operator(mill, {PRODUCT: RECIPE})
    operator.start(remote_after=False)
    ls0, n0 = recipe_point(RECIPE)
    mill.inject("clinker_reactivity", mpa=-5.0)  # every 2-day result about 2.5 MPa low
    mill.step(12)  # two minutes: the PLC ramps the effective setpoints to the recipe
    corrections: list[Action] = []
    while not corrections and mill.time < mill.raw_source_times()[0] + 4 * DAY:
        mill.step(1)
        operator.tick()
        corrections = [a for a in operator.actions if a.kind == "correction"]
        if not corrections:
            assert mill.read("SeparatorSpeedSetpointEffective").value == n0
    (done,) = corrections
    first = next(r for r in mill.lab_results() if r.test == "s2")
    assert done.time == pytest.approx(first.entry_time + SHIFT_S, abs=mill.dt)
    assert (done.limestone, done.separator) == (ls0 - 1.0, n0 + 20.0)
    assert "low" in done.why
    mill.step(12)  # two minutes: the PLC ramps the effective setpoints to the new local ones
    assert mill.read("SeparatorSpeedSetpointEffective").value == n0 + 20.0
    assert mill.truth()["LS"] == pytest.approx(ls0 - 1.0, abs=0.01)


def _recipes() -> dict[str, Recipe]:
    """The evaluation's recipe sheets, from the demo configuration as the command loads it."""
    with tempfile.TemporaryDirectory(prefix="evaluate-recipes-") as folder:
        return recipes(load_config(rig_config(Path(folder), product=PRODUCT)).settings)


def _s28_after(mill: Mill, hours: float = 12.0) -> float:
    mill.step(round(hours * 3600.0 / mill.dt))
    return mill.truth()["S28"]


def test_the_recipe_sheets_are_the_simulators_product_table() -> None:
    sheets = _recipes()
    assert [(r.product_id, r.name) for r in sheets.values()] == \
        [(p.id, p.name) for p in PRODUCTS.values()]  # fmt: skip
    for p in PRODUCTS.values():
        r = sheets[p.name]
        assert (r.limestone_reference_pct, r.separator_reference_rpm) == \
            (p.recipe[LIMESTONE], p.recipe[SEPARATOR])  # fmt: skip
        assert r.clinker_factor_reference == p.clinker_factor
        assert (r.s28_lower_mpa, r.s28_target_mean_mpa) == (p.s28_lower_mpa, p.s28_target_mean_mpa)
        lo, hi = r.limestone_window
        assert p.limestone_min_pct <= lo <= hi <= p.limestone_max_pct


@pytest.mark.parametrize("product_id", sorted(PRODUCTS))
def test_the_recipe_sheet_expects_what_a_noise_free_mill_grinds(product_id: int) -> None:
    """The plant's estimate against the simulator without noise (nominal clinker, no drift):
    at the PLC's recipe, at the operators' recipe point, and after a product change to it
    (the campaign's way in). Within 0.1 MPa, far inside the ~1 MPa the baseline needs."""
    p = PRODUCTS[product_id]
    sheet = _recipes()[p.name]
    at_recipe = _s28_after(Mill(0, dt=10.0, noise=False, product=p.name))
    assert at_recipe == pytest.approx(sheet.s28_at_recipe_mpa, abs=0.1)
    mill = Mill(0, dt=10.0, noise=False, product=p.name)
    Operator(mill, {p.name: sheet}).start(remote_after=False)
    point = recipe_point(sheet)
    assert sheet.expected_s28(*point) == pytest.approx(p.s28_target_mean_mpa, abs=0.01)
    assert _s28_after(mill) == pytest.approx(p.s28_target_mean_mpa, abs=0.1)
    other = next(q for q in PRODUCTS.values() if q.id != product_id)
    mill = Mill(0, dt=10.0, noise=False, product=other.name)
    operator = Operator(mill, _recipes())
    operator.start(remote_after=False)
    mill.step(360)
    mill.change_product(product_id, p.silos[-1])
    operator.product_changed(mill.product)
    assert _s28_after(mill) == pytest.approx(p.s28_target_mean_mpa, abs=0.1)


def test_a_result_of_a_product_ground_earlier_corrects_its_recipe_for_the_next_campaign() -> None:
    """The 2-day result arrives two days after its production, during another product's
    campaign: the operators correct that product's recipe book, loaded at its next change."""
    sheets = _recipes()
    mill = Mill(2, dt=10.0)
    operator = Operator(mill, sheets)
    operator.start(remote_after=False)
    ls0, n0 = recipe_point(sheets[PRODUCT])
    mill.inject("clinker_reactivity", mpa=-5.0)  # every 2-day result about 2.5 MPa low
    mill.step(round(0.5 * DAY / mill.dt))
    mill.change_product(1, 1)
    operator.product_changed(mill.product)
    while (
        not [a for a in operator.actions if a.kind == "book"]
        and mill.time < mill.raw_source_times()[0] + 4 * DAY
    ):
        mill.step(1)
        operator.tick()
    (book,) = [a for a in operator.actions if a.kind == "book"]
    assert (book.product, book.limestone, book.separator) == (PRODUCT, ls0 - 1.0, n0 + 20.0)
    assert "low" in book.why and book.why.endswith("for its next campaign")
    assert not [a for a in operator.actions if a.kind == "correction"]  # product 1: too early
    mill.change_product(2, 3)
    operator.product_changed(mill.product)
    assert (operator.actions[-1].kind, operator.actions[-1].limestone) == ("recipe", ls0 - 1.0)
    mill.step(12)
    assert mill.read("SeparatorSpeedSetpointEffective").value == n0 + 20.0


def test_a_tripped_mill_is_restarted_an_hour_later_in_local_control_on_the_recipe() -> None:
    sheets = _recipes()
    mill = Mill(2, dt=10.0)
    operator = Operator(mill, sheets, hand_back=True)
    operator.start(remote_after=True)
    mill.step(6)
    mill.inject("trip")
    tripped = mill.time
    while mill.read("Running").value is False and mill.time < tripped + DAY:
        mill.step(1)
        operator.tick()
    (restart,) = [a for a in operator.actions if a.kind == "restart"]
    assert restart.time == pytest.approx(tripped + 3600.0, abs=mill.dt)
    assert "tripped (fault)" in restart.why
    assert mill.read("RemoteActive").value is False  # the operators run it until a change
    assert (operator.actions[-1].kind, operator.actions[-1].limestone) == \
        ("recipe", recipe_point(sheets[PRODUCT])[0])  # fmt: skip
