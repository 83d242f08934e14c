"""`edge-agent evaluate`: the operator baseline and the agent on identical weather, the
per-product figures, the saving at equal conformity, the report and charts.

Owns: the order of an evaluation (the lever windows from the evaluation's configuration, run A,
run B, figures, charts, report.md, evaluate.log with the agent's log lines) and what the
command prints: progress, the per-product table, each product's saving or refusal and the goal.
Must not: compute a figure or decide a verdict itself (agent.demo.evaluate.figures), or be
imported by the daemon.
Invariants: exit 0 when the report is written, 78 when the evaluation's configuration does not
load, 130 on Ctrl-C; an expected failure prints a message, never a traceback; the two runs use
the same seed and scenario.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.config.loader import load_config
from agent.demo.chart import ChartUnavailableError
from agent.demo.evaluate.charts import draw
from agent.demo.evaluate.operator import Recipe
from agent.demo.evaluate.report import (
    Evaluation,
    evaluate_overall,
    evaluate_products,
    markdown,
    table_lines,
)
from agent.demo.evaluate.runs import RunResult, run_agent, run_baseline
from agent.demo.evaluate.scenario import SCENARIOS, Scenario, recipes
from agent.demo.headless.config import rig_config
from agent.demo.headless.rig import DAY, HeadlessRig
from agent.demo.mill import PRODUCT
from agent.domain.errors import ConfigError
from agent.service.logs import configure_logging

__all__ = ["run_evaluate"]


def say(text: str, *, err: bool = False) -> None:
    """One line to the terminal (stderr for failures), flushed: progress is read live."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _recipes(window: str) -> dict[str, Recipe]:
    """Every product's recipe from the evaluation's configuration."""
    with tempfile.TemporaryDirectory(prefix="edge-agent-evaluate-") as folder:
        return recipes(load_config(rig_config(Path(folder), product=PRODUCT)).settings, window)


def _progress(days: float) -> Callable[[HeadlessRig], None]:
    """A progress line per plant day of the agent's run (it is the long one)."""
    started = time.perf_counter()

    def on_rig(rig: HeadlessRig) -> None:
        start = rig.mill.time
        said = [0]

        def tick() -> None:
            day = int((rig.mill.time - start) // DAY)
            if day > said[0]:
                said[0] = day
                say(f"agent: plant day {day} of {days:g} ({time.perf_counter() - started:.0f} s)")

        rig.after_tick.append(tick)

    return on_rig


async def _agent(days: float, seed: int, scenario: Scenario,
                 table: dict[str, Recipe]) -> RunResult:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edge-agent-evaluate-") as folder:
        return await run_agent(seed=seed, days=days, scenario=scenario, folder=Path(folder),
                               recipes=table, on_rig=_progress(days))  # fmt: skip


def run_evaluate(*, days: float, seed: int, out: Path, scenario: str, plain: bool) -> int:
    """Run both runs and write the report; returns the exit code."""
    started = time.perf_counter()
    chosen = SCENARIOS[scenario]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "evaluate.log").open("w", encoding="utf-8") as log:
        configure_logging("info", json=True, stream=log)
        try:
            table = _recipes(chosen.operators)
            say(f"evaluate: {days:g} plant days, seed {seed}, scenario {scenario!r}; "
                f"report in {out}")  # fmt: skip
            baseline = run_baseline(seed=seed, days=days, scenario=chosen, recipes=table)
            say(f"baseline: {days:g} plant days in {baseline.wall_s:.0f} s")
            agent = asyncio.run(_agent(days, seed, chosen, table))
        except KeyboardInterrupt:
            say("evaluate stopped; nothing is left running", err=True)
            return 130
        except ConfigError as exc:
            for problem in exc.problems:
                say(problem.render(), err=True)
            say("edge-agent evaluate: the evaluation's configuration does not load", err=True)
            return 78
    say(f"agent: {days:g} plant days in {agent.wall_s:.0f} s")
    products = evaluate_products(baseline, agent, table)
    ev = Evaluation(days, seed, chosen, baseline, agent, products, table,
                    evaluate_overall(baseline, agent, table, products))  # fmt: skip
    try:
        charts, note = draw(out, ev), ""
    except ChartUnavailableError as exc:
        charts, note = [], f"Charts not drawn: {exc}"
    wall = time.perf_counter() - started
    (out / "report.md").write_text(markdown(ev, wall_s=wall, charts=charts, chart_note=note),
                                   encoding="utf-8")  # fmt: skip
    lines = table_lines(ev)
    if plain:
        say("\n".join(lines))
    else:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown("\n".join(lines)))
    say(f"report: {out / 'report.md'}")
    say(f"charts: {', '.join(str(out / c) for c in charts) if charts else note}")
    say(f"wall time: {wall:.0f} s")
    return 0
