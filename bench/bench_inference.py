"""Inference latency of the demo model as the control loop calls it, and idle CPU.

Loads models/vrm-quality/1.0.0 through the real loader (signature, sha256, graph check,
warm-up; onnxruntime with one intra-op thread and spinning off), then calls predict()
periodically (every 10 ms, like a loop with idle time between cycles, so caches and
threads are as cold as in the agent) at batch 1, 125 and 1,000 rows, and measures the
process CPU while the session sits idle for 5 s.

Targets (issue 5): single inference p99 <= 1 ms; 1,000-candidate grid p99 <= 5 ms;
idle CPU about zero.

Usage: .venv/bin/python bench/bench_inference.py [--calls N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from agent.packages.manifest import training_midpoints
from agent.packages.package import load_package, load_public_key

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "models" / "vrm-quality" / "1.0.0"
PUBLIC_KEY = ROOT / "models" / "demo-signing-key.pub.pem"
TARGETS_MS = {1: 1.0, 125: None, 1000: 5.0}


def main() -> int:
    parser = argparse.ArgumentParser(description="demo model inference latency")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    model = load_package(PACKAGE, load_public_key(PUBLIC_KEY))
    print(f"load + verify + warm-up: {(time.perf_counter() - started) * 1e3:.1f} ms")
    base = np.array([training_midpoints(model.manifest)], dtype=np.float32)
    for batch, target in TARGETS_MS.items():
        x = np.repeat(base, batch, axis=0)
        x[:, 0] += np.linspace(-60, 60, batch, dtype=np.float32)
        times = []
        for _ in range(args.calls):
            t0 = time.perf_counter()
            model.predict(x)
            times.append(time.perf_counter() - t0)
            time.sleep(0.01)
        ms = np.array(times) * 1e3
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        verdict = (
            "" if target is None else f" | target p99 <= {target} ms: ratio {p99 / target:.2f}"
        )
        print(f"batch {batch:5d}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {ms.max():.3f} ms "
              f"({args.calls} calls, 10 ms apart){verdict}")  # fmt: skip
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(5.0)
    idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    print(f"idle CPU with the session loaded: {idle:.2f} % of one core over 5 s (target ~0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
