"""`edge-agent demo`: the whole story of the plant loop, in one process, in about 3 minutes.

Owns: the demo's process life (start the simulated plant, the reference cloud receiver and
the agent on a copy of config/demo.toml pointed at them, play agent.demo.scenario, then the
summary and the chart), the refresh loop of the live view (agent.demo.view) or of the
plain lines when stdout is not a terminal, the truth record every half second and the
operator baseline advanced to the same plant time (in a worker thread: the event loop stays
free), and clean-up on the way out (Ctrl-C or SIGTERM included).
Must not: decide the story (scenario), compute figures (summary) or draw (view, chart).
Invariants: exits 0 after a complete story; everything it started is stopped on exit (the
agent first, then the cloud and the plant); the demo's state lives in a temporary directory;
everything listens on 127.0.0.1; the chart and the agent's log are kept (paths printed);
without matplotlib (the `demo` extra, absent from the plant install) the story runs
all the same and the `chart:` line says the chart was not drawn and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.live import Live

from agent.config.loader import load_config
from agent.demo import chart
from agent.demo.baseline import OperatorBaseline
from agent.demo.cloud import CloudReceiver
from agent.demo.conformity import compare
from agent.demo.evaluate.scenario import recipes
from agent.demo.runner import SimulatedPlant
from agent.demo.scenario import MIN_DURATION_S, play
from agent.demo.stage import LAB_TIME_SCALE, PLANT_SPAN_S, WATCHDOG_WALL_S, Stage, compress
from agent.demo.summary import Baseline, Figures, Lab, lines, story
from agent.demo.view import Plain, Story, render
from agent.domain.errors import ConfigError
from agent.service.logs import configure_logging
from agent.service.state_dir import StateDirError

DEFAULT_DURATION_S = 180.0
REFRESH_S = 0.5


def demo_config_text() -> str:
    """config/demo.toml from the source tree, or the copy packaged inside the wheel."""
    for candidate in (Path(__file__).parents[2] / "config" / "demo.toml",
                      Path(__file__).with_name("demo.toml")):  # fmt: skip
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError("config/demo.toml is missing from this installation")


def write_demo_config(folder: Path, opcua_url: str, modbus_port: int, cloud_url: str) -> Path:
    """The demo config with the plant's real ports and a private state directory."""
    text = demo_config_text()
    text = re.sub(r'endpoint = "opc\.tcp://[^"]*"', f'endpoint = "{opcua_url}"', text)
    text = re.sub(r"\nport = 5020\n", f"\nport = {modbus_port}\n", text)
    text = re.sub(r'state_dir = "[^"]*"', 'state_dir = "state"', text)
    text = re.sub(r'\nurl = "http://127\.0\.0\.1:8800"', f'\nurl = "{cloud_url}"', text)
    path = folder / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def _watch(stage: Stage, story: Story, duration_s: float, printer: Plain | None, *,
                 scenario: asyncio.Task[None], base: OperatorBaseline) -> None:  # fmt: skip
    """Refresh the view (`printer`: plain lines), record the truth and advance the baseline
    until the scenario ends."""
    plain = printer is not None
    live = contextlib.nullcontext() if plain else Live(console=Console(), auto_refresh=False)
    with live as screen:
        while True:
            stage.record()
            await asyncio.to_thread(base.advance, stage.truth[-1].plant_s, list(stage.events))
            if screen is not None:
                screen.update(render(stage, story, duration_s, base), refresh=True)
            elif printer is not None:
                for line in printer.lines():
                    print(line, flush=True)
            if scenario.done():
                scenario.result()  # raise what stopped it
                return
            await asyncio.sleep(REFRESH_S)


async def _demo(*, duration_s: float, seed: int, opcua_port: int, modbus_port: int,
                plain: bool, out: Path, stamp: str) -> None:  # fmt: skip
    scale = PLANT_SPAN_S / duration_s
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as folder:
        async with (
            SimulatedPlant(seed=seed, time_scale=scale, lab_time_scale=LAB_TIME_SCALE,
                           opcua_port=opcua_port, modbus_port=modbus_port, lab_noise=False,
                           wd_timeout_s=WATCHDOG_WALL_S * scale) as plant,
            CloudReceiver(Path(folder) / "cloud") as cloud,
        ):  # fmt: skip
            path = write_demo_config(Path(folder), plant.opcua_url, plant.modbus_port, cloud.url)
            path.write_text(compress(path.read_text(encoding="utf-8"), scale), encoding="utf-8")
            loaded = load_config(path)  # a broken demo config fails here, before anything else
            stage = Stage(plant, cloud, path)
            base = OperatorBaseline(seed=seed, start_time=stage.start_time,
                                    lab_time_scale=LAB_TIME_SCALE,
                                    wd_timeout_s=WATCHDOG_WALL_S * scale,
                                    recipes=recipes(loaded.settings))  # fmt: skip
            print(f"simulated mill serving OPC UA at {plant.opcua_url} and Modbus TCP at "
                  f"127.0.0.1:{plant.modbus_port}; reference cloud at {cloud.url}; "
                  f"{PLANT_SPAN_S / 3600:.0f} plant hours in {duration_s:.0f} s "
                  f"(x{scale:.0f}); Ctrl-C to stop", flush=True)  # fmt: skip
            said = Story()

            def announce(key: str, text: str) -> None:
                said.said.append((key, said.elapsed(), stage.plant_s, text))

            scenario = asyncio.create_task(play(stage, announce, recipe=base.point),
                                           name="scenario")  # fmt: skip
            printer = Plain(stage, said) if plain else None
            try:
                await _watch(stage, said, duration_s, printer, scenario=scenario, base=base)
            finally:
                scenario.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scenario
                await stage.stop_agent()
            for line in printer.lines() if printer is not None else []:
                print(line, flush=True)  # a write between the last refresh and the stop
            pending = await stage.drain(30.0)
            figs = _figures(stage, base, Lab(stage.lab(), stage.tally().lab_unmatched,
                                             stage.lab_units()))  # fmt: skip
            marks = [(key, plant_s) for key, _, plant_s, _ in said.said]
            png = out / f"story-{stamp}.png"
            try:
                drawn = f"chart: {chart.draw(png, stage.truth, base.rows, marks, base.recipe)}"
            except chart.ChartUnavailableError as exc:  # the plant install: no matplotlib
                drawn = f"chart: not drawn: {exc}"
            for line in story(figs):
                print(line)
            for line in lines(figs) if plain else []:
                print(line)
            if pending:
                print(f"summary: blocks_left_in_buffer={pending}")
            print(drawn)
            print(f"agent log: {out / f'story-{stamp}.log'}", flush=True)


def _figures(stage: Stage, base: OperatorBaseline, lab: Lab) -> Figures:
    """The summary's figures: the agent's truth record against the baseline's (recorded at
    the same plant times), the tallies, the audit log."""
    recipe, (ls, n) = base.recipe, base.point
    rows = stage.truth
    compared = compare(recipe.name, recipe.s28_lower_mpa, rows, base.rows)
    reasons = stage.audit()
    return Figures(
        plant_hours=(rows[-1].plant_s - rows[0].plant_s) / 3600.0 if rows else 0.0,
        compared=compared,
        baseline=Baseline(recipe.product_id, ls, n, recipe.expected_s28(ls, n),
                          len(base.corrections)),
        samples_sent=stage.tally().samples_buffered, samples_received=stage.received_samples(),
        tally=stage.tally(), writes=stage.audit_writes(), audit=reasons[0], reasons=reasons[1],
        lab=lab,
    )  # fmt: skip


def run_demo(
    *,
    duration_s: float | None,
    seed: int,
    opcua_port: int,
    modbus_port: int,
    plain: bool,
) -> int:
    """Run the demo in this process; return the exit code. The story always covers 6 plant
    hours, so the plant's time scale follows from the duration."""
    duration = DEFAULT_DURATION_S if duration_s is None else duration_s
    if duration < MIN_DURATION_S:
        print(f"edge-agent demo: --duration must be at least {MIN_DURATION_S:g} s to tell the "
              f"whole story, found {duration:g}", file=sys.stderr)  # fmt: skip
        return 2
    out = Path(tempfile.gettempdir()) / "edge-agent-demo"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with (out / f"story-{stamp}.log").open("w", encoding="utf-8") as log:
        configure_logging("info", json=True, stream=log)
        return _run(log, duration=duration, seed=seed, opcua_port=opcua_port,
                    modbus_port=modbus_port, plain=plain, out=out, stamp=stamp)  # fmt: skip


def _run(log: TextIO, *, duration: float, seed: int, opcua_port: int, modbus_port: int,
         plain: bool, out: Path, stamp: str) -> int:  # fmt: skip
    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await _demo(duration_s=duration, seed=seed, opcua_port=opcua_port,
                    modbus_port=modbus_port, plain=plain, out=out, stamp=stamp)  # fmt: skip

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("demo stopped; everything it started has been stopped", file=sys.stderr)
        return 130
    except (ConfigError, StateDirError) as exc:  # a broken checkout: models/ or config/ missing
        problems = exc.problems if isinstance(exc, ConfigError) else (exc.problem,)
        for problem in problems:
            print(problem.render(), file=sys.stderr)
        print("edge-agent demo: the demo configuration does not load; nothing is left running",
              file=sys.stderr)  # fmt: skip
        return 78
    finally:
        log.flush()
    return 0
