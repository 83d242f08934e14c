"""Benchmark: start-up, from process start to the first sample buffered.

    .venv/bin/python bench/bench_startup.py [--repeats 5] [--scenario demo|plant|both]

The agent starts as a real subprocess (``edge-agent run --config FILE``; the clock starts
just before ``Popen``) with a fresh state directory each time (the install case: the buffer
file is created), against:
- demo: the simulated mill (``edge-agent simulate``, a subprocess) with config/demo.toml as
  shipped (~60 tags on OPC UA and Modbus, two closed loops on the signed demo model);
- plant: the 10,000-variable OPC UA server of bench/plant_server.py with 10,000 subscribed
  tags and no loops.
Sync is on, but its URL points at a port nobody listens on (the cloud is away): an acked
block is deleted from the buffer, so with a live receiver the probe could miss the first
block; start-up does not wait for the cloud either way.

Each scenario runs twice: as this checkout runs when PYTHONDONTWRITEBYTECODE is set and no
.pyc files exist (every module compiled at each start), and from compiled bytecode (Python
pointed at a warmed PYTHONPYCACHEPREFIX), as an installed package runs.

Measured per start (wall clock, UTC): READY (the ``agent_started`` log line: config loaded,
buffer open, loops set up), the OPC UA session subscribed (``opcua_session_started``), and
the first telemetry block committed to SQLite (polling the buffer file read-only every
10 ms). Printed: median and max over ``--repeats`` starts, the ratio to the 3 s target, and
the load average. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_harness import (
    check_config,
    demo_config,
    free_port,
    load,
    plant_config,
    plant_server,
    simulator,
    start_agent,
    stop,
    telemetry_blocks,
    warm_bytecode,
)

TARGET_S = 3.0
EVENTS = ("agent_started", "opcua_session_started")


def log_times(log: Path) -> dict[str, float]:
    """Wall-clock time of the first of each event in EVENTS, from the JSON log."""
    found: dict[str, float] = {}
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            event = entry.get("event")
            if event in EVENTS and event not in found:
                stamp = entry["timestamp"].replace("Z", "+00:00")
                found[event] = datetime.datetime.fromisoformat(stamp).timestamp()
    return found


def one_start(
    folder: Path, make_config: Callable[[Path], Path], pycache: Path | None
) -> dict[str, float]:
    """Start the agent once on a fresh state dir; seconds from Popen to each milestone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    state = folder / "state"
    config = make_config(state)
    log_path = folder / "agent.log"
    with log_path.open("wb") as log:
        began = time.time()
        agent = start_agent(config, log, pycache)
        try:
            while telemetry_blocks(state) == 0:
                if agent.poll() is not None:
                    raise RuntimeError(f"the agent exited with {agent.returncode}: {log_path}")
                if time.time() - began > 120:
                    raise RuntimeError(f"no sample buffered after 120 s: {log_path}")
                time.sleep(0.01)
            buffered = time.time() - began
        finally:
            code = stop(agent, 60)
    if code != 0:  # reported, not fatal: the start-up was measured before the stop
        tail = "\n".join(log_path.read_text().splitlines()[-3:])
        print(f"   the agent exited with {code} after SIGTERM; the end of its log:\n{tail}")
    # The block builder commits the first samples after start at once (later ones at each
    # flush_interval_s tick), so this is the first data's arrival plus one SQLite commit.
    times = {event: stamp - began for event, stamp in log_times(log_path).items()}
    return {**times, "first_sample_buffered": buffered}


def show(name: str, runs: list[dict[str, float]]) -> None:
    print(f"-- {name}: {len(runs)} starts, load {load()}")
    for key in ("agent_started", "opcua_session_started", "first_sample_buffered"):
        values = [run[key] for run in runs if key in run]
        if not values:
            continue
        median, worst = statistics.median(values), max(values)
        ratio = f"; ratio to the {TARGET_S:g} s target {median / TARGET_S:.2f} (max " \
                f"{worst / TARGET_S:.2f})" if key == "first_sample_buffered" else ""  # fmt: skip
        every = ", ".join(f"{v:.2f}" for v in values)
        print(f"   {key:<22} median {median:5.2f} s, max {worst:5.2f} s  [{every}]{ratio}")
    sys.stdout.flush()


def modes(tmp: Path) -> list[tuple[str, Path | None]]:
    return [("no .pyc", None), ("compiled bytecode", warm_bytecode(tmp / "pycache"))]


def demo(args: argparse.Namespace, tmp: Path) -> None:
    with simulator(tmp / "simulator.log") as (opcua, modbus):
        away = f"http://127.0.0.1:{free_port()}"

        def make(state: Path) -> Path:
            state.parent.mkdir(parents=True, exist_ok=True)
            return demo_config(state.parent / "agent.toml", opcua_port=opcua, modbus_port=modbus,
                               state_dir=state, sync_url=away, api_port=free_port())  # fmt: skip

        print(f"   {check_config(make(tmp / 'check' / 'state'))}")
        for label, pycache in modes(tmp):
            runs = [one_start(tmp / f"demo-{i}", make, pycache) for i in range(args.repeats)]
            show(f"demo mill (config/demo.toml), {label}", runs)


def plant(args: argparse.Namespace, tmp: Path) -> None:
    with plant_server(args.tags, 0.65, tmp / "server.log") as (port, _):
        away = f"http://127.0.0.1:{free_port()}"

        def make(state: Path) -> Path:
            state.parent.mkdir(parents=True, exist_ok=True)
            return plant_config(state.parent / "agent.toml", opcua_port=port, count=args.tags,
                                state_dir=state, sync_url=away, api_port=free_port())  # fmt: skip

        print(f"   {check_config(make(tmp / 'check' / 'state'))}")
        for label, pycache in modes(tmp):
            runs = [one_start(tmp / f"plant-{i}", make, pycache) for i in range(args.repeats)]
            show(f"plant ({args.tags:,} tags, no loops), {label}", runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--scenario", choices=["demo", "plant", "both"], default="both")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; load {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        if args.scenario in ("demo", "both"):
            demo(args, tmp)
        if args.scenario in ("plant", "both"):
            plant(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
