"""The memory policy against the real C library of this machine (glibc on the CI image).

After `tune_allocator`, a burst of large buffers (as a big publish response leaves behind)
is given back to the system when freed, although some of them survive between the others;
glibc's default, once its dynamic mmap threshold has risen, keeps the whole burst resident
(shown by hand: 143 MiB stayed 143 MiB; tuned, 145 MiB fell to 59 MiB). `freeze_startup`
moves every object that exists out of the collector's reach.

Both change the whole process (malloc's settings, the frozen generation), as the agent does
once at start: each runs in a fresh Python process (tests.support.memory_probe), never in the
pytest worker, whose allocator and collector other tests share.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.env import clean_env

ROOT = Path(__file__).resolve().parents[2]
PROBE = [sys.executable, "-m", "tests.support.memory_probe"]


def probe(what: str) -> dict[str, Any]:
    done = subprocess.run([*PROBE, what], cwd=ROOT, env=clean_env(), capture_output=True,
                          text=True, timeout=50, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_freed_large_buffers_go_back_to_the_system_after_tuning() -> None:
    m = probe("allocator")
    before, peak, after = m["before"], m["peak"], m["after"]
    assert m["tuned"] is True
    assert peak - before > 80, f"the burst was not resident: {before:.0f} -> {peak:.0f} MiB"
    assert after - before < 25, f"RSS {before:.0f} -> {peak:.0f} -> {after:.0f} MiB"
    assert m["kept"] == 63


def test_freeze_startup_keeps_the_objects_of_now_out_of_collections() -> None:
    m = probe("freeze")
    assert m["frozen"] >= m["tracked"] * 0.9
    assert m["left"] < m["tracked"] * 0.1  # a full collection now skips them
