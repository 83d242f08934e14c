"""The simulated mill's products (plant-model 4.1): recipes, product changes, the transition the
lab sees, the strength level of each product at its recipe, and unknown ids refused."""

from __future__ import annotations

import zoneinfo

import pytest

from agent.demo.backfill import backfill
from agent.demo.lab_export import render
from agent.demo.mill import PRODUCT, Mill
from agent.demo.products import PRODUCTS, TRANSITION_S, by_id
from agent.demo.tags import HOUR

TICKS_PER_MIN = 600  # dt 0.1 s
CEM1, CEM2A, CEM2B = (by_id(i) for i in (1, 2, 3))


def _minutes(mill: Mill, minutes: float) -> None:
    mill.step(round(minutes * TICKS_PER_MIN))


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "local"])
def test_a_product_change_loads_the_recipe(remote: bool) -> None:
    mill = Mill(0, noise=False, wd_timeout_s=1e9)  # remote stays active: nobody beats here
    if not remote:
        mill.operator("remote_enable", value=False)
    _minutes(mill, 5)
    assert mill.read("RemoteActive").value is remote
    t_change = mill.time
    mill.change_product(3, 4)
    assert (mill.product, mill.products.product.id, mill.products.silo_id) == (CEM2B.name, 3, 4)
    for tag, value in (("ProductId", 3), ("SiloId", 4)):
        reading = mill.read(tag)
        assert (reading.value, reading.status, reading.source_time) == (value, "Good", t_change)
    # The remote setpoints are published at once (the agent reads what the PLC holds).
    assert mill.read("SeparatorSpeedSetpoint").value == CEM2B.separator_rpm
    assert mill.read("LimestoneShareSetpoint").value == CEM2B.limestone_pct
    _minutes(mill, 30)  # the PLC ramps (limestone 0.05 %/s: 5 min for 15 %-points)
    assert mill.read("SeparatorSpeedSetpointEffective").value == CEM2B.separator_rpm
    truth = mill.truth()
    assert truth["LS"] == pytest.approx(CEM2B.limestone_pct, abs=1e-6)
    assert truth["GY"] == pytest.approx(CEM2B.gypsum_pct, abs=1e-6)
    assert mill.read("GypsumShare").value == pytest.approx(CEM2B.gypsum_pct, abs=1e-6)
    # In local mode the effective setpoints follow the operator's: the recipe was loaded there.
    assert mill.read("RemoteActive").value is remote


def test_the_lab_names_the_old_product_until_the_transition_ends() -> None:
    mill = Mill(0, noise=False)
    _minutes(mill, 50)  # 00:50: the hourly sample of 01:00 is still the old material
    t_change = mill.time
    mill.change_product(1, 1)
    assert mill.product == CEM1.name  # ground now...
    assert mill.products.routed(t_change + TRANSITION_S - 1.0) is CEM2A  # ...not yet in the lab
    assert mill.products.routed(t_change + TRANSITION_S) is CEM1
    _minutes(mill, 5 * 60)
    blaine = [r for r in mill.lab_results() if r.test == "blaine"]
    assert [r.product for r in blaine][:3] == [CEM2A.name, CEM1.name, CEM1.name]
    for r in mill.lab_results():
        routed_new = r.sample_time >= t_change + TRANSITION_S
        assert r.product == (CEM1.name if routed_new else CEM2A.name), r
    # The LIMS CSV export names the product of each sample in its product column.
    text = render(blaine[:2], zoneinfo.ZoneInfo("UTC"))
    assert [line.split(";")[3] for line in text.splitlines()[1:]] == [CEM2A.name, CEM1.name]


def test_the_transition_time_is_the_mills_to_choose() -> None:
    mill = Mill(0, noise=False, transition_s=2 * HOUR)
    _minutes(mill, 50)
    mill.change_product(3, 4)
    _minutes(mill, 4 * 60)
    names = [r.product for r in mill.lab_results() if r.test == "blaine"]
    # windows ending 01:00 and 02:00 (< 00:50 + 2 h) are the old product, 03:00 the new
    assert names[:3] == [CEM2A.name, CEM2A.name, CEM2B.name]


@pytest.mark.parametrize("pid", sorted(PRODUCTS))
def test_each_product_sits_near_its_target_at_its_recipe(pid: int) -> None:
    p = by_id(pid)
    started = Mill(0, noise=False, product=p.name)  # starts at the recipe's steady state
    changed = Mill(0, noise=False)
    _minutes(changed, 1)  # the watchdog (nobody beats) put the PLC in local mode
    changed.change_product(p.id, p.silos[0])  # ...and a change settles on the same state
    _minutes(started, 60)
    _minutes(changed, 3 * 60)
    s28, s2 = started.truth()["S28"], started.truth()["S2"]
    low, high = {1: (51.0, 52.0), 2: (50.5, 51.5), 3: (39.0, 40.0)}[p.id]
    assert low <= s28 <= high
    assert p.s28_lower_mpa + 5.0 <= s28 <= p.s28_upper_mpa
    assert s2 >= p.s2_lower_mpa + 5.0
    assert started.truth()["CF"] == pytest.approx(p.clinker_factor, abs=1e-9)
    for name in ("S28", "S2", "S7", "B", "B_eff", "R45", "LS", "GY", "CF", "P", "dp", "e_ss"):
        assert changed.truth()[name] == pytest.approx(started.truth()[name], abs=1e-6), name


def test_the_default_product_is_todays_mill() -> None:
    mill = Mill(0, noise=False)
    assert (mill.product, mill.read("ProductId").value, mill.read("SiloId").value) == (
        PRODUCT, 2, 2)  # fmt: skip
    assert (CEM2A.name, CEM2A.limestone_pct, CEM2A.clinker_factor) == (PRODUCT, 12.0, 0.83)
    truth = mill.truth()
    assert (truth["S28"], truth["S2"], truth["B"], truth["CF"]) == (51.0, 25.5, 3800.0, 0.83)


def test_unknown_ids_are_refused_and_change_nothing() -> None:
    mill = Mill(0, noise=False)
    _minutes(mill, 1)
    with pytest.raises(ValueError, match=r"unknown product id 7; known: 1 \(CEM I 42.5 R\)"):
        mill.change_product(7, 1)
    with pytest.raises(ValueError, match=r"unknown silo id 9; the mill's silos are 1, 2, 3, 4"):
        mill.change_product(1, 9)
    with pytest.raises(ValueError, match="product id must be an integer"):
        mill.change_product(True, 1)
    assert (mill.read("ProductId").value, mill.read("SiloId").value, mill.product) == (
        2, 2, PRODUCT)  # fmt: skip
    assert mill.read("LimestoneShareSetpoint").value == 12.0
    with pytest.raises(ValueError, match=r"unknown product 'CEM V'"):
        Mill(0, product="CEM V")


def test_a_product_may_go_to_another_products_silo() -> None:
    """The plant can misroute; the agent must notice it (so the simulator allows it)."""
    mill = Mill(0, noise=False)
    mill.change_product(1, 4)
    assert (mill.read("ProductId").value, mill.read("SiloId").value) == (1, 4)


def test_the_backfill_excites_around_the_products_recipe() -> None:
    data = backfill(2.0, seed=3, product_id=3)
    assert set(data["ProductId"]) == {3.0}
    assert set(data["SiloId"]) == {4.0}
    ls = data["LimestoneShareSetpoint"]
    sep = data["SeparatorSpeedSetpoint"]
    assert 25.0 <= ls.min() <= ls.max() <= 29.0 and ls.max() > ls.min()
    assert 820.0 <= sep.min() < sep.max() <= 1020.0
    assert abs(float(data["S28"].mean()) - 39.5) < 2.0
