"""Benchmark: the agent's memory with 10,000 tags, steady and over time.

    .venv/bin/python bench/bench_memory.py [--duration 300] [--sync on|off|both] [--tags 10000]

The agent runs as a real subprocess (``edge-agent run --config FILE``) subscribed to an
asyncua server (a second subprocess, bench/plant_server.py) with ``--tags`` Double variables:
every second the first ``--change`` share of them moves (noisy analog values) and the others
move rarely (setpoints, states). One source, subscription mode, publishing_interval_s 1.0,
1 s blocks, the local API on; sync to the reference receiver (``edge-agent cloud``, a third
subprocess) or off (the buffer then grows on disk, not in memory). ``--bytecode`` runs the
agent from compiled .pyc files (as an installed package does); without it the agent runs as
this checkout does when PYTHONDONTWRITEBYTECODE is set and no .pyc exist: every source is
compiled at start, which leaves ~30 MiB more RSS behind. The agent tunes glibc's malloc
itself (agent/service/memory.py), so no MALLOC_* variable is set here. No control loops: the
control side holds a few latest values and one ONNX session per model, small next to the
acquisition path (bench_inference.py: the demo model loads in 6 ms).

Every ``--interval`` seconds after the first sample is buffered, the agent's VmRSS (and its
peak VmHWM) from /proc/PID/status and Pss and USS (Private_Clean + Private_Dirty) from
/proc/PID/smaps_rollup are read. Printed: steady RSS (median after ``--warmup``), peak,
USS/PSS, the growth slope per hour (least-squares fit over the samples after the warm-up),
the agent's CPU, the load average, and the ratios to the targets (RSS <= 150 MiB, stretch
120 MiB; growth over one hour within 5 MiB). The default 300 s gives an extrapolated
slope, said so; ``--duration 3600`` measures the hour. ``--burn 20/40`` adds load peaks as
a busy plant PC has them: every core busy for 20 s, then idle for 40 s, by processes the
benchmark starts and stops (the moments the agent falls behind and RSS may step up).
Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_harness import (
    MIB,
    check_config,
    cpu_of,
    free_port,
    load,
    memory_of,
    plant_config,
    plant_server,
    receiver,
    start_agent,
    stop,
    telemetry_blocks,
    warm_bytecode,
)

TARGET_MIB, STRETCH_MIB, GROWTH_TARGET_MIB = 150.0, 120.0, 5.0


@dataclass(frozen=True)
class Point:
    t: float  # seconds since the first sample was buffered
    rss: float  # MiB
    pss: float
    uss: float
    hwm: float
    threads: int


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@contextlib.contextmanager
def burner(pattern: str | None) -> Iterator[None]:
    """Every ``on`` s keep every core busy, then idle ``off`` s (pattern "on/off")."""
    if pattern is None:
        yield
        return
    on, off = (float(part) for part in pattern.split("/"))
    stop = threading.Event()

    def cycle() -> None:
        while not stop.is_set():
            workers = [multiprocessing.Process(target=_spin, args=(on,))
                       for _ in range(os.cpu_count() or 1)]  # fmt: skip
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            stop.wait(off)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def metrics(api_port: int) -> dict[str, float]:
    """Sums of the agent's Prometheus families we print (by family name, labels summed)."""
    url = f"http://127.0.0.1:{api_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{[^}]*\})? ([-0-9.e+naif]+)$", line)
        if match:
            sums[match[1]] = sums.get(match[1], 0.0) + float(match[2])
    return sums


def slope_per_hour(points: list[Point], attr: str) -> float:
    if len(points) < 3:
        return float("nan")
    fit = statistics.linear_regression([p.t for p in points], [getattr(p, attr) for p in points])
    return fit.slope * 3600.0


def watch(
    args: argparse.Namespace, pid: int, server_pid: int, first: float
) -> tuple[list[Point], float, float, float]:
    """Sample the agent's memory for ``args.duration`` s; (points, wall, agent CPU s, server
    CPU s)."""
    points: list[Point] = []
    cpu0, server0 = cpu_of(pid), cpu_of(server_pid)
    next_report = first + 60.0
    while (now := time.monotonic()) - first < args.duration:
        m = memory_of(pid)
        points.append(Point(now - first, m.rss / MIB, m.pss / MIB, m.uss / MIB, m.hwm / MIB,
                            m.threads))  # fmt: skip
        if now >= next_report:
            next_report += 60.0
            print(f"   t={now - first:5.0f} s  RSS {m.rss / MIB:6.1f} MiB  USS {m.uss / MIB:6.1f}"
                  f"  peak {m.hwm / MIB:6.1f}  load {load()}", flush=True)  # fmt: skip
        time.sleep(args.interval)
    wall = time.monotonic() - first
    return points, wall, cpu_of(pid) - cpu0, cpu_of(server_pid) - server0


def scenario(args: argparse.Namespace, sync: bool, tmp: Path) -> None:
    name = f"{args.tags:,} tags, sync {'on' if sync else 'off'}"
    name += ", compiled bytecode" if args.bytecode else ", no .pyc (sources compiled at start)"
    name += f", load peaks {args.burn} s" if args.burn else ""
    pycache = warm_bytecode(tmp / "pycache") if args.bytecode else None
    print(f"\n== {name}: {args.duration:g} s after the first sample, warm-up {args.warmup:g} s, "
          f"load {load()}", flush=True)  # fmt: skip
    folder = tmp / ("sync-on" if sync else "sync-off")
    folder.mkdir()
    with contextlib.ExitStack() as stack:
        port, server_pid = stack.enter_context(
            plant_server(args.tags, args.change, folder / "server.log")
        )
        url = None
        receiver_pid = None
        if sync:
            cloud_port, receiver_pid = stack.enter_context(
                receiver(folder / "cloud", folder / "receiver.log")
            )
            url = f"http://127.0.0.1:{cloud_port}"
        api_port = free_port()
        state = folder / "state"
        config = plant_config(folder / "agent.toml", opcua_port=port, count=args.tags,
                              state_dir=state, sync_url=url, api_port=api_port)  # fmt: skip
        print(f"   {check_config(config)}", flush=True)
        log = stack.enter_context((folder / "agent.log").open("wb"))
        began = time.monotonic()
        agent = start_agent(config, log, pycache)
        try:
            while telemetry_blocks(state) == 0:
                if agent.poll() is not None:
                    raise RuntimeError(f"the agent exited with {agent.returncode}, see {log.name}")
                if time.monotonic() - began > 120:
                    raise RuntimeError(f"no sample buffered after 120 s, see {log.name}")
                time.sleep(0.05)
            first = time.monotonic()
            print(f"   first sample buffered {first - began:.2f} s after start", flush=True)
            with burner(args.burn):
                points, wall, cpu, server_cpu = watch(args, agent.pid, server_pid, first)
            figures = metrics(api_port)
        finally:
            code = stop(agent, 60)
    warnings = sum(json.loads(line).get("level") in ("warning", "error")
                   for line in (folder / "agent.log").read_text().splitlines()
                   if line.startswith("{"))  # fmt: skip
    report(name, args, points, wall=wall, cpu=cpu, server_cpu=server_cpu, figures=figures,
           exit_code=code, warnings=warnings, receiver=receiver_pid is not None)  # fmt: skip
    if args.csv:
        path = Path(f"{args.csv}-{'on' if sync else 'off'}.csv")
        path.write_text("t_s,rss_mib,pss_mib,uss_mib,hwm_mib,threads\n" + "".join(
            f"{p.t:.1f},{p.rss:.2f},{p.pss:.2f},{p.uss:.2f},{p.hwm:.2f},{p.threads}\n"
            for p in points))  # fmt: skip
        print(f"   samples written to {path}")


def report(
    name: str, args: argparse.Namespace, points: list[Point], *, wall: float, cpu: float,
    server_cpu: float, figures: dict[str, float], exit_code: int | None, warnings: int,
    receiver: bool,
) -> None:  # fmt: skip
    steady = [p for p in points if p.t >= args.warmup] or points
    rss = statistics.median(p.rss for p in steady)
    uss = statistics.median(p.uss for p in steady)
    pss = statistics.median(p.pss for p in steady)
    peak = max(p.hwm for p in points)
    slope = slope_per_hour(steady, "rss")
    uss_slope = slope_per_hour(steady, "uss")
    span = steady[-1].t - steady[0].t
    tenth = max(1, len(steady) // 10)
    drift = statistics.median(p.rss for p in steady[-tenth:]) - statistics.median(
        p.rss for p in steady[:tenth]
    )
    marks = [m for m in (60, 300, 600, 1200, 1800, 2400, 3000, 3600) if m <= points[-1].t]
    at = {m: next(p.rss for p in points if p.t >= m) for m in marks}
    steps = sum(b.rss - a.rss > 1.0 for a, b in itertools.pairwise(points))
    samples = figures.get("edge_agent_samples_total", float("nan"))
    hour = "measured over the hour" if span >= 3500 else f"EXTRAPOLATED from {span:.0f} s"
    print(f"-- {name}")
    print(f"   steady RSS (median after warm-up) {rss:6.1f} MiB: {rss / TARGET_MIB:.2f} x target "
          f"{TARGET_MIB:g}, {rss / STRETCH_MIB:.2f} x stretch {STRETCH_MIB:g}")  # fmt: skip
    print(f"   peak RSS (VmHWM) {peak:6.1f} MiB; USS {uss:.1f} MiB, PSS {pss:.1f} MiB; "
          f"threads {steady[-1].threads}")  # fmt: skip
    print(
        f"   growth: slope {slope:+.2f} MiB/h RSS, {uss_slope:+.2f} MiB/h USS ({hour}); "
        f"last tenth minus first tenth {drift:+.2f} MiB over {span:.0f} s; "
        f"ratio to {GROWTH_TARGET_MIB:g} MiB/h: {abs(slope) / GROWTH_TARGET_MIB:.2f}"
    )
    marked = ", ".join(f"{m / 60:g} min {v:.1f} MiB" for m, v in at.items()) or "-"
    print(f"   RSS at {marked}; {steps} rises of more than 1 MiB between two readings")
    print(f"   agent CPU {100 * cpu / wall:.1f} % of a core, plant server "
          f"{100 * server_cpu / wall:.1f} %; samples emitted {samples:,.0f} "
          f"({samples / max(points[-1].t, 1):,.0f}/s over the run); load {load()}")  # fmt: skip
    if receiver:
        print(
            f"   upload acks {figures.get('edge_agent_upload_acks_total', 0):,.0f}, "
            f"blocks pending {figures.get('edge_agent_buffer_blocks_pending', 0):,.0f}"
        )
    print(f"   agent exit code {exit_code}, warning/error log lines {warnings}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="s after the first sample")
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--change", type=float, default=0.65,
                        help="share of the variables that move every second")  # fmt: skip
    parser.add_argument("--sync", choices=["on", "off", "both"], default="on")
    parser.add_argument("--csv", help="write the samples to CSV-on.csv / CSV-off.csv")
    parser.add_argument("--bytecode", action="store_true",
                        help="run the agent from .pyc files (PYTHONPYCACHEPREFIX)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--burn", metavar="ON/OFF",
                        help="load peaks: every core busy ON s, then idle OFF s")  # fmt: skip
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; load {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        for sync in {"on": [True], "off": [False], "both": [True, False]}[args.sync]:
            scenario(args, sync, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
