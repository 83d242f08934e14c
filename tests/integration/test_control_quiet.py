"""What a loop that cannot or must not act says in the log: an off loop says nothing, a
blocked loop says so once per reason and once more when it acts again (issue 12, items 2-3).

Peers: the simulated mill (asyncua + pymodbus) and the real App through `control_rig`; the
log lines are captured with structlog's own `capture_logs`, and /status is read over HTTP.
Periods are counted in the other loop's cycles (observed progress), never in seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.integration.control_rig import MODELS, control_rig, wait_for
from tests.support.config import ConfigDoc
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(150)

SUPERVISOR_EVENTS = ("task_returned", "task_failed", "task_recovered")


def _limestone_off_and_api_on(port: int) -> Callable[[ConfigDoc], object]:
    def edit(config: ConfigDoc) -> None:
        config.set("loops[name=limestone].mode", "off")
        config.remove("api.enabled")  # control_rig turns it off
        config.set("api.port", port)

    return edit


async def test_an_off_loop_runs_no_task_logs_nothing_and_shows_off(tmp_path: Path) -> None:
    port = free_port()
    with capture_logs() as logs:
        async with control_rig(tmp_path, edit=_limestone_off_and_api_on(port)) as rig:
            separator = rig.loop("separator")
            # The period: ten cycles of the other loop (each also a heartbeat or more).
            await wait_for(lambda: separator.stats.cycles >= 10, 90, "ten separator cycles")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                doc = (await client.get("/status")).json()
    loops = {lp["name"]: lp for lp in doc["loops"]}
    assert loops["limestone"]["mode"] == "off"
    assert loops["limestone"]["state"] == "off"
    assert loops["limestone"]["cycles"] == 0
    assert loops["separator"]["cycles"] >= 10
    restarts = [e for e in logs if e["event"] in SUPERVISOR_EVENTS]
    assert restarts == [], restarts
    about_it = [
        e for e in logs if e.get("loop") == "limestone" or "limestone" in str(e.get("task"))
    ]
    assert about_it == [], about_it


async def test_a_blocked_loop_warns_once_and_says_when_it_acts_again(tmp_path: Path) -> None:
    models = tmp_path / "models"  # empty at start: the loops' model is delivered later
    models.mkdir()

    def no_models_yet(config: ConfigDoc) -> None:
        config.set("agent.models_dir", str(models))

    def lines(event: str) -> list[MutableMapping[str, Any]]:
        return [e for e in logs if e["event"] == event and e.get("loop") == "separator"]

    with capture_logs() as logs:
        async with control_rig(tmp_path, mode="shadow", edit=no_models_yet) as rig:
            separator = rig.loop("separator")
            await wait_for(
                lambda: separator.stats.outcomes["blocked"] >= 12, 90, "12 blocked cycles"
            )
            blocked = lines("loop_blocked")
            assert len(blocked) == 1, blocked
            assert blocked[0]["log_level"] == "warning"
            assert blocked[0]["reason"] == "model: no valid version of model 'vrm-quality'"
            assert lines("loop_unblocked") == []
            # The package arrives the way a delivery places it: whole, then renamed.
            staging = models / "vrm-quality" / ".1.0.0.partial"
            shutil.copytree(MODELS / "vrm-quality" / "1.0.0", staging)
            staging.rename(models / "vrm-quality" / "1.0.0")
            await wait_for(lambda: lines("loop_unblocked"), 90, "the loop acting again")
            acted = separator.stats.cycles
            await wait_for(lambda: separator.stats.cycles >= acted + 3, 60, "three more cycles")
    unblocked = lines("loop_unblocked")
    assert len(unblocked) == 1, unblocked
    assert unblocked[0]["log_level"] == "info"
    model_lines = [e for e in lines("loop_blocked") if "no valid version" in e["reason"]]
    assert len(model_lines) == 1, model_lines
    assert separator.stats.verdicts[("inference", "pass")] >= 1  # the model runs now
    assert separator.stats.outcomes["shadow"] + separator.stats.outcomes["hold"] >= 1
