"""A challenger model end to end: the real agent on the simulated mill over OPC UA runs the
demo model (1.0.0) and, in shadow, a challenger (1.1.0) on the same features; the mill's lab
results judge both; the operator promotes the challenger over the local API (the
`edge-agent quality promote` command, as a subprocess); the promotion holds across a restart.

The challenger is the demo graph with a known constant added to each output (OFFSET), so its
shadow prediction must differ from the active one by exactly OFFSET at every cycle, and, judged
against the same lab results over the same windows, its raw bias must be the active one's minus
OFFSET: the comparison shows that both really were scored on the same results.

Time: the mill runs TIME_SCALE x faster than the wall clock, its lab LAB_TIME_SCALE x faster
again (an hourly Blaine composite is HOUR_WALL s of wall time, entered 45 min / LAB_TIME_SCALE
of plant time after its hour). The agent runs on the wall clock, and the compressed plant maps
its time to the wall clock only in the OPC UA SourceTimestamps; the `<Tag>SampleTime` tags
hold plant time (2026-01-01 on), which no wall-clock prediction window can meet. So the lab
tags are read without `sample_time_tag` (a result's sample time is its value's
SourceTimestamp: its window's end, mapped to the wall clock) and each window is its plant
window / TIME_SCALE.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.control.audit import verify_file
from agent.demo.lab_record import TESTS
from agent.packages.keys import generate_keypair
from agent.packages.manager import PROBATION_CYCLES
from agent.packages.promotion import PROMOTED_FILE
from tests.integration.control_rig import BUSY, Rig, control_rig, wait_for
from tests.support.config import ConfigDoc
from tests.support.env import clean_env
from tests.support.ports import free_port
from tests.support.signed_models import (
    DECLARED_RMSE,
    MODEL,
    OUTPUTS,
    offset_graph,
    signed_version,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(600)  # a hang guard: the waits (control_rig.BUSY) fail first

ACTIVE, CHALLENGER = "1.0.0", "1.1.0"
OFFSET = {"blaine": 50.0, "residue45": 0.25, "s28": 2.0, "s2": 1.0, "spec_energy": 0.0}
TIME_SCALE = 120.0
LAB_TIME_SCALE = 15.0
HOUR_WALL = 3600.0 / TIME_SCALE
LAB_TESTS = ("blaine", "residue45", "s2", "s28")
WHY = ["--operator", "ana", "--reason", "challenger closer to the lab"]
CLI_WAIT_S = 120.0


def _lab(config: ConfigDoc) -> None:
    """[quality]: the mill's lab tags, each window its plant window on the wall clock."""
    tags = [{"test": test, "tag": TESTS[test].tag, "unit": TESTS[test].unit,
             "window_s": TESTS[test].window_s / TIME_SCALE} for test in LAB_TESTS]  # fmt: skip
    if config.has("quality"):  # the demo's: the SampleTime path, windows in plant time
        config.set("quality.tags", tags)
    else:
        config.add("quality", {"tags": tags})
    rules = {"tests": list(LAB_TESTS), "challenger_version": CHALLENGER}
    if config.has("loops[name=separator].quality"):
        for key, value in rules.items():
            where = f"loops[name=separator].quality.{key}"
            (config.set if config.has(where) else config.add)(where, value)
    else:
        config.add("loops[name=separator].quality", rules)


def _cycles(rig: Rig, after: int = 0) -> list[dict[str, Any]]:
    return [r for r in rig.records("cycle", "separator") if r["seq"] > after]


def _version(record: dict[str, Any]) -> str | None:
    model = record.get("model") or {}
    return model.get("version")


async def _status(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/status")
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def _separator(doc: dict[str, Any]) -> dict[str, Any]:
    (loop,) = [lp for lp in doc["loops"] if lp["name"] == "separator"]
    quality: dict[str, Any] = loop["quality"]
    return quality


def _judged(tests: dict[str, Any]) -> set[str]:
    return {test for test, figures in tests.items() if figures["n"] >= 1}


async def _cli(*args: str) -> tuple[int, str, str]:
    """`edge-agent ARGS` as a child process, awaited (the API it asks runs in this loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=CLI_WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_challenger_runs_in_shadow_is_judged_and_promoted_and_stays_promoted(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    key, pub = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    generate_keypair(key, pub)
    signed_version(models, ACTIVE, key)
    signed_version(models, CHALLENGER, key, offset_graph(OFFSET))
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def edit(config: ConfigDoc) -> None:
        config.set("agent.models_dir", str(models))
        config.set("agent.model_public_key_file", str(pub))
        config.set("api.enabled", True)
        config.set("api.port", port)
        _lab(config)

    async with (
        control_rig(tmp_path, time_scale=TIME_SCALE, lab_time_scale=LAB_TIME_SCALE,
                    edit=edit) as rig,
        httpx.AsyncClient(base_url=url, timeout=30.0) as client,
    ):  # fmt: skip
        control = rig.app.control
        assert control is not None and control.truth is not None
        # 1.1.0 is the newest, but only a promotion makes a challenger active.
        assert control.models.active == {MODEL: ACTIVE}
        assert control.models.challengers == {MODEL: CHALLENGER}
        (loaded,) = rig.records("challenger_loaded")
        assert (loaded["model"], loaded["version"], loaded["active"]) == (MODEL, CHALLENGER, ACTIVE)

        # 1. Every predicting cycle also runs the challenger on the same features (shadow).
        shadowed = await wait_for(
            lambda: [r for r in _cycles(rig) if "challenger" in r.get("quality", {})], 40,
            "a separator cycle with the challenger's prediction")  # fmt: skip
        for record in shadowed:
            q = record["quality"]
            assert _version(record) == ACTIVE
            assert q["challenger"]["version"] == CHALLENGER
            assert set(q["challenger"]["raw"]) == set(OUTPUTS) == set(q["raw"])
            for output in OUTPUTS:
                gap = q["challenger"]["raw"][output] - q["raw"][output]
                assert math.isclose(gap, OFFSET[output], abs_tol=2e-3), (output, gap)

        # 2. A version that is not the challenger is refused, and nothing changes.
        refused = await client.post("/v1/loops/separator/quality/promote",
                                    json={"version": "9.9.9", "operator": "ana",
                                          "reason": "typo"})  # fmt: skip
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert "9.9.9 is not its challenger" in detail and CHALLENGER in detail, detail
        assert control.models.active == {MODEL: ACTIVE}
        assert control.models.challengers == {MODEL: CHALLENGER}
        assert rig.records("model_promoted") == []
        assert not (rig.state_dir / PROMOTED_FILE).exists()

        # 3. The lab judges both on the same results: /status shows the challenger's figures.
        async def judged() -> dict[str, Any] | None:
            q = _separator(await _status(client))
            active, challenger = q["tests"], (q["challenger"] or {}).get("tests", {})
            done = "blaine" in _judged(active) and "residue45" in _judged(active)
            return q if done and _judged(challenger) == _judged(active) else None

        q = await eventually(judged, "lab results judging both versions in /status",
                             BUSY * 4 * HOUR_WALL)  # fmt: skip
        assert (q["model"], q["version"]) == (MODEL, ACTIVE)
        assert (q["challenger"]["model"], q["challenger"]["version"]) == (MODEL, CHALLENGER)
        for test in _judged(q["tests"]):
            active, challenger = q["tests"][test], q["challenger"]["tests"][test]
            assert challenger["n"] == active["n"], (test, active, challenger)
            # Same results, same windows, a prediction OFFSET higher: a raw bias OFFSET lower.
            assert math.isclose(challenger["raw_bias"], active["raw_bias"] - OFFSET[test],
                                abs_tol=1e-2), (test, active, challenger)  # fmt: skip

        # 4. The operator promotes it with the command line, through the real control side.
        before = max(r["seq"] for r in rig.records())
        code, out, err = await _cli("quality", "promote", "separator", CHALLENGER, *WHY,
                                    "--url", url)  # fmt: skip
        assert (code, err) == (0, ""), err
        assert out.strip() == (f"loop separator: challenger {CHALLENGER} promoted by ana "
                               f"(was {ACTIVE})")  # fmt: skip
        (promoted,) = rig.records("model_promoted")
        assert {k: promoted[k] for k in ("model", "version", "previous", "operator", "reason")} \
            == {"model": MODEL, "version": CHALLENGER, "previous": ACTIVE, "operator": "ana",
                "reason": "challenger closer to the lab"}  # fmt: skip
        assert promoted["seq"] > before
        assert control.models.active == {MODEL: CHALLENGER}
        assert control.models.challengers == {MODEL: None}  # the shadow has nothing to run
        kept = json.loads((rig.state_dir / PROMOTED_FILE).read_text())
        assert kept == {MODEL: {"version": CHALLENGER, "config_pin": None,
                                "config_challenger": CHALLENGER}}  # fmt: skip

        # A cycle that had its model before the promotion may still record after it (a
        # write's read-back wait); from the first cycle on 1.1.0 on, every one is on 1.1.0,
        # past its probation (no rollback).
        def on_challenger() -> list[dict[str, Any]]:
            found = [r for r in _cycles(rig, promoted["seq"]) if _version(r) is not None]
            first = next((i for i, r in enumerate(found) if _version(r) == CHALLENGER), None)
            return [] if first is None else found[first:]

        after = await wait_for(lambda: len(on_challenger()) > PROBATION_CYCLES and on_challenger(),
                               60, "separator cycles on 1.1.0 past its probation")  # fmt: skip
        assert all(_version(r) == CHALLENGER for r in after), [_version(r) for r in after]
        assert all("challenger" not in r.get("quality", {}) for r in after)
        assert rig.records("model_rolled_back") == []

        # A second promotion of it is refused (it is the active version now): nothing changes.
        again = await client.post("/v1/loops/separator/quality/promote",
                                  json={"version": CHALLENGER, "operator": "ana",
                                        "reason": "twice"})  # fmt: skip
        assert again.status_code == 409, again.text
        assert CHALLENGER in again.json()["detail"], again.text
        assert len(rig.records("model_promoted")) == 1
        assert control.models.active == {MODEL: CHALLENGER}
        assert json.loads((rig.state_dir / PROMOTED_FILE).read_text()) == kept

        # 5. A restart keeps the promotion (STATE_DIR/promoted.json), not the config's pick.
        await rig.stop()
        seq = max(r["seq"] for r in rig.records())
        await rig.start()
        control = rig.app.control
        assert control is not None and control.truth is not None
        # The truth loop's standing, rebuilt at the start from quality.db, judges the active
        # version against the RMSE its package declares (the models load before it).
        report = control.truth.report("separator")
        assert (report.model, report.version) == (MODEL, CHALLENGER)
        assert {h.test: h.declared_rmse for h in report.tests} == {
            test: DECLARED_RMSE[test] for test in LAB_TESTS
        }
        assert control.models.active == {MODEL: CHALLENGER}
        assert control.models.challengers == {MODEL: None}
        activated = [r for r in rig.records("model_activated") if r["seq"] > seq]
        assert [r["version"] for r in activated] == [CHALLENGER]
        restarted = await wait_for(lambda: [r for r in _cycles(rig, seq)
                                            if _version(r) is not None], 40,
                                   "a separator cycle after the restart")  # fmt: skip
        assert all(_version(r) == CHALLENGER for r in restarted)
        assert all("challenger" not in r.get("quality", {}) for r in restarted)
    assert verify_file(rig.state_dir / "audit.db").ok
