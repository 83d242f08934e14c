"""A control loop across a restart and a shutdown: what it takes over from audit.db before
anything else runs, what it leaves there whatever cancels it, and in which order /status
and audit.db learn of a cycle (review of issue 13, items 1, 2, 3, 5 and 6).

Peers: the demo configuration read by `load_config`, the control side built as the agent
builds it (`open_control`, with the real drivers of `build_drivers`, not started: these
tests never reach a write), the committed vrm-quality package (onnxruntime), a real
audit.db in tmp_path (seeded by a real `AuditLog` on a clock set to before the outage),
and a `FakeClock` that drives every wait; samples reach the loops the way a driver's batch
does. The baseline over a new grant is shown on the simulated mill (real OPC UA, the real
App restarted on its state directory: tests.integration.control_rig). Waits follow
observed progress (tests.support.wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.config.loader import load_config
from agent.control.audit import AUDIT_FILE, AuditLog
from agent.control.latch import SafetyStop, StopCode
from agent.control.loop import ControlLoop
from agent.control.record import CycleRecord
from agent.control.setup import Control, open_control
from agent.domain.clock import FakeClock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Sample
from agent.service.app import build_drivers
from tests.integration.control_rig import Rig, control_rig, wait_for
from tests.support.config import ConfigDoc, single_product
from tests.support.nominal import NOMINAL, RESTORED
from tests.support.wait import eventually, until

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
DAY = 86400.0
T = 1_800_000_000.0
STOP = SafetyStop(StopCode.READBACK_MISMATCH, "the setpoint did not follow", T - 3 * DAY)


@dataclass
class Agent:
    """The control side of a restarted agent, on a fake clock."""

    control: Control
    clock: FakeClock
    latest: LatestValues
    db: Path
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def separator(self) -> ControlLoop:
        return next(lp for lp in self.control.loops if lp.loop.name == "separator")

    def feed(self, **values: object) -> None:
        """One batch of fresh Good samples (the nominal values, changed by `values`)."""
        now = self.clock.now()
        batch = [Sample(tag, now, v) for tag, v in {**NOMINAL, **values}.items()]  # type: ignore[arg-type]
        self.latest.update(batch)
        self.control.observe(batch)

    async def start(self, name: str) -> None:
        """Start one of the control side's tasks as the agent's supervisor does."""
        run = dict(self.control.tasks())[name]
        self.tasks[name] = asyncio.ensure_future(run())
        await until(lambda: self.clock.sleepers > 0, f"{name} waiting on the clock")

    async def first_cycle(self, loop: ControlLoop) -> None:
        """Move the clock until the running loop has made (and counted) its first cycle."""

        async def cycled() -> bool:
            if loop.stats.cycles == 0 and self.clock.sleepers > 0:
                await self.clock.advance(1.0)
            return loop.stats.cycles > 0

        await eventually(cycled, "the loop's first cycle")

    def records(self, kind: str, loop: str) -> list[dict[str, Any]]:
        """The loop's records of `kind` in audit.db, oldest first (a second reader)."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT body FROM audit WHERE kind = ? AND loop = ? ORDER BY seq", (kind, loop)
            ).fetchall()
        finally:
            db.close()
        return [json.loads(body) for (body,) in rows]


async def seed(db: Path, *records: CycleRecord) -> None:
    """The previous process's last cycle records, written on its own (earlier) clock."""
    for rec in records:
        audit = await asyncio.to_thread(
            AuditLog, db, agent_id="t", clock=FakeClock(now=rec.decided_at)
        )
        try:
            await audit.record("cycle", rec.to_json(), loop="separator")
        finally:
            audit.close()


@contextlib.asynccontextmanager
async def restarted(folder: Path, *, mode: str = "closed_loop") -> AsyncIterator[Agent]:
    """The agent's control side opened at T on the state folder (audit retention: 1 day)."""
    (folder / "state").mkdir(exist_ok=True)
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    doc.set("agent.state_dir", str(folder / "state"))
    doc.set("agent.models_dir", str(MODELS))
    doc.set("agent.model_public_key_file", str(MODELS / "demo-signing-key.pub.pem"))
    doc.add("agent.audit_retention_days", 1)
    doc.set("loops[name=separator].mode", mode)
    single_product(doc)  # these tests feed no ProductId
    if mode == "shadow":  # a loop switched to shadow needs no grant
        doc.remove("loops[name=separator].enable_tag")
    loaded = load_config(doc.write(folder / "agent.toml"), secrets=False)
    clock = FakeClock(now=T)
    latest = LatestValues({t.name: t.source for t in loaded.settings.tags})
    control = await open_control(
        loaded, folder / "state", latest=latest, health=Health(), clock=clock, events=None,
        drivers=build_drivers(loaded, folder / "state", clock),
    )  # fmt: skip
    agent = Agent(control, clock, latest, folder / "state" / AUDIT_FILE)
    try:
        yield agent
    finally:
        for task in agent.tasks.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        control.audit.close()


def stopped_before(at: float = T - 3 * DAY) -> CycleRecord:
    """The last cycle of a loop stopped for safety, before an outage of three days."""
    return CycleRecord("closed_loop", at, reason="safety_stop: worded anyhow", safety_stop=STOP)


async def test_a_stop_older_than_the_audit_retention_survives_the_restart_and_its_pruning(
    tmp_path: Path,
) -> None:
    (tmp_path / "state").mkdir()
    older = CycleRecord("closed_loop", T - 4 * DAY, reason="a cycle before the stop")
    await seed(tmp_path / "state" / AUDIT_FILE, older, stopped_before())
    async with restarted(tmp_path) as agent:
        loop = agent.separator
        # Taken over while the control side is opened, before any of its tasks runs.
        assert loop.stopped == STOP
        # The pruning runs first (the retention is one day): what is older goes, but the
        # loop's last cycle record stays, whatever its age ...
        await agent.start("audit:prune")
        assert [r["decided_at"] for r in agent.records("cycle", "separator")] == [T - 3 * DAY]
    # ... so an agent that dies before its first new cycle still finds the stop next time.
    async with restarted(tmp_path) as agent:
        loop = agent.separator
        assert loop.stopped == STOP
        await agent.start("audit:prune")
        await agent.start("loop:separator")
        agent.feed()  # the PLC still grants remote
        await agent.first_cycle(loop)
        rec = agent.records("cycle", "separator")[-1]
        assert rec["verdicts"] == [{"gate": "safety_stop", "ok": False, "reason": RESTORED}]
        assert rec["safety_stop"] == STOP.to_json()


async def test_a_shutdown_during_the_cycle_record_still_stores_it(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    await seed(tmp_path / "state" / AUDIT_FILE, stopped_before(T - 600))
    async with restarted(tmp_path) as agent:
        loop = agent.separator
        await agent.start("loop:separator")
        agent.feed()
        async with agent.control.audit._alock:  # the audit busy: the record must wait
            await agent.clock.advance(5.0)  # the first cycle is due
            await until(lambda: loop.last is not None, "the cycle waiting for its record")
            task = agent.tasks.pop("loop:separator")
            task.cancel()  # the agent's shutdown
            await asyncio.sleep(0)
        # The cancellation still ends the task, once the record is stored.
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        last = agent.records("cycle", "separator")[-1]
        assert last["decided_at"] == T + 5.0 and last["safety_stop"] == STOP.to_json()


async def test_status_counts_a_cycle_only_once_audit_db_holds_it(tmp_path: Path) -> None:
    async with restarted(tmp_path) as agent:
        loop = agent.separator
        await agent.start("loop:separator")
        agent.feed()
        async with agent.control.audit._alock:  # the audit busy: the record waits
            await agent.clock.advance(5.0)
            await until(lambda: loop.last is not None, "the cycle waiting for its record")
            assert agent.records("cycle", "separator") == []
            # What /status shows (agent.api.status reads the loop's stats) waits for it too.
            assert (loop.stats.cycles, sum(loop.stats.outcomes.values())) == (0, 0)
            assert loop.stats.last == {}
        await until(lambda: loop.stats.cycles == 1, "the cycle counted")
        assert len(agent.records("cycle", "separator")) == 1


async def test_a_loop_switched_to_shadow_keeps_the_stop_and_still_logs_its_suggestion(
    tmp_path: Path,
) -> None:
    # Stopped in closed loop; the operator switches the loop to shadow (no enable tag) and
    # restarts: shadow writes nothing, so it suggests again, and every record keeps the stop
    # for the day the loop writes again (it then holds until the PLC has been local).
    (tmp_path / "state").mkdir()
    await seed(tmp_path / "state" / AUDIT_FILE, stopped_before(T - 600))
    async with restarted(tmp_path, mode="shadow") as agent:
        loop = agent.separator
        assert loop.loop.enable_tag is None and loop.stopped == STOP
        await agent.start("loop:separator")
        agent.feed()
        await agent.first_cycle(loop)
        rec = agent.records("cycle", "separator")[-1]
        held = f"held, shadow mode writes nothing: {RESTORED}"
        assert rec["verdicts"][0] == {"gate": "safety_stop", "ok": True, "reason": held}
        assert rec["outcome"] in ("shadow", "hold") and "guard" in rec, rec
        assert rec["safety_stop"] == STOP.to_json() and loop.stopped == STOP
        assert loop.stats.state == f"stopped: {RESTORED}"


async def published(rig: Rig) -> None:
    """Wait until the simulated PLC has scanned and published twice since now."""
    seen = rig.plant.stats.iterations
    await wait_for(lambda: rig.plant.stats.iterations >= seen + 2, 10, "the PLC publishing")


@pytest.mark.timeout(480)  # a hang guard: the waits (control_rig.BUSY) fail first
async def test_remote_granted_again_during_the_outage_takes_a_fresh_baseline(
    tmp_path: Path,
) -> None:
    async with control_rig(tmp_path, min_interval_s=4.0, max_rate_per_h=100.0) as rig:
        mill = rig.plant.mill
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 1, 40, "a write")
        old = rig.loop("limestone").baseline
        await rig.stop()
        seen = max(r["seq"] for r in rig.records())
        # Meanwhile the operator takes the mill to local, sets limestone by hand and gives
        # remote again, all before the agent is back (the grant the old baseline belonged
        # to has ended; no cycle of the agent saw it end).
        mill.operator("remote_enable", value=False)
        await published(rig)  # the PLC's OPC UA server shows the grant withdrawn
        mill.operator("local_setpoint", value=11.0, tag="LimestoneShareSetpoint")
        mill.operator("remote_enable", value=True)  # the remote setpoint takes the local one
        await published(rig)
        assert mill.read("LimestoneShareSetpoint").value == 11.0
        # The restarted loop's first cycle 5 s after its start (as with a plant's cadence):
        # the heartbeat is through by then, so that cycle passes the handshake.
        ConfigDoc.read(rig.config).set("loops[name=limestone].cadence_s", 5.0).write(rig.config)
        await rig.start()

        def guarded() -> list[dict[str, Any]]:
            return [r for r in rig.records("cycle", "limestone") if r["seq"] > seen
                    and "guard" in r]  # fmt: skip

        after = await wait_for(guarded, 30, "a cycle after the restart that reached the guard")
        assert old is not None and old != 11.0
        # The guard keeps the setpoint near the operator's new value, not the old one.
        assert after[0]["guard"]["baseline"] == 11.0, after[0]["guard"]
