"""The agent process's memory policy: how the C allocator and the garbage collector behave
over months of uptime.

Owns: tuning glibc's malloc once at start, before any thread exists (`tune_allocator`);
once start-up is over, moving what it built (settings, tag maps, monitored items: ~250,000
objects with 10,000 tags) out of the garbage collector's full collections
(`freeze_startup`).
Must not: be needed for correctness: on a C library without mallopt (musl, macOS) the
allocator keeps its defaults.

Why: with 10,000 tags one OPC UA publish response decodes ~6,500 notifications at once, and
when the event loop falls behind on a busy machine several arrive together. glibc keeps such
a peak resident: after the first large buffer is freed its dynamic mmap threshold rises, so
later large buffers are carved from the heap and pinned there by anything allocated after
them, and each thread that allocates may get an arena of its own. A fixed mmap threshold
(128 KiB) gives every large buffer back when it is freed, two arenas bound the rest.
Measured with bench/bench_memory.py: 7-8 MiB less steady RSS and smaller steps under load
(docs/benchmarks.md). A periodic malloc_trim(0) was measured too and changed nothing, so
there is none. gc.freeze() shortens a full collection from ~100-280 ms (every tracked
object) to the objects made since: fewer long pauses in the control cycles.
"""

from __future__ import annotations

import ctypes
import gc

from agent.domain.clock import Clock
from agent.domain.logger import get_logger

__all__ = ["FREEZE_AFTER_S", "freeze_startup", "tune_allocator"]

_log = get_logger(__name__)

# mallopt(3) parameter numbers of glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2
FREEZE_AFTER_S = 30.0


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    if not hasattr(libc, "mallopt"):
        return None
    return libc


def tune_allocator() -> bool:
    """Fixed mmap/trim thresholds and at most two malloc arenas; call before any thread.

    True when glibc took every setting (False elsewhere: the defaults stay).
    """
    libc = _glibc()
    if libc is None:
        _log.debug("allocator_not_tuned", reason="not glibc")
        return False
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_ARENA_MAX, ARENA_MAX),
    )
    taken = [libc.mallopt(param, value) == 1 for param, value in settings]  # each one tried
    _log.debug("allocator_tuned", mmap_threshold=MMAP_THRESHOLD_BYTES,
               trim_threshold=TRIM_THRESHOLD_BYTES, arena_max=ARENA_MAX, taken=taken)  # fmt: skip
    return all(taken)


def freeze_startup(clock: Clock) -> None:
    """Collect once, then keep every object that exists now out of later collections.

    The collection's duration is measured on `clock` (logged as `collect_ms`)."""
    began = clock.monotonic()
    gc.collect()
    gc.freeze()
    _log.info("gc_frozen", objects=gc.get_freeze_count(),
              collect_ms=round(1000 * (clock.monotonic() - began), 1))  # fmt: skip
