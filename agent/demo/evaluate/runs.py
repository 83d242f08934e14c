"""The two runs of an evaluation on identical weather: (A) the operator baseline alone, (B) the
agent's loops in closed loop with the operators doing only what the agent does not.

Owns: `Recorder` (the plant's hidden truth sampled once per `sample_s`: product, feed,
clinker factor, drive power, 28-day strength, levers; what the figures are computed from; and
the trips, Running going false), `strength_results` (every 4-hourly 28-day composite the lab
took in the run, entered or still waiting for its 28 days: the value it reports, lab noise
included), `run_baseline` and `run_agent` (agent.demo.headless.rig with every loop of the
evaluation config), `RunResult`.
Must not: re-implement a decision of the agent or of the operators, mock an agent module, or
change the mill except through its public API (step, operator, inject, change_product).
Invariants: both runs build the mill with the same seed, dt, lab and watchdog settings and
play the same scenario at the same ticks, so the mill's disturbances and lab noise are the
same draws (they depend on the tick count only); run A's mill is in local control all along.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.config.products import product_loop
from agent.control.record import Outcome
from agent.demo.evaluate.operator import Action, Operator, Recipe
from agent.demo.evaluate.scenario import EventPlayer, Scenario
from agent.demo.headless.rig import DAY, Cycle, HeadlessRig, headless_rig
from agent.demo.lab_record import LabRecord
from agent.demo.mill import Mill

__all__ = ["DT_S", "SAMPLE_S", "Recorder", "RunResult", "run_agent", "run_baseline",
           "strength_results"]  # fmt: skip

DT_S = 10.0
"""Sim seconds per tick: the physics match dt 0.1 s at steady state (exact lags and delays)."""
SAMPLE_S = 60.0
CADENCE_S = 600.0
"""The loops' cadence in the evaluation (the demo's is 60 s): no move is lost, the separator's
minimum interval is 600 s and the limestone loop's 1800 s."""
DRIVES = ("P", "P_sep", "P_be", "P_fan")
"""The drives whose energy counts per tonne: mill, separator, bucket elevator, fan."""


@dataclass
class Recorder:
    """The plant's truth once per `every` ticks (row: time, product, feed t/h, clinker factor,
    drive power kW, true 28-day strength, limestone %, separator rpm)."""

    mill: Mill
    every: int
    rows: list[tuple[float, str, float, float, float, float, float, float]] = field(
        default_factory=list
    )
    trips: list[float] = field(default_factory=list)
    """The times the mill tripped (Running went false)."""
    _k: int = 0
    _running: bool = True

    def tick(self) -> None:
        running = self.mill.read("Running").value is True
        if self._running and not running:
            self.trips.append(self.mill.time)
        self._running = running
        self._k += 1
        if self._k % self.every:
            return
        t = self.mill.truth()
        power = sum(t[name] for name in DRIVES)
        self.rows.append((self.mill.time, self.mill.product, t["F_m"], t["CF"], power, t["S28"],
                          t["LS"], t["n"]))  # fmt: skip


def strength_results(mill: Mill) -> list[LabRecord]:
    """Every 28-day result of the run's composites by sample time: the ones entered and the
    ones the lab has scheduled (tested, waiting for their 28 days and entry)."""
    out = [r for r in (*mill.lab_results(), *mill.lab_scheduled()) if r.test == "s28"]
    return sorted(out, key=lambda r: r.sample_time)


@dataclass
class RunResult:
    """What one run leaves for the figures and the report."""

    label: str
    rows: list[tuple[float, str, float, float, float, float, float, float]]
    s28: list[LabRecord]
    actions: list[Action]
    events: list[tuple[float, str]]
    start: float
    wall_s: float
    writes: dict[str, int] = field(default_factory=dict)
    closed_loop_h: dict[str, float] = field(default_factory=dict)
    step_downs: list[str] = field(default_factory=list)
    cycles: int = 0
    blocked: dict[str, int] = field(default_factory=dict)
    """Why cycles were blocked: "loop: reason" (figures as #) -> cycles, most first."""
    envelopes: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Each loop's envelope as configured, per product (its lever's window for the agent)."""
    trips: list[float] = field(default_factory=list)


def _mill(seed: int) -> Mill:
    return Mill(seed, dt=DT_S, lab_time_scale=1.0, wd_timeout_s=3 * SAMPLE_S)


def run_baseline(*, seed: int, days: float, scenario: Scenario,
                 recipes: dict[str, Recipe]) -> RunResult:  # fmt: skip
    """(A) the mill and its operators, no agent."""
    started = time.perf_counter()
    mill = _mill(seed)
    operator = Operator(mill, recipes)
    player = EventPlayer(mill, scenario, mill.time, days, on_product=operator.product_changed)
    recorder = Recorder(mill, round(SAMPLE_S / DT_S))
    start = mill.time
    operator.start(remote_after=False)
    for _ in range(round(days * DAY / DT_S)):
        mill.step(1)
        player.tick()
        operator.tick()
        recorder.tick()
    return RunResult("baseline", recorder.rows, strength_results(mill), operator.actions,
                     player.played, start, time.perf_counter() - started,
                     trips=recorder.trips)  # fmt: skip


def acting(cycle: Cycle) -> bool:
    """The cycle was a loop acting in effective closed loop (not stepped down, not blocked)."""
    rec = cycle.record
    return rec.mode == "closed_loop" and rec.effective_mode is None and \
        rec.outcome is not Outcome.BLOCKED  # fmt: skip


def _no_loop_acts(rig: HeadlessRig, shift_s: float) -> Callable[[], bool]:
    def none_acted() -> bool:
        since = rig.mill.time - shift_s
        for cycle in reversed(rig.cycles):
            if cycle.time < since:
                break
            if acting(cycle):
                return False
        return True

    return none_acted


async def run_agent(*, seed: int, days: float, scenario: Scenario, folder: Path,
                    recipes: dict[str, Recipe] | None = None,
                    on_rig: Callable[[HeadlessRig], None] | None = None) -> RunResult:  # fmt: skip
    """(B) the agent's loops on the same mill; the operators load recipes and correct only
    while no loop acts in effective closed loop (over the last shift). `recipes` None: from
    the rig's configuration (agent.demo.evaluate.scenario.recipes)."""
    from agent.demo.evaluate.scenario import recipes as recipes_of

    started = time.perf_counter()
    mill = _mill(seed)
    start = mill.time
    async with headless_rig(folder, seed=seed, mill=mill, cadence_s=CADENCE_S,
                            sample_s=SAMPLE_S, dt=DT_S) as rig:  # fmt: skip
        if on_rig is not None:
            on_rig(rig)
        table = recipes if recipes is not None else recipes_of(rig.loaded.settings)
        operator = Operator(mill, table, hand_back=True)
        operator.may_correct = _no_loop_acts(rig, operator.shift_s)
        player = EventPlayer(mill, scenario, start, days, on_product=operator.product_changed)
        recorder = Recorder(mill, round(SAMPLE_S / DT_S))
        operator.start(remote_after=True)
        rig.after_tick += [player.tick, operator.tick, recorder.tick]
        await rig.run_until(start + days * DAY)
        writes = {lp.loop.name: len([w for w in rig.driver.writes if w.tag == lp.loop.target_tag])
                  for lp in rig.loops}  # fmt: skip
        hours = {lp.loop.name: sum(CADENCE_S for c in rig.cycles
                                   if c.loop == lp.loop.name and acting(c)) / 3600.0
                 for lp in rig.loops}  # fmt: skip
        steps = [f"{r['loop']}: {r.get('reason', r.get('test', ''))}"
                 for r in rig.records("quality_step_down")]  # fmt: skip
        return RunResult("agent", recorder.rows, strength_results(mill), operator.actions,
                         player.played, start, time.perf_counter() - started, writes, hours,
                         steps, len(rig.cycles), _blocked(rig.cycles),
                         _envelopes(rig), recorder.trips)  # fmt: skip


def _envelopes(rig: HeadlessRig) -> dict[str, tuple[float | None, float | None]]:
    """Each loop's envelope as configured, per product when the configuration has products."""
    s = rig.loaded.settings
    out: dict[str, tuple[float | None, float | None]] = {}
    for lp in s.loops:
        if not s.products:
            out[lp.name] = (lp.envelope_min, lp.envelope_max)
        for p in s.products:
            mine = product_loop(lp, p)
            out[f"{p.name}: {lp.name}"] = (mine.envelope_min, mine.envelope_max)
    return out


def _blocked(cycles: list[Cycle]) -> dict[str, int]:
    """Why cycles were blocked, reasons with their figures as #, most frequent first."""
    counts: dict[str, int] = {}
    for c in cycles:
        if c.record.outcome is Outcome.BLOCKED:
            reason = re.sub(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#",
                            str(c.record.reason))  # fmt: skip
            key = f"{c.loop}: {reason}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
