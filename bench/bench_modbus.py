"""Benchmark: the Modbus driver scanning 500 scattered tags on 5 units over TCP on 127.0.0.1.

Prints requests per scan (measured, the planner's optimum, one request per tag), scan time,
and the agent's CPU time per request, with the ratio of each to its target. The pymodbus
server runs in a subprocess, so the CPU figure is the agent's alone (CPU time of this
process over the measured scans; idle time is not CPU time).

    .venv/bin/python bench/bench_modbus.py [--scans 100] [--interval 0.1] [--seed 1]

Two layouts of the same 500 tags: addresses spread over 1..1500 of each table (a sparse map:
few neighbours within the 8-register gap) and over 1..300 (a denser map).
Targets: requests per scan equal to the planner's optimum; at most 150 us of agent CPU a
request. This script prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import mean, median
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config.addresses import ModbusType
from agent.config.settings import ModbusSource, Tag
from agent.domain.backoff import Backoff
from agent.domain.clock import SystemClock
from agent.domain.samples import GOOD, Sample
from drivers.modbus import ModbusDriver
from drivers.modbus_scan import DriverCounters

UNITS = (1, 2, 3, 4, 5)
LAYOUTS = {"scattered": 1500, "clustered": 300}
TABLES = (("holding", 40), ("input", 30), ("coil", 15), ("discrete_input", 15))
KINDS = (("int16", 1), ("uint16", 1), ("int32", 2), ("uint32", 2), ("float32", 2),
         ("float64", 4), ("bool", 1))  # fmt: skip
ORDERS: tuple[Literal["ABCD", "CDAB", "BADC", "DCBA"], ...] = ("ABCD", "CDAB", "BADC", "DCBA")
CPU_TARGET_US = 150.0


# -- the server (the subprocess) -------------------------------------------------------------


async def serve() -> None:
    """Five units, 2000 random registers and bits in each table, until stdin closes."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    rng = random.Random(7)

    def bits() -> list[SimData]:
        values = [rng.random() < 0.5 for _ in range(2000)]
        return [SimData(1, values=values, datatype=DataType.BITS)]

    def registers() -> list[SimData]:
        values = [rng.randrange(65536) for _ in range(2000)]
        return [SimData(1, values=values, datatype=DataType.REGISTERS)]

    devices = [SimDevice(u, simdata=(bits(), bits(), registers(), registers())) for u in UNITS]
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    print(server.transport.sockets[0].getsockname()[1], flush=True)  # type: ignore[attr-defined]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await server.shutdown()  # type: ignore[no-untyped-call]


# -- the agent side ------------------------------------------------------------------------------


def make_tags(seed: int, span: int) -> list[Tag]:
    """100 tags a unit: 40 holding, 30 input (mixed types and orders), 15 coils, 15 inputs."""
    rng = random.Random(seed)
    tags: list[Tag] = []
    for unit in UNITS:
        for table, how_many in TABLES:
            taken: set[int] = set()
            bits = table in ("coil", "discrete_input")
            added = 0
            while added < how_many:
                kind, width = ("bool", 1) if bits else rng.choice(KINDS)
                address = rng.randrange(1, span - width)
                cells = set(range(address, address + width))
                if cells & taken:
                    continue  # scattered, not overlapping
                taken |= cells
                added += 1
                suffix = f".{rng.randrange(16)}" if kind == "bool" and not bits else ""
                tags.append(
                    Tag(
                        name=f"u{unit}.{table}.{address}",
                        source="bench",
                        address=f"{table}:{address}{suffix}",
                        type=None if bits else ModbusType(kind),
                        unit_id=unit,
                        byte_order=rng.choice(ORDERS),
                        scale=0.1 if kind == "int16" else 1.0,
                    )
                )
    return tags


async def measure(port: int, layout: str, scans: int, interval: float, seed: int) -> None:
    tags = make_tags(seed, LAYOUTS[layout])
    source = ModbusSource(
        kind="modbus",
        name="bench",
        host="127.0.0.1",
        port=port,
        poll_interval_s=interval,
        timeout_s=2.0,
        retries=0,
    )
    driver = ModbusDriver(source, tags, clock=SystemClock(), backoff=Backoff())
    scan_times: list[float] = []
    statuses: list[int] = []
    warmed_up, finished = asyncio.Event(), asyncio.Event()
    target: list[int] = []

    def emit(batch: Sequence[Sample]) -> None:
        statuses.extend(s.status for s in batch)
        counters = driver.counters()
        if counters.last_scan_s is not None:  # the previous scan's duration
            scan_times.append(counters.last_scan_s)
        if counters.scans >= 5:
            warmed_up.set()
        if target and counters.scans >= target[0]:
            finished.set()

    task = asyncio.create_task(driver.run(emit))
    await warmed_up.wait()
    before = driver.counters()
    statuses.clear()
    scan_times.clear()
    target.append(before.scans + scans)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await finished.wait()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    after = driver.counters()
    bad = sum(1 for status in statuses if status != GOOD)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    report(
        layout,
        interval=interval,
        tags=tags,
        driver=driver,
        counters=(before, after),
        cpu_wall_s=(cpu1 - cpu0, wall1 - wall0),
        scan_times=scan_times,
        bad=bad,
    )


def report(
    layout: str,
    *,
    interval: float,
    tags: list[Tag],
    driver: ModbusDriver,
    counters: tuple[DriverCounters, DriverCounters],
    cpu_wall_s: tuple[float, float],
    scan_times: list[float],
    bad: int,
) -> None:
    (before, after), (cpu_s, wall_s) = counters, cpu_wall_s
    done = after.scans - before.scans
    requests = sum(u.requests for u in after.units.values())
    requests -= sum(u.requests for u in before.units.values())
    per_scan, optimum, naive = requests / done, len(driver.plan), len(tags)
    cpu_us = cpu_s / requests * 1e6
    times = sorted(scan_times[1:])  # the first one is the scan before the measurement
    p95 = times[int(0.95 * (len(times) - 1))]
    print(
        f"== {layout}: {naive} tags on {len(UNITS)} units, addresses 1..{LAYOUTS[layout]} of "
        "each table (holding/input: mixed types and orders; coils; discrete inputs)"
    )
    print(f"scans measured: {done} at poll_interval_s={interval} in {wall_s:.2f} s")
    print(
        f"requests per scan: measured {per_scan:.2f} | planner optimum {optimum} | "
        f"one request per tag {naive} ({naive / per_scan:.1f}x more)"
    )
    print(f"  ratio to target (measured / optimum): {per_scan / optimum:.3f} (target 1.000)")
    print(
        f"scan time: median {median(times) * 1e3:.1f} ms, mean {mean(times) * 1e3:.1f} ms, "
        f"p95 {p95 * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms "
        f"({median(times) / per_scan * 1e6:.0f} us a request, round trip)"
    )
    print(
        f"agent CPU: {cpu_s:.3f} s for {requests} requests = {cpu_us:.1f} us a request "
        f"({cpu_s / done / naive * 1e6:.1f} us a tag); "
        f"ratio to the {CPU_TARGET_US:.0f} us target: {cpu_us / CPU_TARGET_US:.2f} (<= 1 is met)"
    )
    skipped = after.skipped_scans - before.skipped_scans
    print(f"samples while measuring: {bad} not Good; scans skipped (overran): {skipped}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scans", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for layout in LAYOUTS:
            asyncio.run(measure(port, layout, args.scans, args.interval, args.seed))
            print()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
