"""Issue 15, the product campaign of `edge-agent evaluate`: the scenario's product changes reach
both runs at the same ticks (Mill.change_product, played by the EventPlayer), the headless agent
hears each change as it happens (ProductId/SiloId are delivered at the tick they change, as an
OPC UA subscription delivers them), holds through the transition and switches, audited, and the
report has one section per product ground, then the overall one."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.demo.evaluate.operator import Recipe
from agent.demo.evaluate.report import (
    Evaluation,
    evaluate_overall,
    evaluate_products,
    table_lines,
)
from agent.demo.evaluate.runs import run_agent, run_baseline
from agent.demo.evaluate.scenario import Scenario
from agent.demo.headless.config import rig_config
from agent.demo.headless.plant import SimPlant
from agent.demo.headless.rig import DAY, HeadlessRig
from agent.demo.mill import PRODUCT, Mill
from agent.demo.products import PRODUCTS, TRANSITION_S
from agent.domain.clock import FakeClock
from agent.domain.samples import Sample

pytestmark = pytest.mark.timeout(300)

SEED = 4
DAYS = 1.0
CAMPAIGN = ((0.25, 1, 1), (0.5, 3, 4), (0.75, 2, 3))
SCENARIO = Scenario("test-campaign", faults=(), campaign=CAMPAIGN,
                    description="three product changes in a day")  # fmt: skip


def _recipes() -> dict[str, Recipe]:
    from agent.demo.evaluate.scenario import recipes

    with tempfile.TemporaryDirectory(prefix="evaluate-recipes-") as folder:
        return recipes(load_config(rig_config(Path(folder), product=PRODUCT)).settings)


def test_a_product_change_reaches_the_agent_at_the_tick_it_happens() -> None:
    mill = Mill(SEED, dt=10.0)
    got: list[Sample] = []
    plant = SimPlant(mill, FakeClock(monotonic=0.0, now=mill.time), ["ProductId", "SiloId",
                     "FeedRate"], sinks=[got.extend], sample_s=60.0)  # fmt: skip
    plant.publish_all()
    plant.tick()
    changed = mill.time
    mill.change_product(3, 4)
    got.clear()
    plant.tick()
    assert not plant.sample_due  # not a sampling period's end: FeedRate waits
    assert [(s.tag, s.value, s.source_time) for s in got] == \
        [("ProductId", 3, changed), ("SiloId", 4, changed)]  # fmt: skip


async def test_the_campaign_reaches_both_runs_at_the_same_ticks(tmp_path: Path) -> None:
    table = _recipes()
    base = run_baseline(seed=SEED, days=DAYS, scenario=SCENARIO, recipes=table)
    rigs: list[HeadlessRig] = []
    agent = await run_agent(seed=SEED, days=DAYS, scenario=SCENARIO, folder=tmp_path,
                            recipes=table, on_rig=rigs.append)  # fmt: skip
    start = base.start
    expected = [(start + day * DAY, f"product {pid} to silo {silo}") for day, pid, silo in CAMPAIGN]
    assert base.events == agent.events == expected
    # the product ground, minute by minute, is the same in both runs and changes at those ticks
    timeline = [(r[0], r[1]) for r in base.rows]
    assert timeline == [(r[0], r[1]) for r in agent.rows]
    changes = [
        now for now, before in zip(timeline[1:], timeline, strict=False) if now[1] != before[1]
    ]
    assert changes == [(start + day * DAY, PRODUCTS[pid].name) for day, pid, _ in CAMPAIGN]
    # the operators loaded each product's recipe in both runs, at the change
    for run in (base, agent):
        loaded = [(a.time, a.product) for a in run.actions if a.kind == "recipe"]
        assert loaded[1:] == changes
    # the agent's loops heard every change at its time, held through the transition, switched
    (rig,) = rigs
    for loop in ("separator", "limestone"):
        heard = [r for r in rig.records("product_change") if r.get("loop", loop) == loop]
        assert [(r["to"], r["since"]) for r in heard][-3:] == \
            [(name, t) for t, name in changes]  # fmt: skip
        switched = [r["product"] for r in rig.records("product_switched")
                    if r.get("loop", loop) == loop]  # fmt: skip
        assert switched[-3:] == [name for _, name in changes]
    for t, _ in changes:
        assert not [w for w in rig.driver.writes if t <= w.time < t + TRANSITION_S]
    # one section per product ground, in the product table's order, then the overall one
    products = evaluate_products(base, agent, table)
    assert [p.product for p in products] == [p.name for p in PRODUCTS.values()]
    ev = Evaluation(DAYS, SEED, SCENARIO, base, agent, products, table,
                    evaluate_overall(base, agent, table, products))  # fmt: skip
    lines = table_lines(ev)
    titles = [line for line in lines if line.endswith(")") and " (" in line
              and not line.startswith(("saving", "goal", "production"))]  # fmt: skip
    assert [t.split(" (")[0] for t in titles] == [*(p.name for p in PRODUCTS.values()),
                                                  "all products"]  # fmt: skip
    assert all(p.baseline.n and p.agent.n for p in products)
    assert sum(1 for line in lines if line.startswith("saving: ")) == 4


def test_the_rig_keeps_the_product_table_and_drops_only_overrides_of_loops_left_out(
    tmp_path: Path,
) -> None:
    demo = load_config(Path(__file__).resolve().parents[2] / "config" / "demo.toml").settings
    settings = load_config(rig_config(tmp_path, product=PRODUCT, loops=["limestone"])).settings
    assert settings.product_selection == demo.product_selection is not None
    assert [p.model_dump(exclude={"loops"}) for p in settings.products] == \
        [p.model_dump(exclude={"loops"}) for p in demo.products]  # fmt: skip
    for mine, theirs in zip(settings.products, demo.products, strict=True):
        assert mine.loops == [lp for lp in theirs.loops if lp.loop == "limestone"]
    assert [lp.name for lp in settings.loops] == ["limestone"]
    tags = {t.name for t in settings.tags}
    assert {"ProductId", "SiloId"} <= tags
