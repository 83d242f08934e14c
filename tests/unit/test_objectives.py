"""Objectives as plug-ins: chosen by `[loops.objective] kind`, the cement mill's by default;
an unknown kind is a configuration error (exit 78); the cement mill objective's estimators,
constraints and cost, through the contract the control core uses (agent.objectives.base)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np
import pytest
from pydantic import BaseModel, Field, TypeAdapter

from agent.cli.main import main
from agent.config.messages import kinds_of
from agent.config.settings import CementMillObjective, Loop, ObjectiveSettings
from agent.objectives.base import Derived, Objective, Rows
from agent.objectives.cement_mill import CementMill
from agent.objectives.registry import REGISTRY, objective_for
from tests.support.config import ConfigDoc

REPO = Path(__file__).resolve().parents[2]


def _loop(**objective: object) -> Loop:
    return Loop.model_validate({
        "name": "sep", "model": "m", "target_tag": "SP", "envelope_min": 0.0,
        "envelope_max": 1.0, "max_step": 0.1, "strategy": "direct", "output": "y",
        **({"objective": objective} if objective else {}),
    })  # fmt: skip


def test_every_kind_the_schema_accepts_has_one_objective_in_the_registry() -> None:
    members = get_args(ObjectiveSettings)[0]
    classes = get_args(members) or (members,)  # a union of settings classes, or one class
    kinds = {get_args(c.model_fields["kind"].annotation)[0] for c in classes}
    assert kinds == set(REGISTRY)
    for cls in classes:
        objective = objective_for(cls())
        assert objective.kind == cls().kind


def test_a_table_without_kind_is_the_cement_mill_as_every_existing_file_says() -> None:
    assert _loop().objective == CementMillObjective()
    loop = _loop(s28_target_mpa=48.5)
    assert loop.objective.kind == "cement_mill" and loop.objective.s28_target_mpa == 48.5
    assert isinstance(objective_for(loop.objective), CementMill)


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: ConfigDoc) -> list[str]:
    doc.set("agent.state_dir", str(tmp_path / "state"))
    path = doc.write(tmp_path / "agent.toml")
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--config", str(path)])
    assert exit_info.value.code == 78
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err
    lines = [line.partition(": ")[2] for line in out.err.splitlines()[:-1]]  # without file:line
    return lines


def test_an_unknown_objective_kind_is_refused_with_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    doc.add("loops[name=separator].objective.kind", "concrete_batch")
    assert _check(tmp_path, capsys, doc) == [
        "loops[0].objective.kind: expected one of 'cement_mill', found 'concrete_batch'"
    ]


def test_a_bad_key_of_the_objective_is_named_by_its_path_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    doc.set("loops[name=limestone].objective.risk_z", -1.0)
    doc.add("loops[name=limestone].objective.s28_target", 48.0)
    problems = _check(tmp_path, capsys, doc)
    assert problems[0] == "loops[1].objective.risk_z: expected a number >= 0, found -1.0 (number)"
    assert problems[1].startswith(
        "loops[1].objective.s28_target: expected did you mean 's28_target_mpa'? one of the "
        "known keys: blaine_max_cm2g, blaine_min_cm2g,"
    )
    assert len(problems) == 2


def _cement(**settings: float) -> Objective:
    return objective_for(CementMillObjective.model_validate(settings))


def test_the_cement_objective_declares_what_it_needs_of_a_model() -> None:
    objective = _cement()
    assert objective.outputs == ("blaine", "residue45", "s28", "spec_energy")
    assert objective.inputs == ("feed_rate",)
    assert dict(objective.derived) == {
        "grindability": ("mill_power", "feed_rate", "product_fineness"),
        "blaine_bias": ("lab_blaine", "product_fineness"),
    }
    assert objective.effect == "s28"


def test_grindability_is_derived_from_the_estimator_means_or_imputed_without_them() -> None:
    objective = _cement()
    design = {"mill_power": 18.0 * 180.0, "feed_rate": 180.0, "product_fineness": 3800.0}
    assert objective.derive("grindability", design).value == pytest.approx(1.0)
    missing = objective.derive("grindability", {**design, "mill_power": None})
    assert (missing.value, missing.note) == (None, "no estimator data")
    with pytest.raises(KeyError, match="no feature 'separator_speed'"):
        objective.derive("separator_speed", design)


def test_the_blaine_bias_follows_each_new_lab_result_against_the_analyser() -> None:
    objective = _cement()
    analyser = {"product_fineness": 3800.0}
    asked: list[tuple[str, float, float]] = []

    def mean(feature: str, since: float, until: float) -> float | None:
        asked.append((feature, since, until))
        return analyser.get(feature)

    # Before any lab result: no bias known, so it is imputed (None), not a measured 0.0.
    assert objective.derive("blaine_bias", {}) == Derived(None, "no lab result yet")
    objective.observe("lab_blaine", 7200.0, 3850.0, mean)
    objective.observe("lab_blaine", 7200.0, 3990.0, mean)  # the same result delivered again
    bias = objective.derive("blaine_bias", {})
    assert (bias.value, bias.note) == (50.0, "1 lab results")
    # The analyser is read over the hour the composite describes, ending at its source time;
    # the next composite began where the last one ended.
    analyser.clear()  # no analyser data for the hour: the lab result cannot be compared
    objective.observe("lab_blaine", 9000.0, 4000.0, mean)
    assert asked == [("product_fineness", 3600.0, 7200.0), ("product_fineness", 7200.0, 9000.0)]
    assert objective.derive("blaine_bias", {}).value == 50.0


def test_every_observed_feature_feeds_a_derived_one_and_its_history_is_declared() -> None:
    # `check` judges the loop inputs of the derived features: an observed feature outside
    # them would escape it; a feature read through `mean` needs its history declared.
    for kind in REGISTRY:
        objective = objective_for(TypeAdapter(ObjectiveSettings).validate_python({"kind": kind}))
        needed = {f for needs in objective.derived.values() for f in needs}
        assert objective.observes <= needed, kind
        assert set(objective.history_s) <= needed, kind
        assert all(s > 0 for s in objective.history_s.values()), kind


def test_the_message_layer_reads_the_kinds_from_the_schema_union() -> None:
    class A(BaseModel):
        kind: Literal["a"] = "a"

    class B(BaseModel):
        kind: Literal["b"] = "b"

    two = Annotated[A | B, Field(discriminator="kind")]
    assert kinds_of(two) == {"a": A, "b": B}  # the next objective needs no second list
    kinds = kinds_of(ObjectiveSettings)
    assert set(kinds) == set(REGISTRY)
    assert all(cls.model_fields["kind"].default == kind for kind, cls in kinds.items())


def test_a_kind_that_is_no_text_is_reported_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    doc.add("loops[name=separator].objective.kind", 5)
    assert _check(tmp_path, capsys, doc) == [
        "loops[0].objective.kind: expected one of 'cement_mill', found 5"
    ]


def test_the_cement_score_holds_strength_with_margin_and_counts_co2() -> None:
    objective = _cement(s28_target_mpa=47.5, risk_z=1.0)
    # columns: limestone_share, feed_rate; outputs: blaine, residue45, s28, spec_energy
    grid = np.array([[13.0, 180.0], [12.0, 180.0]])
    y = np.array([[3800.0, 4.0, 48.9, 18.0], [3800.0, 4.0, 49.5, 0.0]])
    rows = Rows(grid, y, grid[-1], {"limestone_share": 0, "feed_rate": 1},
                {"blaine": 0, "residue45": 1, "s28": 2, "spec_energy": 3}, {"s28": 1.5})  # fmt: skip
    s = objective.score(rows)
    assert s.margin.tolist() == pytest.approx([-0.1, 0.5])
    assert s.constraints["strength"].tolist() == [False, True]
    assert s.usable.tolist() == [True, False]  # no specific energy: no capacity to judge
    assert s.metrics["co2_per_t"][0] == pytest.approx(0.87 * 830.0 + 18.0 * 0.4)
    assert s.metrics["capacity"][0] == pytest.approx(3800.0 / 18.0)
    assert s.constraints["capacity"].tolist() == [True, False]
    assert math.isfinite(float(s.cost[0])) and s.headline == ("co2_per_t", "s28")
