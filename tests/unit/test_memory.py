"""The memory policy against the real C library of this machine (glibc on the CI image).

After `tune_allocator`, a burst of large buffers (as a big publish response leaves behind)
is given back to the system when freed, although some of them survive between the others;
glibc's default, once its dynamic mmap threshold has risen, keeps the whole burst resident
(shown by hand: 143 MiB stayed 143 MiB; tuned, 145 MiB fell to 59 MiB). `freeze_startup`
moves every object that exists out of the collector's reach.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.service import memory


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match[1]) / 1024


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_freed_large_buffers_go_back_to_the_system_after_tuning() -> None:
    assert memory.tune_allocator() is True
    spike = bytearray(1024 * 1024)  # what any process has done long before: raises glibc's
    del spike  # dynamic mmap threshold, unless it is fixed
    before = rss_mib()
    burst = [b"\x01" * (200 * 1024) for _ in range(500)]  # ~100 MiB, written (resident)
    peak = rss_mib()
    kept = burst[::8]  # survivors between the freed ones
    del burst
    after = rss_mib()
    assert peak - before > 80, f"the burst was not resident: {before:.0f} -> {peak:.0f} MiB"
    assert after - before < 25, f"RSS {before:.0f} -> {peak:.0f} -> {after:.0f} MiB"
    assert len(kept) == 63


def test_freeze_startup_keeps_the_objects_of_now_out_of_collections(unfreeze: None) -> None:
    gc.unfreeze()
    gc.collect()  # what survives a collection (the garbage is not frozen, it is collected)
    tracked = len(gc.get_objects())
    memory.freeze_startup()
    assert gc.get_freeze_count() >= tracked * 0.9
    assert len(gc.get_objects()) < tracked * 0.1  # a full collection now skips them
