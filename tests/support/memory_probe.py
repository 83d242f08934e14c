"""The memory policy in a Python process of its own: `python -m tests.support.memory_probe
allocator|freeze` prints one JSON object of measurements for tests/system/test_memory.py.

Owns: the two measurements that change process-wide state (glibc's malloc settings, the
garbage collector's frozen generation), so that the pytest worker never has them changed
and the measurement never depends on what that worker ran before.

Must not: judge the figures (the test does), or print anything else on stdout (the agent's
log goes to stderr).
"""

from __future__ import annotations

import gc
import json
import re
import sys
from pathlib import Path

from agent.domain.clock import SystemClock
from agent.service import memory
from agent.service.logs import configure_logging


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match[1]) / 1024


def allocator() -> dict[str, object]:
    """RSS before, at the peak of and after a burst of large buffers, once tuned."""
    tuned = memory.tune_allocator()
    spike = bytearray(1024 * 1024)  # what any process has done long before: raises glibc's
    del spike  # dynamic mmap threshold, unless it is fixed
    before = rss_mib()
    burst = [b"\x01" * (200 * 1024) for _ in range(500)]  # ~100 MiB, written (resident)
    peak = rss_mib()
    kept = burst[::8]  # survivors between the freed ones
    del burst
    after = rss_mib()
    return {"tuned": tuned, "before": before, "peak": peak, "after": after, "kept": len(kept)}


def freeze() -> dict[str, object]:
    """Objects tracked after a collection, frozen by freeze_startup, and left tracked."""
    gc.collect()  # what survives a collection (the garbage is not frozen, it is collected)
    tracked = len(gc.get_objects())
    memory.freeze_startup(SystemClock())
    return {"tracked": tracked, "frozen": gc.get_freeze_count(), "left": len(gc.get_objects())}


if __name__ == "__main__":
    configure_logging("warning", stream=sys.stderr)
    measure = {"allocator": allocator, "freeze": freeze}[sys.argv[1]]
    sys.stdout.write(json.dumps(measure()) + "\n")
