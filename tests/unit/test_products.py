"""The product table: how a product makes its loops, what the file check refuses, and the
product state the PLC's product and silo tags give (issue 15)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.config.product_settings import Product, ProductSelection
from agent.config.products import model_pins, product_loop
from agent.control.product_switch import ProductSwitch
from agent.control.products import ProductTracker, Standing
from agent.domain.errors import ConfigError
from agent.domain.samples import BAD, GOOD, Sample
from tests.support.config import ConfigDoc

REPO = Path(__file__).resolve().parents[2]
SEL = ProductSelection(product_tag="ProductId", silo_tag="SiloId", transition_s=900.0)
CEM1 = Product(id=1, name="CEM I 42.5 R", silos=[1], limestone_min_pct=0, limestone_max_pct=5)
CEM2 = Product(id=2, name="CEM II/A-LL 42.5 R", silos=[2, 3])


def _demo(tmp_path: Path) -> ConfigDoc:
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    doc.set("agent.state_dir", str(tmp_path / "state"))
    doc.set("sync.enabled", False)
    if doc.has("product_selection"):  # the demo's own table: each test writes its own
        doc.remove("product_selection")
        doc.remove("products")
    names = {t["name"] for t in doc.get("tags")}
    address = "nsu=urn:edge-agent:demo:cement-mill;s=Plant/Mill1/"
    for tag in ("ProductId", "SiloId"):
        if tag not in names:  # the demo reads them already
            doc.append("tags", {"name": tag, "source": "mill", "address": address + tag})
    if doc.has("quality.products"):
        doc.remove("quality.products")
    return doc


def _problems(doc: ConfigDoc, path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(doc.write(path))
    return [p.render() for p in info.value.problems]


def test_a_product_overrides_model_envelope_and_objective(tmp_path: Path) -> None:
    doc = _demo(tmp_path)
    doc.add("product_selection", {"product_tag": "ProductId", "silo_tag": "SiloId"})
    doc.add("products", [
        {"id": 1, "name": "CEM I 42.5 R", "model": "vrm-quality-cem1", "model_version": "1.0.0",
         "objective": {"s28_target_mpa": 49.5}, "limestone_min_pct": 0, "limestone_max_pct": 5,
         "loops": [{"loop": "limestone", "envelope_min": 1.0, "envelope_max": 5.0,
                    "objective": {"risk_z": 1.5}}]},
        {"id": 2, "name": "CEM II/A-LL 42.5 R"},
    ])  # fmt: skip
    s = load_config(doc.write(tmp_path / "a.toml")).settings
    separator, limestone = s.loops
    made = product_loop(limestone, s.products[0])
    assert (made.model, made.model_version) == ("vrm-quality-cem1", "1.0.0")
    assert (made.envelope_min, made.envelope_max) == (1.0, 5.0)
    assert (made.objective.s28_target_mpa, made.objective.risk_z) == (49.5, 1.5)
    other = product_loop(separator, s.products[0])
    assert other.objective.risk_z == separator.objective.risk_z  # only the limestone loop's
    assert other.envelope_min == separator.envelope_min
    assert product_loop(separator, s.products[1]) == separator  # no override: the loop itself
    assert model_pins(s.loops, s.products) == {"vrm-quality": None, "vrm-quality-cem1": "1.0.0"}


def test_the_check_names_every_bad_product_entry(tmp_path: Path) -> None:
    doc = _demo(tmp_path)
    doc.add("product_selection", {"product_tag": "ProductID", "silo_tag": "SiloId"})
    doc.add("products", [
        {"id": 1, "name": "CEM I 42.5 R", "limestone_min_pct": 0, "limestone_max_pct": 5,
         "loops": [{"loop": "limestone", "envelope_min": 4.0, "envelope_max": 7.0},
                   {"loop": "limstone"}]},
        {"id": 1, "name": "CEM II", "objective": {"s28_target": 40.0}},
        {"id": 3, "name": "CEM III", "loops": [{"loop": "separator", "envelope_min": 990.0,
                                                "envelope_max": 950.0}]},
    ])  # fmt: skip
    doc.add("quality.products", [{"name": "CEM IV", "s28_per_s2": 2.0}])
    found = "\n".join(_problems(doc, tmp_path / "a.toml"))
    assert (
        "product_selection.product_tag: expected the name of a [[tags]] entry, found "
        "'ProductID'" in found
    )
    assert "products[1].id: expected a unique product id, found 1 also in products[0]" in found
    assert "products[0].loops[1].loop: expected the name of a [[loops]] entry" in found
    assert (
        "products[0].loops[0].envelope_min: expected loop 'limestone''s envelope inside "
        "the product's limestone range [0.0, 5.0] %, found [4, 7]" in found
    )
    assert (
        "products[2].loops[0]: expected overrides that keep loop 'separator' valid, "
        "found envelope_min below envelope_max" in found
    )
    assert "products[1].objective.s28_target: expected overrides that keep loop" in found
    assert "quality.products[0].name: expected the name of a [[products]] entry" in found


def test_products_without_a_selection_and_a_selection_without_products(tmp_path: Path) -> None:
    doc = _demo(tmp_path)
    doc.add("products", [{"id": 1, "name": "CEM I 42.5 R"}])
    assert any("product_selection: expected a [product_selection]" in p
               for p in _problems(doc, tmp_path / "a.toml"))  # fmt: skip
    doc = _demo(tmp_path)
    doc.add("product_selection", {"product_tag": "ProductId"})
    assert any("products: expected at least one [[products]] entry" in p
               for p in _problems(doc, tmp_path / "b.toml"))  # fmt: skip


def _id(tag: str, value: object, t: float, status: int = GOOD) -> Sample:
    return Sample(tag, t, value, status)  # type: ignore[arg-type]


def test_a_change_is_a_transition_then_the_new_product() -> None:
    tracker = ProductTracker(SEL, [CEM1, CEM2])
    assert tracker.state(0.0).standing is Standing.STOPPED  # nothing read yet
    tracker.observe([_id("ProductId", 2, 100.0), _id("SiloId", 2, 100.0)])
    assert tracker.state(999.0).standing is Standing.TRANSITION  # the first reading too
    state = tracker.state(1000.0)
    assert (state.standing, state.product) == (Standing.ACTIVE, CEM2)
    tracker.observe([_id("ProductId", 2, 5000.0)])  # the same id again (a Modbus poll)
    assert tracker.state(5001.0).standing is Standing.ACTIVE
    tracker.observe([_id("ProductId", 1, 6000.0), _id("SiloId", 1, 6000.0)])
    state = tracker.state(6899.0)
    assert (state.standing, state.product, state.until) == (Standing.TRANSITION, CEM1, 6900.0)
    assert tracker.state(6900.0).standing is Standing.ACTIVE
    # the material: CEM II until the transition ended, CEM I after
    assert tracker.product_at(6500.0) == CEM2.name
    assert tracker.product_at(7000.0) == CEM1.name
    assert tracker.product_at(500.0) is None  # before anything known was routed


@pytest.mark.parametrize(("pid", "silo", "status", "why"), [
    (7, 1, GOOD, "unknown product id 7 on ProductId: [[products]] lists 1, 2"),
    (1, 4, GOOD, "CEM I 42.5 R is going to silo 4; it may go to silos [1]"),
    (1.5, 1, GOOD, "ProductId is not a product id: 1.5"),
    (1, 1, BAD, "ProductId is not a product id: 1"),
])  # fmt: skip
def test_the_loops_stop_on_a_product_they_cannot_run(pid: object, silo: int, status: int,
                                                       why: str) -> None:  # fmt: skip
    tracker = ProductTracker(SEL, [CEM1, CEM2])
    tracker.observe([_id("ProductId", pid, 0.0, status), _id("SiloId", silo, 0.0)])
    state = tracker.state(10_000.0)
    assert state.standing is Standing.STOPPED
    assert state.reason.startswith(why)


def _switch(audit: list[tuple[str, dict[str, object]]]) -> ProductSwitch:
    base = load_config(REPO / "config" / "demo.toml", secrets=False).settings
    limestone = next(lp for lp in base.loops if lp.name == "limestone")

    async def record(kind: str, body: Mapping[str, object]) -> None:
        audit.append((kind, dict(body)))

    return ProductSwitch(limestone, SEL, [CEM1, CEM2], record)


async def test_the_switch_holds_through_a_change_and_starts_afresh_after_any_stop() -> None:
    audit: list[tuple[str, dict[str, object]]] = []
    switch = _switch(audit)
    switch.carried = CEM2.name  # the last record before the restart ran CEM II
    switch.observe([_id("ProductId", 2, 0.0), _id("SiloId", 2, 0.0)])
    step = await switch.step(1000.0)
    assert step.switch is not None and step.keep_baseline  # the same product as before
    assert [k for k, _ in audit] == ["product_switched"]
    assert switch.moved_on(1000.0) is None
    assert (await switch.step(1060.0)).switch is None  # nothing changed: nothing audited
    # CEM I: held through the transition, the recheck sees the change at once.
    switch.observe([_id("ProductId", 1, 2000.0), _id("SiloId", 1, 2000.0)])
    assert switch.moved_on(2000.0) is not None
    step = await switch.step(2000.0)
    assert step.hold is not None and step.switch is None
    assert (await switch.step(2100.0)).hold is not None
    assert [k for k, _ in audit] == ["product_switched", "product_change"]  # announced once
    step = await switch.step(2900.0)
    assert step.switch is not None and not step.keep_baseline
    # Back to CEM I after a stop (a Bad product tag): a switch again, a new baseline.
    switch.observe([_id("ProductId", 1, 3000.0, BAD)])
    assert (await switch.step(3000.0)).stop is not None
    assert (await switch.step(3060.0)).stop is not None
    assert [k for k, _ in audit].count("product_stopped") == 1  # once per reason
    switch.observe([_id("ProductId", 1, 3100.0)])  # the same id again: no transition ...
    step = await switch.step(4100.0)
    assert step.switch is not None and not step.keep_baseline  # ... but a fresh start


async def test_a_restart_on_another_product_takes_a_new_baseline() -> None:
    switch = _switch([])
    switch.carried = CEM2.name
    switch.observe([_id("ProductId", 1, 0.0), _id("SiloId", 1, 0.0)])
    step = await switch.step(1000.0)
    assert step.switch is not None and not step.keep_baseline


def test_a_product_cannot_make_a_loop_the_file_would_refuse(tmp_path: Path) -> None:
    doc = _demo(tmp_path)
    doc.set("loops[name=separator].mode", "shadow")
    doc.add("tags[name=ProductId].writable", True)
    doc.add("loops[name=limestone].quality", {"product": "CEM I 42.5 R"})
    doc.add("product_selection", {"product_tag": "ProductId"})
    doc.add("products", [
        {"id": 1, "name": "CEM I 42.5 R", "s28_lower_mpa": 42.5, "model_version": "1.0.0",
         "objective": {"s28_target_mpa": 40.0},
         "loops": [{"loop": "separator", "mode": "closed_loop", "envelope_max": 5000.0},
                   {"loop": "limestone", "model_version": "1.0.0"}]},
    ])  # fmt: skip
    found = "\n".join(_problems(doc, tmp_path / "a.toml"))
    assert "product_selection.product_tag: expected a read-only tag" in found
    assert "loops[1].quality.product: expected no fixed product" in found
    assert "products[0].model_version: expected model with it" in found
    assert "products[0].loops[1].model_version: expected model with it" in found
    assert (
        "products[0].loops[0].mode: expected at most loop 'separator''s own mode "
        "('shadow')" in found
    )
    assert (
        "products[0].objective.s28_target_mpa: expected a strength target at least the "
        "class's lower limit 42.5 MPa" in found
    )
    # the rules of [[loops]] (here the envelope inside the target's write limits), at the
    # product's key and naming the loop and the product
    assert (
        "products[0].loops[0].envelope_min: expected an envelope inside the tag's write "
        "limits [850, 1100]" in found
    )
    assert "(loop 'separator' while CEM I 42.5 R is ground)" in found
