"""A product change over OPC UA (issue 15 must-show): the simulated PLC switches from CEM II/A-LL
to CEM I and loads CEM I's recipe; the agent's loops hold through the transition (no write),
then run CEM I's model, target and envelope, and every step is in the audit log. An id the
table does not list stops the loops with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.control_rig import MODELS, Rig, control_rig, wait_for
from tests.support.config import ConfigDoc

pytestmark = pytest.mark.timeout(480)  # a hang guard: the waits (control_rig.BUSY) fail first

TIME_SCALE = 30.0
TRANSITION_S = 900.0 / TIME_SCALE  # the simulator's 15 min, in the agent's wall seconds
CEM1, CEM2 = "CEM I 42.5 R", "CEM II/A-LL 42.5 R"
ADDRESS = "nsu=urn:edge-agent:demo:cement-mill;s=Plant/Mill1/"


def _products(config: ConfigDoc) -> None:
    """Two products of the simulated mill, each with its own model, target and envelopes."""
    for key in ("product_selection", "products"):
        if config.has(key):
            config.remove(key)
    names = {t["name"] for t in config.get("tags")}
    for tag in ("ProductId", "SiloId"):
        if tag not in names:
            config.append("tags", {"name": tag, "source": "mill", "address": ADDRESS + tag})
    config.add("product_selection", {"product_tag": "ProductId", "silo_tag": "SiloId",
                                     "transition_s": TRANSITION_S})  # fmt: skip
    config.add("products", [
        {"id": 1, "name": CEM1, "silos": [1], "model": "vrm-quality-cem1",
         "limestone_min_pct": 0.0, "limestone_max_pct": 5.0,
         "objective": {"s28_target_mpa": 49.5},
         "loops": [{"loop": "limestone", "envelope_min": 1.0, "envelope_max": 5.0},
                   {"loop": "separator", "envelope_min": 900.0, "envelope_max": 1060.0}]},
        {"id": 2, "name": CEM2, "silos": [2, 3], "model": "vrm-quality",
         "limestone_min_pct": 6.0, "limestone_max_pct": 20.0},
    ])  # fmt: skip
    if config.has("quality.products"):
        config.set("quality.products", [{"name": CEM1, "s28_per_s2": 2.0},
                                        {"name": CEM2, "s28_per_s2": 2.0}])  # fmt: skip


def _switched(rig: Rig, product: str) -> list[dict[str, Any]]:
    return [r for r in rig.records("product_switched", "limestone") if r["product"] == product]


async def test_a_product_change_holds_the_loops_then_switches_everything(
    tmp_path: Path,
) -> None:
    async with control_rig(tmp_path, time_scale=TIME_SCALE, min_interval_s=2.0,
                           max_rate_per_h=1000.0, edit=_products, products=True) as rig:  # fmt: skip
        mill = rig.plant.mill
        await wait_for(lambda: _switched(rig, CEM2), 60, "the loops to run CEM II")
        mill.change_product(1, 1)
        await wait_for(lambda: _switched(rig, CEM1), 60 + TRANSITION_S, "the switch to CEM I")
        # The limestone loop moves inside CEM I's envelope: [1, 5] %, far from CEM II's.
        await wait_for(lambda: [r for r in rig.records("cycle", "limestone")
                                if r["seq"] > _switched(rig, CEM1)[0]["seq"]
                                and r["outcome"] == "write"], 60,
                       "a limestone cycle that wrote after the switch")  # fmt: skip
        records = rig.records(loop="limestone")
        separator = rig.records(loop="separator")
    change = next(r for r in records if r["kind"] == "product_change" and r["to"] == CEM1)
    switched = next(r for r in records if r["kind"] == "product_switched" and r["product"] == CEM1)
    assert change["from"] == CEM2 and change["silo"] == 1
    assert change["until"] == pytest.approx(change["since"] + TRANSITION_S)
    during = [r for r in records if change["seq"] < r["seq"] < switched["seq"]]
    assert not [r for r in during if r["kind"] == "setpoint_write"], during
    cycles = [r for r in during if r["kind"] == "cycle"]
    assert cycles, "the loop cycled during the transition"
    assert all(r["outcome"] == "hold" and r["product"]["state"] == "transition"
               and r["product"]["running"] == CEM2 and "model" not in r for r in cycles)  # fmt: skip
    # The switch names everything that changed; the writes after it keep to it.
    assert switched["model"] == "vrm-quality-cem1" and switched["envelope"] == [1.0, 5.0]
    assert switched["objective"]["s28_target_mpa"] == 49.5
    assert switched["baseline_kept"] is False
    after = [r for r in records if r["seq"] > switched["seq"]]
    writes = [r for r in after if r["kind"] == "setpoint_write"]
    assert writes and all(1.0 <= r["value"] <= 5.0 for r in writes), writes
    first = next(r for r in after if r["kind"] == "cycle")
    assert first["model"]["name"] == "vrm-quality-cem1"
    # The objective scores with CEM I's target: margin = s28 - risk_z x RMSE - 49.5.
    rmse = json.loads((MODELS / "vrm-quality-cem1" / "1.0.0" / "manifest.json").read_text())[
        "validation"
    ]["rmse"]["s28"]
    best = first["candidates"]["best"]
    assert best["strength_margin"] == pytest.approx(best["s28"] - 1.0 * rmse - 49.5, abs=1e-3)
    assert first["product"] == {**first["product"], "state": "active", "name": CEM1,
                                "running": CEM1, "silo": 1}  # fmt: skip
    # The separator loop held through the same transition and switched too.
    s_change = next(r for r in separator if r["kind"] == "product_change" and r["to"] == CEM1)
    s_switched = next(r for r in separator
                      if r["kind"] == "product_switched" and r["product"] == CEM1)  # fmt: skip
    assert not [r for r in separator if s_change["seq"] < r["seq"] < s_switched["seq"]
                and r["kind"] == "setpoint_write"]  # fmt: skip
    assert s_switched["envelope"] == [900.0, 1060.0]
    # Every write before the change was CEM II's: inside its envelope.
    before = [r for r in records if r["kind"] == "setpoint_write" and r["seq"] < change["seq"]]
    assert all(10.5 <= r["value"] <= 13.5 for r in before), before


async def test_an_unknown_product_stops_the_loops(tmp_path: Path) -> None:
    def only_cem1(config: ConfigDoc) -> None:
        _products(config)
        config.remove("products[id=2]")
        if config.has("quality.products"):
            config.set("quality.products", [{"name": CEM1, "s28_per_s2": 2.0}])

    async with control_rig(tmp_path, time_scale=TIME_SCALE, edit=only_cem1, products=True) as rig:
        why = "unknown product id 2 on ProductId: [[products]] lists 1"
        await wait_for(lambda: [r for r in rig.records("product_stopped", "separator")
                                if r["reason"] == why], 60, "the stop")  # fmt: skip
        await wait_for(lambda: len([r for r in rig.records("cycle", "separator")
                                    if r.get("reason") == f"product: {why}"]) >= 3, 60,
                       "three stopped cycles")  # fmt: skip
        records = rig.records(loop="separator")
    assert not [r for r in records if r["kind"] == "setpoint_write"]
    stopped = [r for r in records if r["kind"] == "cycle" and r.get("reason") == f"product: {why}"]
    assert all(r["outcome"] == "blocked" and r["verdicts"][-1]["gate"] == "product"
               for r in stopped)  # fmt: skip
    assert len(rig.records("product_stopped", "separator")) == 1  # audited once per reason
