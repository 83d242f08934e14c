"""What the demo shows: the live terminal view (rich) and the plain lines (no terminal).

Owns: the layout of the story (announcements, the mill as the agent reads it, each loop's
prediction and strength margin with its numbers, target (capped as the guard caps it),
suggestion, guard verdict and last write with its read-back, writes this run and over the
demo, the CO2 panel against the operator baseline (agent.demo.panels), buffer and sync with
the outage budget) and the format of the plain `announce:`, `write:` and `status:` lines.
Must not: act on the plant, the cloud or the agent; it only reads them. Values labelled as
the agent's are the agent's latest samples; the simulator's hidden truth and the simulated
PLC's own flags are labelled as such.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from agent.demo.baseline import OperatorBaseline
from agent.demo.panels import MARGIN, co2_panel, loop_target, margin, target_cell
from agent.demo.stage import S28_TARGET_MPA, Stage

MILL_TAGS = (
    ("FeedRate", "t/h"), ("SeparatorSpeed", "rpm"), ("LimestoneShare", "%"),
    ("MillPower", "kW"), ("ProductFineness", "cm2/g"), ("LabBlaine", "cm2/g"),
    ("LabClinkerC3S", "%"), ("LabStrength28d", "MPa"), ("RemoteActive", ""),
    ("WatchdogFault", ""), ("HeartbeatEcho", ""),
)  # fmt: skip
UNITS = {"separator": "rpm", "limestone": "%"}


@dataclass
class Story:
    """The announcements so far: (key, wall s, plant s, text)."""

    started: float = field(default_factory=time.monotonic)
    said: list[tuple[str, float, float, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def clock(plant_s: float) -> str:
    minutes = int(plant_s // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:,.2f}"
    return "-" if v is None else str(v)


def _num(v: Any, fmt: str = ".1f") -> str:
    return "-" if not isinstance(v, int | float) else format(v, fmt)


def budget_line(stage: Stage) -> str:
    """Buffer, outage budget and what the cloud holds."""
    app = stage.app
    held = stage.received_samples()
    if app is None or app.buffer is None:
        return f"buffer: the agent is not running | the cloud holds {held:,} samples"
    b = app.buffer.budget()
    oldest = "-" if b.oldest_unsent_age_s is None else f"{b.oldest_unsent_age_s:.0f} s"
    hours = "-" if b.hours_left is None else f"{b.hours_left:,.0f} h"
    failing = app.uploader.stats().consecutive_failures if app.uploader is not None else 0
    state = f"failing ({failing} attempts in a row)" if failing else "ok"
    return (
        f"buffer: {b.blocks_pending} blocks ({b.samples_pending:,} samples) pending, oldest "
        f"unsent {oldest}, {b.bytes_used / 1e6:.2f} MB of {b.max_bytes / 1e6:.0f} MB, "
        f"{hours} left at this rate | sync {state} | the cloud holds {held:,} samples"
    )


def _loop_row(stage: Stage, name: str) -> list[str]:
    st = stage.loop(name)
    if st is None:
        return [f"[bold]{name}[/]", "agent stopped", "-", "-", "-", "-"]
    last, unit = st.last, UNITS.get(name, "")
    p = last.get("predicted") or {}
    predicted = "-"
    if p:
        m = margin(stage, name, p)
        said = m.text() if m is not None else f"margin {_num(p.get('strength_margin'), '+.1f')}"
        predicted = (f"{_num(p.get('s28'))} MPa, Blaine {_num(p.get('blaine'), ',.0f')}"
                     f"\n{said}")  # fmt: skip
    w = stage.last_write.get(name) or {}
    write = "-"
    if w:
        write = (f"{_num(w.get('from'), '.1f')} -> {_num(w.get('value'), '.1f')}\n"
                 f"read back {_num(w.get('readback'), '.1f')}")  # fmt: skip
    refused = ", ".join(
        f"{g} {n}" for (g, v), n in st.verdicts.most_common() if v == "refuse"
    ).split(", ")[:3]
    outcome = last.get("outcome", "-")
    verdict = f"[{'green' if outcome == 'write' else 'yellow'}]{outcome}[/]: " + str(
        last.get("reason") or "every gate passed"
    )
    return [
        f"[bold]{name}[/]\n{st.state}",
        predicted,
        f"{target_cell(stage, name, last.get('target'), unit)}\n"
        f"next {_num(last.get('suggestion'), '.1f')}",
        verdict,
        write,
        f"{st.writes['ok']} this run, {stage.tally().ok_by_loop[name]} in all\n"
        + ", ".join(r for r in refused if r),
    ]


def _tags(stage: Stage) -> Table:
    tags = Table(title="Mill 1 as the agent reads it over OPC UA", box=box.SIMPLE, expand=True,
                 show_header=False, padding=(0, 1))  # fmt: skip
    for _ in range(3):
        tags.add_column(style="dim")
        tags.add_column(justify="right")
    app = stage.app
    cells = []
    for name, unit in MILL_TAGS:
        s = app.latest.get(name) if app is not None else None
        text = "(agent stopped)" if app is None else "-" if s is None else _value(s.value)
        if s is not None and s.quality.name != "GOOD":
            text += f" ({s.quality.name.lower()})"
        cells += [name, f"{text} {unit}".rstrip()]
    cells += [""] * (-len(cells) % 6)
    for k in range(0, len(cells), 6):
        tags.add_row(*cells[k : k + 6])
    return tags


def render(stage: Stage, story: Story, duration_s: float, base: OperatorBaseline) -> Group:
    """The live view (about 40 lines at 100 columns)."""
    mill = stage.plant.mill
    head = (
        f"[bold]edge-agent demo[/]  t = {story.elapsed():.0f} s of {duration_s:.0f}  |  plant "
        f"time {clock(stage.plant_s)} (x{stage.plant.time_scale:.0f})  |  agent run "
        f"{stage.runs}{'' if stage.app else ' (stopped)'}  |  Ctrl-C to stop"
    )
    recent = story.said[-2:]
    said = "\n".join(
        f"[{'bold yellow' if i == len(recent) - 1 else 'dim'}]{clock(p)}  {text}[/]"
        for i, (_, _, p, text) in enumerate(recent)
    )
    truth = mill.truth()
    plc = {n: mill.read(n).value for n in ("RemoteActive", "WatchdogFault")}
    hidden = (
        f"[dim]simulator truth (what the lab will say in 28 days):[/] S28 {truth['S28']:.1f} MPa"
        f" (loop's target {S28_TARGET_MPA}, lower limit {base.recipe.s28_lower_mpa:g}), clinker "
        f"{truth['S_clk']:.1f} MPa  [dim]| simulated PLC:[/] "
        + ", ".join(f"{k} {_value(v)}" for k, v in plc.items())
    )
    loops = Table(title="Control loops: prediction -> target -> guard -> write + read-back",
                  box=box.SIMPLE_HEAD, expand=True, padding=(0, 1))  # fmt: skip
    loops.caption = MARGIN
    for col in ("loop", "predicted S28", "target", "verdict", "last write", "writes read back"):
        loops.add_column(col)
    for name in ("separator", "limestone"):
        loops.add_row(*_loop_row(stage, name))
    return Group(Panel(said or "starting", title=head), _tags(stage), hidden, loops,
                 co2_panel(stage, base), f"[dim]{budget_line(stage)}[/]")  # fmt: skip


class Plain:
    """Plain lines: one per announcement, one per write, a status line now and then."""

    STATUS_EVERY_S = 10.0

    def __init__(self, stage: Stage, story: Story) -> None:
        self.stage, self.story = stage, story
        self._seen: dict[tuple[int, str], int] = {}
        self._said = 0
        self._status = -math.inf

    def lines(self) -> list[str]:
        out = []
        for key, wall, plant, text in self.story.said[self._said :]:
            out.append(f"announce: {key}: t={wall:.1f}s plant={clock(plant)} {text}")
        self._said = len(self.story.said)
        for name in ("separator", "limestone"):
            st = self.stage.loop(name, stopped=True)  # a write just before a stop is shown too
            if st is None:
                continue
            ok, ident = st.writes["ok"], (self.stage.runs, name)
            if ok > self._seen.get(ident, 0) and (w := st.last.get("write")):
                p = st.last.get("predicted") or {}
                m = margin(self.stage, name, p)
                terms = "-" if m is None else f"{m.predicted:g}-{m.target:g}-{m.k:g}x{m.rmse:g}"
                out.append(
                    f"write: loop={name} from={_num(w.get('from'), '.2f')} "
                    f"to={_num(w.get('value'), '.2f')} readback={_num(w.get('readback'), '.2f')}"
                    f" unit={UNITS[name]} predicted_s28={_num(p.get('s28'), '.2f')} "
                    f"margin={_num(p.get('strength_margin'), '+.4f')} margin_terms={terms} "
                    f"target={_num(loop_target(self.stage, name, st.last.get('target')), '.2f')} "
                    f"optimiser_target={_num(st.last.get('target'), '.2f')} "
                    f"writes={ok} run={self.stage.runs} "
                    f"total={self.stage.tally().ok_by_loop[name]} t={self.story.elapsed():.1f}s "
                    f"plant={clock(self.stage.plant_s)}"
                )
            self._seen[ident] = ok
        if self.story.elapsed() - self._status >= self.STATUS_EVERY_S:
            self._status = self.story.elapsed()
            t = self.stage.plant.mill.truth()
            out.append(
                f"status: t={self.story.elapsed():.1f}s plant={clock(self.stage.plant_s)} "
                f"s28_true={t['S28']:.2f} separator={t['n']:.0f} limestone={t['LS']:.2f} | "
                + budget_line(self.stage)
            )
        return out
