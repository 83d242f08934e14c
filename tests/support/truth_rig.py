"""A headless agent closing a loop on the simulated mill in sim time, with the truth loop judging
its model against the mill's lab: weeks of plant time in a minute (issue 14 MUST-SHOW tests).

Owns: `truth_rig(folder, ...)` and `TruthRig`: the demo configuration (config/demo.toml via
ConfigDoc and agent.config.loader) reduced to one closed loop with `[loops.quality]` and
`[quality]` (the lab's tags with their `<Tag>SampleTime` companions: the tag path a plant's
LIMS uses), the real ModelManager over a copy of models/vrm-quality (signed, verified), a real
AuditLog and a real TruthLoop (quality.db) in the folder, the real ControlLoop and Heartbeat,
and the plant (tests.support.sim_plant) stepped tick by tick with the FakeClock.
How time moves (the rig's schedule, replacing the tasks' own waits): every tick the mill steps
`dt` and the clock jumps with it; lab tags reach LatestValues, the loop and TruthLoop.observe as
they change; the other tags every `sample_s`; the heartbeat beats once per `sample_s`, just
before the tick that ends the period (so HeartbeatEcho is as fresh at a cycle as on a real PLC
with a 1 s heartbeat; the mill's watchdog timeout is 3 periods); the loop cycles every
cadence_s at a period's end (ControlLoop.cycle, awaited; while it sleeps on the clock, e.g. in
the read-back wait, the plant ticks on). After a lab batch the rig waits until TruthLoop.run's
tasks are parked again (tests.support.sim_clock.quiet), so a result is judged at the sim time
it arrived, whatever the machine's speed.
Must not: patch or mock an agent module, or sleep in real time for anything but waiting on
worker threads to finish (quiet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.checks_loops import shared_counter
from agent.config.heartbeat_counter import CounterRange
from agent.config.loader import LoadedConfig, load_config
from agent.config.settings import Loop
from agent.control.audit import AUDIT_FILE, AuditLog
from agent.control.heartbeat import Heartbeat
from agent.control.loop import ControlLoop
from agent.control.record import CycleRecord
from agent.demo.lab_record import TESTS
from agent.demo.mill import Mill
from agent.domain.clock import FakeClock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Sample
from agent.packages.manager import ModelManager
from agent.packages.package import load_public_key
from agent.quality.results import Residual
from agent.quality.store import QUALITY_FILE
from agent.quality.truth import TruthLoop
from tests.support.config import ConfigDoc
from tests.support.sim_clock import TaskClock, quiet
from tests.support.sim_plant import EVENT_TAGS, MillDriver, SimPlant

__all__ = ["DAY", "LAB_TESTS", "TruthRig", "figures", "lost_nothing", "rig_config", "truth_rig"]

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
DAY = 86400.0
LAB_EVENTS = frozenset(t for t in EVENT_TAGS if t.startswith("Lab"))
LAB_TESTS = ("blaine", "residue45", "s2", "s28")
"""The lab tests the loop's model is judged on (its outputs), each from its tag."""


def rig_config(folder: Path, *, loop: str, cadence_s: float, product: str,
               quality: Mapping[str, object]) -> Path:  # fmt: skip
    """config/demo.toml with only `loop` (closed loop, cadence_s), `[loops.quality]` =
    `quality`, the lab tags of LAB_TESTS and their sample-time tags in `[quality]`."""
    doc = ConfigDoc.read(REPO / "config" / "demo.toml")
    doc.set("agent.models_dir", str(folder / "models"))
    doc.set("agent.model_public_key_file", str(MODELS / "demo-signing-key.pub.pem"))
    doc.set("agent.state_dir", str(folder / "state"))
    doc.set("sync.enabled", False)
    doc.add("api.enabled", False)
    for other in [lp["name"] for lp in doc.get("loops") if lp["name"] != loop]:
        doc.remove(f"loops[name={other}]")
    doc.set(f"loops[name={loop}].mode", "closed_loop")
    doc.set(f"loops[name={loop}].cadence_s", cadence_s)
    doc.add(f"loops[name={loop}].quality", {"tests": list(LAB_TESTS), **quality})
    names = {t["name"] for t in doc.get("tags")}
    address = doc.get("tags[name=LabBlaine].address").rsplit("/", 1)[0]
    lab: list[dict[str, object]] = []
    for test in LAB_TESTS:
        spec = TESTS[test]
        stamp = f"{spec.tag}SampleTime"
        if stamp not in names:  # the simulator publishes it; the demo config may not read it
            doc.append("tags", {"name": stamp, "source": "mill", "address": f"{address}/{stamp}",
                                "unit": "s"})  # fmt: skip
        lab.append({"test": test, "tag": spec.tag, "sample_time_tag": stamp,
                    "window_s": spec.window_s, "unit": spec.unit})  # fmt: skip
    doc.set("quality", {"default_product": product, "tags": lab,
                        "products": [{"name": product, "s28_per_s2": 2.0}]})  # fmt: skip
    return doc.write(folder / "agent.toml")


@dataclass
class Cycle:
    """One cycle as the loop recorded it."""

    time: float
    record: CycleRecord
    body: dict[str, Any]


@dataclass
class TruthRig:
    """The plant and the headless agent; drive it with `run_until`/`run_for`."""

    loaded: LoadedConfig
    plant: SimPlant
    clock: TaskClock
    loop: ControlLoop
    truth: TruthLoop
    audit: AuditLog
    models: ModelManager
    heartbeat: Heartbeat
    state: Path
    cycles: list[Cycle] = field(default_factory=list)
    _due: float = 0.0
    _lab_changed: bool = False
    _ignore: frozenset[asyncio.Task[Any]] = frozenset()

    @property
    def mill(self) -> Mill:
        return self.plant.mill

    @property
    def driver(self) -> MillDriver:
        assert self.plant.driver is not None
        return self.plant.driver

    @property
    def rules(self) -> Loop:
        return self.loop.loop

    async def run_for(self, seconds: float) -> None:
        await self.run_until(self.mill.time + seconds)

    async def run_until(self, end: float) -> None:
        """Tick the plant to sim time `end`, cycling the loop when due."""
        while self.mill.time < end - 1e-6:
            await self._tick()
            if self.plant.sample_due and self.mill.time >= self._due - 1e-6:
                await self._cycle()
                self._due = max(self._due + self.rules.cadence_s, self.mill.time)

    async def _tick(self) -> None:
        if self.plant.last_tick_of_period:
            await self.heartbeat.beat()
        self.plant.tick()
        if self._lab_changed:  # judged at the sim time it arrived
            self._lab_changed = False
            await quiet(ignore=self._ignore)

    def note_lab(self, batch: Sequence[Sample]) -> None:
        """A sink of the plant: a batch with a lab tag makes the next tick wait for quiet."""
        if any(s.tag in LAB_EVENTS for s in batch):
            self._lab_changed = True

    async def _cycle(self) -> None:
        task = asyncio.create_task(self.loop.cycle(), name="cycle")
        self._ignore = frozenset({task})
        try:
            while not task.done():
                if self.clock.waits_for_time(task):
                    await self._tick()  # the read-back wait: the plant moves on
                else:
                    await asyncio.wait({task}, timeout=0.001)
        finally:
            self._ignore = frozenset()
        body = task.result()
        assert self.loop.last is not None
        self.cycles.append(Cycle(self.loop.last.decided_at, self.loop.last, body))

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The audit records of `kind` so far, oldest first (audit.db read as a second reader)."""
        db = sqlite3.connect(f"file:{self.state / AUDIT_FILE}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM audit WHERE kind = ? ORDER BY seq",
                              (kind,)).fetchall()  # fmt: skip
        finally:
            db.close()
        return [json.loads(body) for (body,) in rows]

    async def residuals(self, test: str, role: str = "active") -> list[Residual]:
        """The loop's stored residuals of `test` (quality.db), by sample time."""
        return [r for r in await self.truth.store.residuals(self.rules.name)
                if r.test == test and r.role == role]  # fmt: skip


@contextlib.asynccontextmanager
async def truth_rig(
    folder: Path, *, seed: int, loop: str = "separator", cadence_s: float = 600.0,
    sample_s: float = 60.0, dt: float = 10.0, quality: Mapping[str, object] | None = None,
) -> AsyncIterator[TruthRig]:  # fmt: skip
    """The mill (seed) and the headless agent in `folder`; closed at exit."""
    shutil.copytree(MODELS / "vrm-quality", folder / "models" / "vrm-quality")
    state = folder / "state"
    state.mkdir()
    mill = Mill(seed, dt=dt, lab_time_scale=1.0, wd_timeout_s=3 * sample_s)
    loaded = load_config(rig_config(folder, loop=loop, cadence_s=cadence_s,
                                    product=mill.product, quality=quality or {}))  # fmt: skip
    s = loaded.settings
    lp = next(x for x in s.loops if x.name == loop)
    fake = FakeClock(monotonic=0.0, now=mill.time)
    clock = TaskClock(fake)
    tags = {t.name: t for t in s.tags}
    driver = MillDriver(mill)
    audit = AuditLog(state / AUDIT_FILE, agent_id=s.agent.id, clock=clock)

    async def record(kind: str, body: Mapping[str, Any]) -> None:
        await audit.record(kind, body)

    assert s.agent.model_public_key_file is not None
    models = ModelManager(folder / "models", load_public_key(s.agent.model_public_key_file),
                          {lp.model: lp.model_version}, audit=record, clock=clock)  # fmt: skip
    await models.scan()

    def declared(model: str, version: str) -> Mapping[str, float]:
        session = models.session(model)
        if session is None or session.manifest.version != version:
            return {}
        v = session.manifest.validation
        return dict(v.rmse) if v is not None else {}

    async def audited(kind: str, body: Mapping[str, Any], name: str | None) -> None:
        await audit.record(kind, body, loop=name)

    truth = await TruthLoop.open(state / QUALITY_FILE, s.quality, s.loops, clock=clock,
                                 declared=declared, audit=audited, events=None)  # fmt: skip
    counter = shared_counter(s.loops, str(lp.heartbeat_tag), tags)
    assert isinstance(counter, CounterRange), counter
    health = Health()
    beat = Heartbeat(str(lp.heartbeat_tag), driver, counter, clock=clock, health=health)
    drivers = {t.name: driver for t in s.tags if t.source == driver.name}
    latest = LatestValues({t.name: t.source for t in s.tags})
    control = ControlLoop(lp, tags=tags, drivers=drivers, latest=latest, models=models,
                          audit=audit, heartbeat=beat, health=health, clock=clock, truth=truth,
                          default_product=s.quality.default_product)  # fmt: skip
    names = sorted(t.name for t in s.tags if t.source == driver.name)
    plant = SimPlant(mill, fake, names, sample_s=sample_s, driver=driver)
    rig = TruthRig(loaded, plant, clock, control, truth, audit, models, beat, state)
    plant.sinks += [latest.update, control.observe, truth.observe, rig.note_lab]
    running = asyncio.create_task(truth.run(), name="truth")
    try:
        await control.recover()
        plant.publish_all()
        yield rig
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await truth.close()
        audit.close()


def figures(rig: TruthRig, label: str) -> None:
    report = rig.truth.report(rig.rules.name)
    print(f"\n[{label}] t={(rig.mill.time - rig.mill.time % 1) :.0f} offsets={dict(report.offsets)}"  # noqa: T201
          f" step_down={report.step_down}")  # fmt: skip
    for h in report.tests:
        print(f"  {h.test}: n={h.n} bias={h.bias:.3f} raw_bias={h.raw_bias:.3f} rmse={h.rmse:.3f}"  # noqa: T201
              f" raw_rmse={h.raw_rmse:.3f} declared={h.declared_rmse} degraded={h.degraded}")  # fmt: skip


async def lost_nothing(rig: TruthRig) -> None:
    """Every lab result the mill entered of a judged test reached quality.db by the tags, and
    so did what each tag held at the start (the mill's nominal value, sample time = start)."""
    entered = [r for r in rig.mill.lab_results() if r.test in LAB_TESTS]
    assert await rig.truth.store.result_count() == len(entered) + len(LAB_TESTS)
