"""The truth loop over the local API, real HTTP on 127.0.0.1 and a real TruthLoop on quality.db:
per loop the model's standing against the lab in /status and /metrics, a step-down as an alarm
and as the loop's effective mode, and the operator's step-up and challenger promotion with
every refusal (issue 14).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.quality_api import ACTIVE, CHALLENGER, MODEL, T_NOW, degrade, quality_api

OK = {"operator": "ana", "reason": "lab re-calibrated, model checked"}


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def gauge(found: dict[str, Any], name: str, **labels: str) -> float | None:
    values = [s.value for s in found[name].samples
              if all(s.labels.get(k) == v for k, v in labels.items())]  # fmt: skip
    assert len(values) <= 1, (name, labels, values)
    return float(values[0]) if values else None


def loops(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lp["name"]: lp for lp in doc["loops"]}


async def test_status_shows_each_loop_against_the_lab_and_alarms_a_step_down(
    tmp_path: Path,
) -> None:
    async with quality_api(tmp_path) as rig, httpx.AsyncClient(base_url=rig.url) as client:
        await degrade(rig.truth, results=0)  # one prediction each, no lab result yet
        doc = (await client.get("/status")).json()
        assert doc["alarms"] == []
        sep = loops(doc)["separator"]
        assert (sep["mode"], sep["effective_mode"]) == ("closed_loop", "closed_loop")
        assert sep["quality"]["step_down"] is None
        assert sep["quality"]["tests"]["s2"]["n"] == 0
        assert sep["quality"]["tests"]["s2"]["bias"] is None  # no results: no figure, not 0

        await degrade(rig.truth)
        doc = (await client.get("/status")).json()
        sep, lime = loops(doc)["separator"], loops(doc)["limestone"]
        q = sep["quality"]
        assert (sep["mode"], sep["effective_mode"]) == ("closed_loop", "advisory")
        assert (q["model"], q["version"], q["product"]) == (MODEL, ACTIVE, "default")
        step = q["step_down"]
        assert (step["since"], step["model"], step["version"], step["test"]) == (
            T_NOW,
            MODEL,
            ACTIVE,
            "s2",
        )
        assert step["reason"].startswith("s2 bias -1.31 over ")
        s2 = q["tests"]["s2"]
        assert s2["n"] == 6
        assert s2["raw_bias"] == pytest.approx(-1.31)
        assert s2["raw_rmse"] == pytest.approx(1.31)
        assert s2["declared_rmse"] == 0.91
        assert s2["rmse_ratio"] == pytest.approx(s2["rmse"] / 0.91)
        assert s2["degraded"] is True
        assert q["offsets"]["s2"] == pytest.approx(-1.31)  # the correction in force
        assert (q["results_matched"], q["predictions_kept"]) == (6, 2 + 12)
        challenger = q["challenger"]
        assert (challenger["model"], challenger["version"]) == (MODEL, CHALLENGER)
        c2 = challenger["tests"]["s2"]
        assert c2["n"] == 6 and c2["raw_bias"] == pytest.approx(-0.11)
        assert c2["degraded"] is False
        assert lime["effective_mode"] == "closed_loop" and lime["quality"]["step_down"] is None
        (alarm,) = doc["alarms"]
        assert (alarm["kind"], alarm["loop"], alarm["effective_mode"]) == (
            "quality_step_down",
            "separator",
            "advisory",
        )
        assert alarm["reason"] == step["reason"]
        assert "edge-agent quality restore separator" in alarm["message"]


async def test_metrics_carry_bias_rmse_offsets_and_the_step_down(tmp_path: Path) -> None:
    async with quality_api(tmp_path) as rig, httpx.AsyncClient(base_url=rig.url) as client:
        await degrade(rig.truth)
        found = families((await client.get("/metrics")).text)
    active = {"loop": "separator", "role": "active", "test": "s2"}
    assert gauge(found, "edge_agent_quality_raw_bias", **active) == pytest.approx(-1.31)
    assert gauge(found, "edge_agent_quality_bias", **active) is not None
    assert gauge(found, "edge_agent_quality_rmse", **active) is not None
    assert gauge(found, "edge_agent_quality_declared_rmse", **active) == 0.91
    assert gauge(found, "edge_agent_quality_results_matched", **active) == 6
    assert gauge(found, "edge_agent_quality_degraded", **active) == 1
    shadow = {**active, "role": "challenger"}
    assert gauge(found, "edge_agent_quality_raw_bias", **shadow) == pytest.approx(-0.11)
    assert gauge(found, "edge_agent_quality_degraded", **shadow) == 0
    offset = gauge(found, "edge_agent_quality_offset", loop="separator", output="s2")
    assert offset == pytest.approx(-1.31)
    assert gauge(found, "edge_agent_loop_stepped_down", loop="separator") == 1
    assert gauge(found, "edge_agent_loop_stepped_down", loop="limestone") == 0
    # s28: declared, but no result yet: no bias sample at all (never a 0 that reads "unbiased").
    s28 = {**active, "test": "s28"}
    assert gauge(found, "edge_agent_quality_declared_rmse", **s28) == 1.8
    assert gauge(found, "edge_agent_quality_results_matched", **s28) == 0
    assert gauge(found, "edge_agent_quality_bias", **s28) is None
    assert gauge(found, "edge_agent_quality_rmse", **s28) is None


async def test_restore_steps_the_loop_back_up_once_audited_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    async with quality_api(tmp_path) as rig, httpx.AsyncClient(base_url=rig.url) as client:
        path = "/v1/loops/separator/quality/restore"
        answer = await client.post(path, json=OK)
        assert answer.status_code == 409  # not stepped down yet
        assert answer.json()["detail"] == "loop separator is not stepped down: nothing to restore"
        await degrade(rig.truth)

        for body, where in (({"reason": "x"}, "operator"), ({"operator": "ana", "reason": " "},
                            "reason"), (["ana"], "body")):  # fmt: skip
            answer = await client.post(path, json=body)
            assert answer.status_code == 422, body
            assert answer.json()["detail"].startswith(f"{where}: expected ")
        answer = await client.post(path, content=b"{not json")
        assert answer.status_code == 422
        answer = await client.post("/v1/loops/kiln/quality/restore", json=OK)
        assert answer.status_code == 404
        assert answer.json()["detail"] == (
            "loop 'kiln': not configured (the loops are: limestone, separator)"
        )
        assert rig.truth.step_down("separator") is not None  # every refusal changed nothing
        assert not [a for a in rig.audit if a[0] == "quality_step_up"]

        answer = await client.post(path, json=OK)
        assert answer.status_code == 200
        done = answer.json()
        assert (done["loop"], done["mode"], done["effective_mode"], done["operator"]) == (
            "separator",
            "closed_loop",
            "closed_loop",
            "ana",
        )
        assert done["restored"]["reason"].startswith("s2 bias -1.31")
        (up,) = [a for a in rig.audit if a[0] == "quality_step_up"]
        assert up[2] == "separator" and "ana" in str(up[1]) and OK["reason"] in str(up[1])
        doc = (await client.get("/status")).json()
        assert doc["alarms"] == []
        assert loops(doc)["separator"]["effective_mode"] == "closed_loop"

        again = await client.post(path, json=OK)
        assert again.status_code == 409
        assert len([a for a in rig.audit if a[0] == "quality_step_up"]) == 1


async def test_promote_calls_the_control_side_only_for_the_loops_challenger(
    tmp_path: Path,
) -> None:
    async with quality_api(tmp_path) as rig, httpx.AsyncClient(base_url=rig.url) as client:
        await degrade(rig.truth)
        path = "/v1/loops/separator/quality/promote"
        wrong = await client.post(path, json={**OK, "version": "9.9.9"})
        assert wrong.status_code == 409
        assert wrong.json()["detail"] == (
            f"loop separator: 9.9.9 is not its challenger; its challenger is {CHALLENGER}"
        )
        none = await client.post("/v1/loops/limestone/quality/promote",
                                 json={**OK, "version": CHALLENGER})  # fmt: skip
        assert none.status_code == 409
        assert "limestone" in none.json()["detail"] and "no challenger" in none.json()["detail"]
        missing = await client.post(path, json=OK)
        assert missing.status_code == 422
        assert missing.json()["detail"].startswith("version: expected a non-empty text")
        rig.refuse_promotion = "a write is in flight"
        refused = await client.post(path, json={**OK, "version": CHALLENGER})
        assert refused.status_code == 409
        assert refused.json()["detail"].endswith("refused: a write is in flight")
        assert rig.promoted == []

        rig.refuse_promotion = None
        done = await client.post(path, json={**OK, "version": CHALLENGER})
        assert done.status_code == 200
        assert done.json() == {"loop": "separator", "promoted": CHALLENGER, "previous": ACTIVE,
                               "operator": "ana"}  # fmt: skip
        assert rig.promoted == [("separator", CHALLENGER, "ana", OK["reason"])]


async def test_without_a_truth_loop_the_document_is_as_before(tmp_path: Path) -> None:
    async with (
        quality_api(tmp_path, with_quality=False) as rig,
        httpx.AsyncClient(base_url=rig.url) as client,
    ):
        await degrade(rig.truth)  # the truth loop exists, but the API was not given it
        doc = (await client.get("/status")).json()
        assert doc["alarms"] == []
        for lp in doc["loops"]:
            assert "quality" not in lp and "effective_mode" not in lp
        found = families((await client.get("/metrics")).text)
        assert "edge_agent_quality_bias" not in found
        assert "edge_agent_loop_stepped_down" not in found
        answer = await client.post("/v1/loops/separator/quality/restore", json=OK)
        assert answer.status_code == 503
        assert rig.truth.step_down("separator") is not None


async def test_promote_without_the_control_side_is_503(tmp_path: Path) -> None:
    async with (
        quality_api(tmp_path, with_promote=False) as rig,
        httpx.AsyncClient(base_url=rig.url) as client,
    ):
        answer = await client.post("/v1/loops/separator/quality/promote",
                                   json={**OK, "version": CHALLENGER})  # fmt: skip
        assert answer.status_code == 503
        assert "cannot promote" in answer.json()["detail"]
