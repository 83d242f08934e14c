"""Agent-internal latency of a control cycle: from the inputs in hand to the setpoint write
issued, measured on the real agent against the simulated mill over OPC UA.

A cycle takes the latest samples (every input sample it uses has been received by then),
runs gate 1 and 2, builds the features, runs one batched inference over the 125-candidate
grid, judges the candidates, runs the guard, and calls the driver's write. Each cycle's
audit record carries `decision_ms` (cycle start -> the guard's answer) and each write its
`decision_ms` (cycle start -> driver.write called). The wait between a sample's arrival and
the next cycle is the loop's cadence by design and is not part of this figure.

Runs the plant x30 with both demo loops in closed loop every 0.25 s, no minimum interval,
no deadband, and a few clinker-quality steps so that the loops keep moving.

Target (issue 5): sample to write issued p99 <= 5 ms (stretch 2 ms).

Usage: .venv/bin/python bench/bench_control.py [--duration S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.integration.control_rig import control_rig

TARGET_MS, STRETCH_MS = 5.0, 2.0


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def _run(duration_s: float) -> tuple[list[float], list[float], int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with control_rig(Path(tmp), time_scale=30.0, cadence_s=0.25, min_interval_s=0.0,
                               deadband=0.0, max_rate_per_h=100000.0,
                               max_deviation_from_baseline=1000.0) as rig:  # fmt: skip
            mill = rig.plant.mill
            end = time.monotonic() + duration_s
            sign = -1.0
            while time.monotonic() < end:
                await asyncio.sleep(min(10.0, max(0.0, end - time.monotonic())))
                mill.inject("clinker_quality_step", delta=2.0 * sign)  # keep the loops moving
                sign = -sign
            db = sqlite3.connect(rig.state_dir / "audit.db")
            rows = [json.loads(b) for (b,) in db.execute("SELECT body FROM audit")]
            db.close()
    cycles = [r for r in rows if r["kind"] == "cycle"]
    decisions = [r["decision_ms"] for r in cycles if "decision_ms" in r]
    writes = [r["write"]["decision_ms"] for r in cycles if r.get("write")]
    return decisions, writes, len(cycles)


def main() -> int:
    parser = argparse.ArgumentParser(description="control cycle latency on the real agent")
    parser.add_argument("--duration", type=float, default=60.0, metavar="S")
    args = parser.parse_args()
    decisions, writes, cycles = asyncio.run(_run(args.duration))
    print(f"{cycles} cycles, {len(decisions)} reached the guard, {len(writes)} writes issued "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")  # fmt: skip
    for name, values in (("inputs -> guard decision", decisions),
                         ("inputs -> write issued", writes)):  # fmt: skip
        p50, p99 = _pct(values, 50), _pct(values, 99)
        print(
            f"{name:26s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {max(values or [0]):6.2f} ms"
            f"  p99/target {p99 / TARGET_MS:.2f}  p99/stretch {p99 / STRETCH_MS:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
