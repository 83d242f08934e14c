"""The real control loop on a fake clock: its typed record, the training-range gate, and the
safety latch across restarts (issue 13, items 2-4).

Peers: the real `ControlLoop` of the demo configuration's separator loop, the committed
vrm-quality package loaded by a real `ModelManager` (onnxruntime), a real `AuditLog` on a
SQLite file in tmp_path; samples reach the loop the way a driver's batch does
(`LatestValues.update` and `ControlLoop.observe`). A `FakeClock` drives every wait and every
measured duration of the loop; the tests wait on observed progress (cycles counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.loader import load_config
from agent.config.settings import Loop, Settings
from agent.control.audit import AuditLog
from agent.control.latch import SafetyStop, StopCode
from agent.control.loop import ControlLoop
from agent.control.record import CycleRecord
from agent.domain.clock import FakeClock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Sample
from agent.packages.manager import ModelManager
from tests.support.config import ConfigDoc
from tests.support.nominal import NOMINAL, RESTORED
from tests.support.wait import eventually, until

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
T = 1_800_000_000.0


@dataclass
class Rig:
    settings: Settings
    clock: FakeClock
    audit: AuditLog
    models: ModelManager
    latest: LatestValues
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def separator(self) -> Loop:
        return next(lp for lp in self.settings.loops if lp.name == "separator")

    def loop(self) -> ControlLoop:
        """A new ControlLoop on the same audit log: what a restarted agent builds."""
        return ControlLoop(self.separator, tags={t.name: t for t in self.settings.tags},
                           drivers={}, latest=self.latest, models=self.models, audit=self.audit,
                           heartbeat=None, health=Health(), clock=self.clock)  # fmt: skip

    def feed(self, loops: list[ControlLoop], **values: object) -> None:
        """One batch of fresh Good samples (the nominal values, changed by `values`)."""
        now = self.clock.now()
        batch = [Sample(tag, now, v) for tag, v in {**NOMINAL, **values}.items()]  # type: ignore[arg-type]
        self.latest.update(batch)
        for lp in loops:
            lp.observe(batch)

    async def start(self, loop: ControlLoop) -> ControlLoop:
        """Run the loop as the agent does (its restart recovery first) until it waits."""
        self.tasks.append(asyncio.create_task(loop.run()))
        await until(lambda: self.clock.sleepers > 0, "the loop waiting for its first cycle")
        return loop

    async def stop(self) -> None:
        """Stop the running loop (the agent's shutdown: its task is cancelled)."""
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()

    async def cycle(self, loop: ControlLoop) -> dict[str, Any]:
        """Let the running loop make its next cycle; that cycle's audit record."""
        target = loop.stats.cycles + 1

        async def cycled() -> bool:
            if loop.stats.cycles < target and self.clock.sleepers > 0:
                await self.clock.advance(loop.loop.cadence_s)
            return loop.stats.cycles >= target

        await eventually(cycled, "the next cycle")
        record = await self.audit.last("cycle", "separator")
        assert record is not None
        return record


def training_range(feature: str, digits: int) -> str:
    """The package's training range of a model input, as gate 2 words it."""
    manifest = json.loads((MODELS / "vrm-quality" / "1.0.0" / "manifest.json").read_text())
    (i,) = [i for i in manifest["inputs"] if i["name"] == feature]
    return f"[{i['min']:.{digits}g}, {i['max']:.{digits}g}]"


SEPARATOR_RANGE = training_range("separator_speed", 6)


@contextlib.asynccontextmanager
async def rig(
    folder: Path, mode: str, edit: Callable[[ConfigDoc], object] = lambda doc: None
) -> AsyncIterator[Rig]:
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    edit(doc)
    doc.set("agent.state_dir", str(folder / "state"))
    doc.set("agent.models_dir", str(MODELS))
    doc.set("agent.model_public_key_file", str(MODELS / "demo-signing-key.pub.pem"))
    doc.set("loops[name=separator].mode", mode)
    settings = load_config(doc.write(folder / "agent.toml"), secrets=False).settings
    clock = FakeClock(now=T)
    audit = await asyncio.to_thread(AuditLog, folder / "audit.db", agent_id="t", clock=clock)

    async def model_events(kind: str, body: Mapping[str, Any]) -> None:
        await audit.record(kind, body)

    models = ModelManager(MODELS, None, {"vrm-quality": None}, audit=model_events, clock=clock)
    await models.scan()
    r = Rig(settings, clock, audit, models, LatestValues({t.name: t.source for t in settings.tags}))
    try:
        yield r
    finally:
        await r.stop()
        audit.close()


async def test_an_input_outside_the_training_range_stops_the_cycle_at_gate_2(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, "shadow") as r:
        loop = r.loop()
        r.feed([loop])
        ok = await loop.cycle()
        assert ok["outcome"] in ("shadow", "hold"), ok
        assert ok["inputs"]["separator_speed"]["ok"]
        # Measured on the injected clock: a fake clock that did not move measures nothing.
        assert (ok["inference_ms"], ok["decision_ms"]) == (0.0, 0.0)
        # Past the feature window (60 s), the separator speed the model would see is 1200 rpm.
        await r.clock.advance(120.0)
        r.feed([loop], SeparatorSpeed=1200.0)
        rec = await loop.cycle()
        why = f"separator_speed = 1200 is out of the training range {SEPARATOR_RANGE}"
        assert rec["outcome"] == "blocked" and rec["reason"] == f"inputs: {why}"
        assert rec["verdicts"][-1] == {"gate": "inputs", "ok": False, "reason": why}
        assert rec["inputs"]["separator_speed"] == {**rec["inputs"]["separator_speed"],
                                                    "ok": False, "reason": why, "value": 1200.0}  # fmt: skip
        assert "features" not in rec and "target" not in rec  # the model did not run
        assert loop.stats.verdicts[("inputs", "refuse")] == 1


async def test_the_typed_safety_stop_survives_restarts_until_the_plc_goes_local(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, "closed_loop") as r:
        # The previous run's last cycle: stopped, with a reason in words nobody parses.
        stop = SafetyStop(StopCode.READBACK_MISMATCH, "the setpoint did not follow", T - 600)
        before = CycleRecord(
            "closed_loop", T - 600, reason="write: worded anyhow", safety_stop=stop
        )
        await r.audit.record("cycle", before.to_json(), loop="separator")
        first = await r.start(r.loop())
        r.feed([first])  # the PLC still grants remote
        assert first.stopped == stop
        rec = await r.cycle(first)
        assert rec["verdicts"] == [{"gate": "safety_stop", "ok": False, "reason": RESTORED}]
        assert rec["safety_stop"] == stop.to_json()
        assert first.stats.state == f"stopped: {RESTORED}"
        # Restarted again, the PLC still in remote: the stop holds.
        await r.stop()
        second = await r.start(r.loop())
        assert second.stopped == stop
        # The PLC goes local: the stop clears (the handshake refuses: remote is off).
        r.feed([second], RemoteActive=False)
        rec = await r.cycle(second)
        assert rec["verdicts"][0]["gate"] == "safety_stop" and rec["verdicts"][0]["ok"]
        assert rec["verdicts"][-1]["gate"] == "handshake" and rec["safety_stop"] is None
        await r.stop()
        third = await r.start(r.loop())
        assert third.stopped is None and third.baseline is None


async def test_a_stop_recorded_by_the_previous_version_holds_after_the_upgrade(
    tmp_path: Path,
) -> None:
    # The last cycle record as the previous version wrote it: no typed field, the stop in
    # its reason text only.
    reason = (
        "safety stop: read-back mismatch: SeparatorSpeedSetpointEffective = 950.0 after 60 s,"
        " expected 970 +- 0.5"
    )
    old = {
        "mode": "closed_loop", "decided_at": T - 600, "outcome": "blocked", "reason": reason,
        "verdicts": [{"gate": "handshake", "ok": True, "reason": "ok"}],
        "handshake": {"remote": {"value": True, "status": 0, "source_time": T - 601},
                      "echo": {"value": 7, "status": 0, "source_time": T - 601}, "sent": 8},
        "guard": {"current": 950.0, "target": 990.0, "baseline": 940.0, "value": 970.0,
                  "clamped": False},
        "write": {"tag": "SeparatorSpeedSetpoint", "from": 950.0, "value": 970.0,
                  "decision_ms": 2.0, "status": "accepted", "readback": 950.0,
                  "reason": reason.removeprefix("safety stop: ")},
    }  # fmt: skip
    async with rig(tmp_path, "closed_loop") as r:
        await r.audit.record("cycle", old, loop="separator")
        loop = await r.start(r.loop())
        r.feed([loop])
        assert loop.stopped == SafetyStop(StopCode.READBACK_MISMATCH, reason, T - 600)
        assert loop.baseline == 940.0
        rec = await r.cycle(loop)
        assert rec["verdicts"] == [{"gate": "safety_stop", "ok": False, "reason": RESTORED}]
        assert rec["safety_stop"] == {"code": "readback_mismatch", "reason": reason,
                                      "since": T - 600}  # fmt: skip


async def test_a_derived_feature_outside_the_training_range_stops_the_cycle_at_gate_2(
    tmp_path: Path,
) -> None:
    # Grindability is derived by the objective (mill power / feed over the estimator
    # window): a mill drawing 30 % more power per tonne is outside what the model knew.
    async with rig(tmp_path, "shadow") as r:
        loop = r.loop()
        r.feed([loop], MillPower=3240.0 * 1.3)
        rec = await loop.cycle()
        why = f"grindability = 1.3 is out of the training range {training_range('grindability', 4)}"
        assert rec["outcome"] == "blocked" and rec["reason"] == f"inputs: {why}"
        assert all(row["ok"] for row in rec["inputs"].values())  # every measured input passed


async def test_the_training_range_judges_the_window_mean_not_the_last_sample(
    tmp_path: Path,
) -> None:
    # The model sees the separator speed's mean over the feature window (60 s).
    low, high = (float(v) for v in SEPARATOR_RANGE.strip("[]").split(", "))
    async with rig(tmp_path, "shadow") as r:
        loop = r.loop()
        for _ in range(4):  # inside the range, then one spike above it: the mean passes
            r.feed([loop], SeparatorSpeed=950.0)
            await r.clock.advance(5.0)
        spike = high + 20.0
        r.feed([loop], SeparatorSpeed=spike)
        rec = await loop.cycle()
        mean = (4 * 950.0 + spike) / 5
        assert rec["inputs"]["separator_speed"]["ok"] and rec["outcome"] != "blocked", rec
        assert rec["features"]["separator_speed"] == {"value": round(mean, 6), "origin": "measured"}
        # Past the window: above the range for a minute, the last sample back inside: refused.
        await r.clock.advance(120.0)
        for _ in range(4):
            r.feed([loop], SeparatorSpeed=high + 50.0)
            await r.clock.advance(5.0)
        r.feed([loop], SeparatorSpeed=low + 100.0)
        rec = await loop.cycle()
        mean = (4 * (high + 50.0) + low + 100.0) / 5
        why = f"separator_speed = {mean:.6g} is out of the training range {SEPARATOR_RANGE}"
        assert rec["outcome"] == "blocked" and rec["reason"] == f"inputs: {why}"
        assert rec["inputs"]["separator_speed"]["value"] == low + 100.0  # the last sample
        assert "features" not in rec


def c3s_twice(doc: ConfigDoc) -> None:
    """The separator loop also reads the lab C3S as its latest result (a second feature on
    the same tag, over 1 s; the model's clinker_c3s is its 6-hour mean)."""
    doc.append("loops[name=separator].inputs", {"feature": "c3s_latest", "tag": "LabClinkerC3S",
                                                "max_age_s": 14400.0, "window_s": 1.0})  # fmt: skip


async def test_two_features_on_one_tag_each_get_their_own_window_mean(tmp_path: Path) -> None:
    async with rig(tmp_path, "shadow", c3s_twice) as r:
        loop = r.loop()
        r.feed([loop], LabClinkerC3S=58.0)
        await r.clock.advance(3600.0)  # the next C3S result an hour later
        r.feed([loop], LabClinkerC3S=62.0)
        rec = await loop.cycle()
        assert rec["outcome"] != "blocked", rec
        assert rec["features"]["clinker_c3s"] == {"value": 60.0, "origin": "measured"}
        assert rec["inputs"]["c3s_latest"]["ok"]
