"""A headless agent closing its loops on the simulated mill in sim time, with the truth loop
judging their model against the mill's lab: weeks of plant time in a minute (issue 14's
MUST-SHOW tests, issue 15's `edge-agent evaluate`).

Owns: `headless_rig(folder, ...)` and `HeadlessRig`: the agent's real control side built by
agent.control.setup.open_control from a loaded configuration (agent.demo.headless.config:
config/demo.toml with the loops asked for, all of them by default, in closed loop), so the
same AuditLog, ModelManager (over a copy of the demo's signed model packages, verified),
TruthLoop (quality.db), Heartbeat and ControlLoops as the daemon's, and the plant
(agent.demo.headless.plant) stepped tick by tick with the FakeClock.
How time moves (the rig's schedule, replacing the tasks' own waits): every tick the mill steps
`dt` and the clock jumps with it; lab tags reach LatestValues, the loops and TruthLoop.observe
as they change; the other tags every `sample_s`; the heartbeats beat once per `sample_s`, just
before the tick that ends the period (so HeartbeatEcho is as fresh at a cycle as on a real PLC
with a 1 s heartbeat; the mill's watchdog timeout is 3 periods); each loop cycles every
cadence_s from the first period's end, at a period's end, in configuration order (its due
times follow the schedule, not the end of a cycle; ControlLoop.cycle, awaited; while it
sleeps on the clock, e.g. in the read-back wait, the plant ticks on); `after_tick` callbacks
(an operator, a recorder) run after every tick. After a lab batch the rig waits until
TruthLoop.run's tasks are parked again (agent.demo.headless.clock.quiet), so a result is
judged at the sim time it arrived, whatever the machine's speed.
Must not: patch or mock an agent module, re-implement a decision of the agent, or sleep in
real time for anything but waiting on worker threads to finish (quiet).
Invariants: `clock.now() == mill.time` after every tick; a loop never cycles between two ticks
of the same period twice; every cycle the loops decide is in `cycles`, in decision order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.loader import LoadedConfig, load_config
from agent.config.settings import Loop
from agent.control.audit import AUDIT_FILE, AuditLog
from agent.control.loop import ControlLoop
from agent.control.record import CycleRecord
from agent.control.setup import Control, open_control
from agent.demo.headless.clock import TaskClock, quiet
from agent.demo.headless.config import MODELS, rig_config
from agent.demo.headless.plant import EVENT_TAGS, MillDriver, SimPlant
from agent.demo.mill import Mill
from agent.domain.clock import FakeClock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Sample
from agent.packages.manager import ModelManager
from agent.quality.results import Residual
from agent.quality.truth import TruthLoop

__all__ = ["DAY", "Cycle", "HeadlessRig", "headless_rig"]

DAY = 86400.0
LAB_EVENTS = frozenset(t for t in EVENT_TAGS if t.startswith("Lab"))


@dataclass
class Cycle:
    """One cycle as a loop recorded it."""

    time: float
    loop: str
    record: CycleRecord
    body: dict[str, Any]


@dataclass
class HeadlessRig:
    """The plant and the headless agent; drive it with `run_until`/`run_for`."""

    loaded: LoadedConfig
    plant: SimPlant
    clock: TaskClock
    control: Control
    latest: LatestValues
    state: Path
    cycles: list[Cycle] = field(default_factory=list)
    after_tick: list[Callable[[], None]] = field(default_factory=list)
    quiet_among: Callable[[asyncio.Task[Any]], bool] | None = None
    """The tasks `quiet` waits for (None: all; a rig with a network peer: the agent's)."""
    _due: dict[str, float] = field(default_factory=dict)
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
    def loops(self) -> list[ControlLoop]:
        """The loops that cycle (mode other than off), in configuration order."""
        return [lp for lp in self.control.loops if lp.loop.mode != "off"]

    @property
    def loop(self) -> ControlLoop:
        """The one loop of a rig built with one loop."""
        if len(self.loops) != 1:
            raise ValueError(f"the rig runs {len(self.loops)} loops; name one of them")
        return self.loops[0]

    @property
    def rules(self) -> Loop:
        return self.loop.loop

    @property
    def truth(self) -> TruthLoop:
        assert self.control.truth is not None, "the rig's configuration reads no lab results"
        return self.control.truth

    @property
    def audit(self) -> AuditLog:
        return self.control.audit

    @property
    def models(self) -> ModelManager:
        return self.control.models

    async def run_for(self, seconds: float) -> None:
        await self.run_until(self.mill.time + seconds)

    async def run_until(self, end: float) -> None:
        """Tick the plant to sim time `end`, cycling each loop when due."""
        while self.mill.time < end - 1e-6:
            await self._tick()
            if not self.plant.sample_due:
                continue
            for loop in self.loops:
                name = loop.loop.name
                started = self.mill.time
                due = self._due.setdefault(name, started)  # the first period's end
                if started >= due - 1e-6:
                    await self._cycle(loop)
                    # on the schedule, not on when the cycle ended (its read-back wait may end
                    # a tick later on a network): as ControlLoop.run does
                    self._due[name] = max(due + loop.loop.cadence_s, started)

    async def _tick(self) -> None:
        if self.plant.last_tick_of_period:
            for heartbeat in self.control.heartbeats:
                await heartbeat.beat()
        await self.plant.advance()
        for callback in self.after_tick:
            callback()
        if self._lab_changed:  # judged at the sim time it arrived
            self._lab_changed = False
            await quiet(ignore=self._ignore, among=self.quiet_among)

    def note_lab(self, batch: Sequence[Sample]) -> None:
        """A sink of the plant: a batch with a lab tag makes the next tick wait for quiet."""
        if any(s.tag in LAB_EVENTS for s in batch):
            self._lab_changed = True

    async def _cycle(self, loop: ControlLoop) -> None:
        task = asyncio.create_task(loop.cycle(), name=f"cycle:{loop.loop.name}")
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
        assert loop.last is not None
        self.cycles.append(Cycle(loop.last.decided_at, loop.loop.name, loop.last, body))

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The audit records of `kind` so far, oldest first (audit.db read as a second reader)."""
        db = sqlite3.connect(f"file:{self.state / AUDIT_FILE}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT body FROM audit WHERE kind = ? ORDER BY seq",
                              (kind,)).fetchall()  # fmt: skip
        finally:
            db.close()
        return [json.loads(body) for (body,) in rows]

    async def residuals(self, test: str, role: str = "active",
                        loop: str | None = None) -> list[Residual]:  # fmt: skip
        """A loop's stored residuals of `test` (quality.db), by sample time (the one loop's
        when `loop` is None)."""
        name = self.rules.name if loop is None else loop
        return [r for r in await self.truth.store.residuals(name)
                if r.test == test and r.role == role]  # fmt: skip


def copy_models(folder: Path) -> Path:
    """Every model package of the demo (MODELS/<name>/<version>/) copied into folder/models."""
    target = folder / "models"
    for package in sorted(MODELS.iterdir()):
        if package.is_dir() and not package.name.startswith(("_", ".")):
            shutil.copytree(package, target / package.name)
    return target


@contextlib.asynccontextmanager
async def headless_rig(
    folder: Path, *, seed: int, loops: Sequence[str] | None = None, cadence_s: float = 600.0,
    sample_s: float = 60.0, dt: float = 10.0, quality: Mapping[str, object] | None = None,
    mill: Mill | None = None,
) -> AsyncIterator[HeadlessRig]:  # fmt: skip
    """The mill (seed, or the one given) and the headless agent in `folder`; closed at exit."""
    copy_models(folder)
    state = folder / "state"
    state.mkdir()
    if mill is None:
        mill = Mill(seed, dt=dt, lab_time_scale=1.0, wd_timeout_s=3 * sample_s)
    loaded = load_config(rig_config(folder, product=mill.product, loops=loops,
                                    cadence_s=cadence_s, quality=quality))  # fmt: skip
    s = loaded.settings
    fake = FakeClock(monotonic=0.0, now=mill.time)
    clock = TaskClock(fake)
    driver = MillDriver(mill)
    latest = LatestValues({t.name: t.source for t in s.tags})
    control = await open_control(loaded, state, latest=latest, drivers=[driver], health=Health(),
                                 clock=clock, events=None)  # fmt: skip
    names = [t.name for t in s.tags if t.source == driver.name]  # a driver's order: the config's
    plant = SimPlant(mill, fake, names, sample_s=sample_s, driver=driver)
    rig = HeadlessRig(loaded, plant, clock, control, latest, state)
    plant.sinks += [latest.update, control.observe, rig.note_lab]
    running = None
    if control.truth is not None:
        running = asyncio.create_task(control.truth.run(), name="truth")
    try:
        plant.publish_all()
        yield rig
    finally:
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        if control.truth is not None:
            await control.truth.close()
        control.audit.close()
