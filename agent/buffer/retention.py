"""Retention: what the buffer evicts at its byte cap, and the outage-budget arithmetic.

Owns: the split of ``max_buffer_bytes`` between the database and its write-ahead log, the
estimate of what one stored block costs on disk, how much the filesystem lets the database
grow (``disk_cap_bytes``: a state_dir on a filesystem smaller than the cap), the eviction
order and the choice of victims, the put-rate meter, and "hours left at the current rate".
Must not: do I/O, read a clock (times are arguments) or know SQL; the store (agent.buffer.insert,
agent.buffer.space) measures the database and the disk and asks these functions what to do.
Invariants:
- Eviction order (``EVICTION_ORDER``): quarantined blocks (they will never be sent), then
  telemetry, then catalogs other than the newest, then events; oldest first within each.
  The newest catalog is never evicted (telemetry put after it needs it to be decoded).
- ``plan_eviction`` takes candidates in that order and returns the shortest prefix that makes
  ``used - freed + incoming <= cap`` (all of them when even that is not enough).
- The database grows into free disk space only while that leaves room for the WAL's peak
  and ``disk_headroom_bytes`` for the rest of the system (the audit trail, logs); a disk
  filled by others never makes it grow, only reuse the pages its file already has.
- ``RateMeter`` holds a fixed number of buckets whatever the traffic (flat memory).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "EVICTION_ORDER",
    "RESERVE_MAX_BYTES",
    "Candidate",
    "RateMeter",
    "db_cap_bytes",
    "disk_cap_bytes",
    "disk_headroom_bytes",
    "footprint",
    "hours_left",
    "plan_eviction",
    "reserve_file_bytes",
    "wal_limit_bytes",
]

EVICTION_ORDER: tuple[str, ...] = ("quarantined", "telemetry", "catalog", "events")
"""Eviction reasons, in the order the cap evicts them; also the keys of the counters."""

ROW_BYTES = 48
"""Record, cell and index overhead of one row besides its block (estimate, bytes)."""
FIXED_RESERVE_BYTES = 64 * 1024
"""Schema, meta and b-tree interior pages: kept out of the database's share of the cap."""
MAX_WAL_BYTES = 4 * 1024 * 1024
RESERVE_MAX_BYTES = 1024 * 1024
"""Enough WAL for the transaction that evicts to make room for a block of ~100,000 samples."""


def wal_limit_bytes(max_bytes: int, page_size: int) -> int:
    """The write-ahead log's share of the cap: 1/16 of it, at most 4 MiB, at least 16 pages."""
    pages = max(16, min(MAX_WAL_BYTES, max_bytes // 16) // page_size)
    return pages * page_size


def reserve_file_bytes(wal_limit: int) -> int:
    """The size of the reserve file a full disk calls on: the WAL's share, at most
    ``RESERVE_MAX_BYTES``."""
    return min(wal_limit, RESERVE_MAX_BYTES)


def db_cap_bytes(max_bytes: int, page_size: int) -> int:
    """Bytes the database file's used pages may take: the cap minus the WAL's share, the
    reserve file (``reserve_file_bytes``) and a fixed reserve."""
    wal = wal_limit_bytes(max_bytes, page_size)
    return max(0, max_bytes - wal - reserve_file_bytes(wal) - FIXED_RESERVE_BYTES)


DISK_HEADROOM_MIN = 64 * 1024
DISK_HEADROOM_MAX = 64 * 1024 * 1024
SLACK_PAGES = 4
"""Pages kept free inside the file when the disk is full (b-tree splits, index pages)."""


def disk_headroom_bytes(fs_bytes: int) -> int:
    """What the buffer leaves free on its filesystem: 2 % of it, within 64 KiB..64 MiB."""
    return min(DISK_HEADROOM_MAX, max(DISK_HEADROOM_MIN, fs_bytes // 50))


def disk_cap_bytes(
    *, logical_db: int, db_file: int, wal_file: int, free: int, wal_peak: int, fs_bytes: int,
    page_size: int,
) -> int:  # fmt: skip
    """Bytes the database's used pages may take without running the filesystem out.

    logical_db: page_count x page_size (pages still in the WAL included); db_file, wal_file:
    the files' sizes on disk; free: bytes the filesystem has free for us; wal_peak: the most
    the WAL may take (its limit plus one transaction); fs_bytes: the filesystem's size.
    The file may grow into ``free`` once the WAL's growth, the growth still pending in the
    WAL and the headroom are set aside; without that room, only its own pages (less a slack).
    """
    pending_growth = max(0, logical_db - db_file)
    wal_growth = max(0, wal_peak - wal_file)
    room = free - pending_growth - wal_growth - disk_headroom_bytes(fs_bytes)
    return max(0, logical_db - SLACK_PAGES * page_size + max(0, room))


def footprint(size: int, page_size: int) -> int:
    """Estimated bytes on disk for one block of ``size`` bytes (SQLite's overflow rules)."""
    usable = page_size
    payload = size + ROW_BYTES
    max_local = usable - 35
    if payload <= max_local:
        return payload + 8
    min_local = (usable - 12) * 32 // 255 - 23
    local = min_local + (payload - min_local) % (usable - 4)
    if local > max_local:
        local = min_local
    overflow_pages = math.ceil((payload - local) / (usable - 4))
    return local + 8 + overflow_pages * page_size


@dataclass(frozen=True)
class Candidate:
    """A block the cap may evict: its seq and estimated footprint."""

    seq: int
    footprint: int


def plan_eviction(
    used: int, incoming: int, cap: int, candidates: Iterable[Candidate]
) -> list[Candidate]:
    """The shortest prefix of ``candidates`` whose eviction makes room for ``incoming``."""
    victims: list[Candidate] = []
    for candidate in candidates:
        if used + incoming <= cap:
            break
        victims.append(candidate)
        used -= candidate.footprint
    return victims


def hours_left(free_bytes: int, bytes_per_hour: float) -> float | None:
    """Hours until the cap at this rate; None when nothing is being stored."""
    if bytes_per_hour <= 0:
        return None
    return max(0, free_bytes) / bytes_per_hour


class RateMeter:
    """Bytes per hour over a sliding window of ``buckets`` x ``width_s`` seconds."""

    def __init__(self, *, width_s: float = 10.0, buckets: int = 60) -> None:
        if not (width_s > 0 and buckets >= 1):
            raise ValueError("width_s must be > 0 and buckets >= 1")
        self._width = width_s
        self._ids = [-1] * buckets
        self._bytes = [0] * buckets
        self._first: float | None = None

    def add(self, now: float, nbytes: int) -> None:
        """Count ``nbytes`` stored at monotonic time ``now``."""
        if self._first is None:
            self._first = now
        bucket = int(now // self._width)
        slot = bucket % len(self._ids)
        if self._ids[slot] != bucket:
            self._ids[slot], self._bytes[slot] = bucket, 0
        self._bytes[slot] += nbytes

    def bytes_per_hour(self, now: float) -> float:
        """The rate over the window (or since the first count, at least one second)."""
        if self._first is None:
            return 0.0
        current = int(now // self._width)
        oldest = current - len(self._ids) + 1
        total = sum(b for i, b in zip(self._ids, self._bytes, strict=True) if i >= oldest)
        window = (current + 1 - oldest) * self._width
        span = min(window, max(now - self._first, 1.0))
        return total / span * 3600.0
