"""The model manager watches its folder on the injected clock: a FakeClock drives its scans.

A real package (the demo's model, unsigned) is loaded by onnxruntime; a second version put
into the folder is activated only once the clock has moved by the scan interval, and then
without waiting a real second of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.control.audit import AuditLog
from agent.domain.clock import FakeClock
from agent.packages.manager import ModelManager
from tests.support.tasks import running
from tests.support.wait import until

DEMO = Path(__file__).resolve().parents[2] / "models" / "vrm-quality" / "1.0.0"
NAME = "vrm-quality"
HOUR = 3600.0  # the scan interval: a real sleep of it would never end within the test


def put_version(models: Path, version: str) -> None:
    """The demo package as `version`, appearing complete (renamed in one step)."""
    staging = models / NAME / f".staging-{version}"
    shutil.copytree(DEMO, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = version
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    staging.rename(models / NAME / version)


@pytest.mark.timeout(180)  # a hang guard; the polls fail first
async def test_a_new_version_is_picked_up_when_the_injected_clock_reaches_the_next_scan(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    models = tmp_path / "models"
    (models / NAME).mkdir(parents=True)
    put_version(models, "1.0.0")
    audit = AuditLog(tmp_path / "audit.db", agent_id="a1", clock=clock)
    manager = ModelManager(models, None, {NAME: None}, audit=audit.record, clock=clock,
                           scan_interval_s=HOUR)  # fmt: skip
    try:
        async with running(manager.run):
            await until(lambda: manager.active == {NAME: "1.0.0"}, "the first scan")
            await until(lambda: clock.next_deadline() == HOUR, "the manager asleep on the clock")
            put_version(models, "1.1.0")
            await clock.advance(HOUR - 1.0)
            assert clock.next_deadline() == HOUR  # still asleep: no scan ran, none is due yet
            assert manager.active == {NAME: "1.0.0"}
            await clock.advance(1.0)
            await until(lambda: manager.active == {NAME: "1.1.0"}, "the scan an hour later")
            await until(lambda: clock.next_deadline() == 2 * HOUR, "asleep until the next one")
    finally:
        audit.close()
