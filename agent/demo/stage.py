"""The demo's stage: the simulated plant, the reference cloud and a restartable agent.

Owns: the demo's time compression (6 h of plant time in the demo's wall duration), the demo
configuration compressed to that scale, per TOML table (loop timings are wall-clock, so
cadence, minimum intervals, rate limits and the C3S window shrink by the same factor; a lab
sample's window in `[[quality.tags]]` is plant hours, divided by the scale), starting and
stopping the real `App` on one state directory (twice: the restart of the story), the tallies
that outlive one agent run (writes, refusals, samples buffered, lab results unmatched), the
wall time of each agent start (the audit's clock: writes after the restart), the log of plant
events the operator baseline replays, and the record of the hidden plant truth.
Must not: draw the screen, decide the story (agent.demo.scenario) or reach into the agent's
decisions: it reads `LoopStats`, counters and truth-loop reports the agent already publishes.
Invariants: at most one App runs at a time and each one is stopped (ordered shutdown) before
the next starts; every event applied to the plant is logged with its exact plant time; the
truth loop's standing (its reports, as /status shows them) is taken from the running agent
before it is stopped, so the last one holds every run's results (they live in quality.db).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.loader import load_config
from agent.control.audit import verify_file
from agent.control.audit_chain import ChainReport
from agent.control.loop_stats import LoopStats
from agent.demo.cloud import CloudReceiver
from agent.demo.evaluate.runs import DRIVES
from agent.demo.runner import SimulatedPlant
from agent.demo.writes import AuditWrites, audit_writes
from agent.quality.monitor import LoopQualityReport
from agent.service.app import App

PLANT_SPAN_S = 6 * 3600.0
"""Plant time the story covers, whatever the wall duration."""
LAB_TIME_SCALE = 10.0
"""The lab answers 10x faster than a real one (C3S in 3 min instead of 30 min)."""
S28_TARGET_MPA = 47.5
WATCHDOG_WALL_S = 15.0
MODELS = next(
    (p for p in (Path(__file__).resolve().parents[2] / "models", Path(__file__).with_name("models"))
     if (p / "demo-signing-key.pub.pem").is_file()),
    Path(__file__).resolve().parents[2] / "models",
)  # fmt: skip
"""The demo model: models/ of the source tree, or the copy packaged inside the wheel."""


_COMPRESSED: dict[tuple[str, str], Callable[[float, float], float]] = {
    ("loops", "cadence_s"): lambda v, x: max(1.0, round(v / x, 3)),
    ("loops", "min_interval_s"): lambda v, x: round(v / x, 3),
    ("loops", "estimator_window_s"): lambda v, x: max(5.0, round(v / x, 3)),
    ("loops", "max_rate_per_h"): lambda v, x: round(v * x, 3),
    ("loops", "readback_timeout_s"): lambda v, x: 5.0,
    ("loops.inputs", "window_s"): lambda v, x: 1.0,  # the latest C3S result only (docs/demo.md)
    ("quality.tags", "window_s"): lambda v, x: v / x,  # a lab sample's window, on the wall clock
    ("product_selection", "transition_s"): lambda v, x: v / x,  # the mill's old material
}
"""(TOML table, key) -> the compressed value of `key = value` in that table, at scale x."""
_TABLE = re.compile(r"^\s*\[\[?\s*([\w.\-]+)\s*\]\]?\s*(#.*)?$")
_NUMBER = re.compile(r"^(\s*)([\w\-]+)(\s*=\s*)([-+]?[\d.]+(?:[eE][-+]?\d+)?)")


def compress(text: str, scale: float) -> str:
    """The demo config with its wall-clock loop timings divided by `scale` (see docs/demo.md):
    each `key = number` line is compressed by the rule of the TOML table it lies in."""
    out: list[str] = []
    table = ""
    for line in text.splitlines(keepends=True):
        if (header := _TABLE.match(line)) is not None:
            table = header[1]
        elif (m := _NUMBER.match(line)) is not None and (table, m[2]) in _COMPRESSED:
            value = _COMPRESSED[(table, m[2])](float(m[4]), scale)
            out.append(f"{m[1]}{m[2]}{m[3]}{value!r}{line[m.end() :]}")
            continue
        out.append(line)
        if table == "loops" and line.startswith("model = "):  # a loop's own feature window
            out.append(f"feature_window_s = {max(1.0, round(60.0 / scale, 3))!r}\n")
    text = "".join(out)
    text = text.replace('models_dir = "../models"', f'models_dir = "{MODELS}"')
    text = text.replace(
        'model_public_key_file = "../models/', f'model_public_key_file = "{MODELS}/'
    )
    text = text.replace('log_level = "info"', 'log_level = "warning"')
    return text.replace("[api]\n", "[api]\nenabled = false\n")


@dataclass
class Tally:
    """What the agent did over all its runs in this demo."""

    writes: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    samples_buffered: int = 0
    writes_after_restart: int = 0
    lab_unmatched: int = 0  # lab results no loop had a prediction for in their window
    ok_by_loop: Counter[str] = field(default_factory=Counter)  # writes read back, per loop


@dataclass(frozen=True)
class TruthRow:
    """One record of the hidden plant state (and what the agent predicted at that moment)."""

    plant_s: float  # plant seconds since the start
    s28: float
    s_clk: float
    separator: float
    limestone: float
    cf: float
    spec_energy: float
    feed: float
    predicted_s28: float | None
    drive_kw: float = math.nan  # mill, separator, bucket elevator and fan: the energy paid


def truth_row(plant_s: float, t: dict[str, float], predicted: float | None) -> TruthRow:
    """The row of the hidden truth `t` (Mill.truth()) at `plant_s`."""
    return TruthRow(plant_s, t["S28"], t["S_clk"], t["n"], t["LS"], t["CF"], t["e_ss"], t["F_m"],
                    predicted, sum(t[name] for name in DRIVES))  # fmt: skip


async def until(check: Callable[[], object], timeout_s: float = math.inf) -> bool:
    """Poll `check` every 0.1 s until it is truthy (True) or `timeout_s` passes (False)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def co2_per_t(cf: float, spec_energy: float) -> float:
    """kg CO2 per tonne of cement: clinker factor x 830 + kWh/t x 0.4 (plant-model 2.3)."""
    return cf * 830.0 + spec_energy * 0.4


class Stage:
    """The plant, the cloud and the agent of one demo run."""

    def __init__(self, plant: SimulatedPlant, cloud: CloudReceiver, config: Path) -> None:
        self.plant, self.cloud, self.config = plant, cloud, config
        self.state_dir = config.parent / "state"
        self.state_dir.mkdir(mode=0o750, exist_ok=True)
        self.start_time = plant.mill.time
        self.agent_id = load_config(config).settings.agent.id
        self.app: App | None = None
        self.stopped_stats: dict[str, LoopStats] = {}  # the last stopped agent's loops
        self.runs = 0
        self.started_at: list[float] = []  # the wall time (the audit's clock) of each start
        self.events: list[tuple[float, str, dict[str, float]]] = []
        self.truth: list[TruthRow] = []
        self.last_write: dict[str, dict[str, Any]] = {}  # by loop, over every agent run
        self._task: asyncio.Task[None] | None = None
        self._past = Tally()
        self._lab: dict[str, LoopQualityReport] = {}

    @property
    def plant_s(self) -> float:
        """Plant seconds since the story started."""
        return self.plant.mill.time - self.start_time

    async def start_agent(self) -> App:
        """A new App on the demo's state directory; returns once its loops exist."""
        if self.app is not None:
            raise RuntimeError("the agent is already running")
        app = App(load_config(self.config), self.state_dir)
        self.app, self.runs = app, self.runs + 1
        self.started_at.append(time.time())
        self._task = asyncio.create_task(app.run(), name=f"agent-{self.runs}")
        task = self._task
        await until(lambda: app.control is not None or task.done())
        if task.done():
            task.result()  # raise what stopped it
        return app

    async def stop_agent(self) -> None:
        """Ordered shutdown of the running App (control first: the heartbeat stops)."""
        self.lab()  # the truth loop's last standing, while its store is open
        app, task, self.app, self._task = self.app, self._task, None, None
        if app is None or task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.stopped_stats = {s.name: s for s in app.loop_stats}  # its writes up to the stop
        self._fold(app, self._past, restarted=self.runs > 1)

    def _fold(self, app: App, into: Tally, *, restarted: bool) -> None:
        for stats in app.loop_stats:
            into.writes.update(stats.writes)
            into.outcomes.update(stats.outcomes)
            into.ok_by_loop[stats.name] += stats.writes["ok"]
            for (gate, verdict), n in stats.verdicts.items():
                if verdict == "refuse":
                    into.refusals[gate] += n
            if restarted:
                into.writes_after_restart += stats.writes["ok"]
        if app.builder is not None:
            into.samples_buffered += app.builder.samples
        if app.control is not None and app.control.truth is not None:
            into.lab_unmatched += app.control.truth.unmatched

    def lab(self) -> list[LoopQualityReport]:
        """The truth loop's report per loop (the running agent's, else the last agent's)."""
        app = self.app
        truth = None if app is None or app.control is None else app.control.truth
        if app is not None and truth is not None:
            self._lab = {st.name: truth.report(st.name) for st in app.loop_stats}
        return list(self._lab.values())

    def lab_units(self) -> dict[str, str]:
        """Test -> unit of the configured lab tags."""
        return {t.test: t.unit for t in load_config(self.config).settings.quality.tags}

    def tally(self) -> Tally:
        """Totals over every agent run so far, the running one included."""
        out = Tally(Counter(self._past.writes), Counter(self._past.refusals),
                    Counter(self._past.outcomes), self._past.samples_buffered,
                    self._past.writes_after_restart, self._past.lab_unmatched,
                    Counter(self._past.ok_by_loop))  # fmt: skip
        if self.app is not None:
            self._fold(self.app, out, restarted=self.runs > 1)
        return out

    def loop(self, name: str, *, stopped: bool = False) -> LoopStats | None:
        """The running agent's loop (`stopped`: else the last stopped agent's)."""
        if self.app is None:
            return self.stopped_stats.get(name) if stopped else None
        return next((s for s in self.app.loop_stats if s.name == name), None)

    def inject(self, kind: str, **params: float) -> None:
        """Apply a plant event now and log it for the counterfactual."""
        self.plant.mill.inject(kind, None, **params)
        self.events.append((self.plant_s, kind, dict(params)))

    def record(self) -> None:
        """Append one truth row (called every half second of wall time)."""
        for name in ("separator", "limestone"):
            st = self.loop(name)
            if st is not None and st.last.get("outcome") == "write":
                self.last_write[name] = dict(st.last["write"])
        sep = self.loop("separator")
        predicted = (sep.last.get("predicted") or {}).get("s28") if sep is not None else None
        self.truth.append(truth_row(self.plant_s, self.plant.mill.truth(), predicted))

    async def drain(self, timeout_s: float) -> int:
        """Upload what the last agent run left in the buffer, as its next start would; returns
        the blocks still pending (0 when everything reached the receiver)."""
        from agent.buffer.buffer import Buffer
        from agent.domain.clock import SystemClock
        from agent.sync.uploader import Uploader

        loaded = load_config(self.config)
        s = loaded.settings
        clock = SystemClock()
        buffer = await Buffer.open(self.state_dir / "buffer.db", agent_id=s.agent.id,
                                   max_bytes=s.sync.max_buffer_bytes, clock=clock)  # fmt: skip
        uploader = Uploader(buffer, s.sync, agent_id=s.agent.id, token=None, clock=clock,
                            base_dir=self.config.parent)  # fmt: skip
        task = asyncio.create_task(uploader.run(), name="demo-drain")
        try:
            await until(lambda: not buffer.budget().blocks_pending, timeout_s)
            return buffer.budget().blocks_pending
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await buffer.close()

    def audit(self) -> tuple[ChainReport, Counter[str]]:
        """The audit chain's verification and the reasons of every cycle that did not write,
        with numbers masked ("guard: min_interval: 2.1 s ..." -> "guard: min_interval: # s")."""
        path = self.state_dir / "audit.db"
        bodies = self._bodies()
        reasons: Counter[str] = Counter()
        for body in bodies:
            if body.get("kind") == "cycle" and body.get("outcome") != "write":
                reason = str(body.get("reason") or body.get("outcome"))
                reasons[re.sub(r"-?\d[\d.,e+-]*", "#", reason)] += 1
        return verify_file(path), reasons

    def _bodies(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(f"file:{self.state_dir / 'audit.db'}?mode=ro", uri=True)
        try:
            return [json.loads(b) for (b,) in db.execute("SELECT body FROM audit ORDER BY seq")]
        finally:
            db.close()

    def audit_writes(self) -> AuditWrites:
        """The setpoint writes as the audit log holds them (agent.demo.writes)."""
        return audit_writes(self._bodies(), self.started_at[1] if self.runs > 1 else None)

    def received_samples(self) -> int:
        return self.cloud.store.counts(self.agent_id).get("samples", 0)
