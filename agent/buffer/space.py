"""The buffer's disk: how much room its filesystem leaves, and the full-disk condition.

Owns: measuring the state directory's filesystem (statvfs) and the sizes of the database file
and its WAL, on the writer thread; the reserve file (``<db>-reserve``, the size of the WAL's
share, at most ``RESERVE_MAX_BYTES``) given back to the filesystem when SQLite finds the disk
full, so that the WAL has room for the transaction that evicts, and made again once the disk
has room; the full-disk condition and the streak of dropped blocks, with their log lines
(first WARNING, repeats DEBUG, recovery INFO): ``buffer_disk_full`` when the disk rather than
``max_buffer_bytes`` made the buffer evict or drop, ``buffer_disk_recovered`` at the first
block stored with room to spare again; ``buffer_samples_dropped`` for a block that could not
be stored at all, ``buffer_drops_recovered`` at the next block stored.
Must not: run SQL, decide what to evict (agent.buffer.retention) or be used from two threads.
Invariants: ``measure`` never raises for a vanished WAL file (it counts as 0 bytes); the
condition changes only through ``disk_bound``, ``dropped`` and ``stored``, each called
once per insert attempt that ended that way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.buffer.retention import RESERVE_MAX_BYTES, reserve_file_bytes
from agent.domain.logger import get_logger

__all__ = ["RESERVE_MAX_BYTES", "DiskCondition", "Reserve", "Space", "measure"]

_log = get_logger("agent.buffer.buffer")


@dataclass(frozen=True)
class Space:
    """The filesystem under the buffer: free bytes (for an unprivileged writer), its size,
    and the sizes on disk of the database file and its WAL."""

    free: int
    fs_bytes: int
    db_file: int
    wal_file: int


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def measure(path: Path) -> Space:
    """The space around the database at ``path`` now (OSError if the folder is gone)."""
    st = os.statvfs(path.parent)
    return Space(
        free=st.f_bavail * st.f_frsize,
        fs_bytes=st.f_blocks * st.f_frsize,
        db_file=_size(path),
        wal_file=_size(path.with_name(path.name + "-wal")),
    )


class Reserve:
    """Bytes set aside on the buffer's filesystem for the day it is full (writer thread)."""

    def __init__(self, db: Path, size: int) -> None:
        self.path = db.with_name(db.name + "-reserve")
        self._size = reserve_file_bytes(size)
        self.present = self.path.exists()

    def ensure(self, headroom: int) -> None:
        """Write the reserve (real blocks, not a sparse file) unless it is there or the disk
        has less than its size plus ``headroom`` free; never raises."""
        if self.present:
            return
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < self._size + headroom:
                return
            with self.path.open("wb", buffering=0) as file:
                file.write(b"\0" * self._size)
                os.fsync(file.fileno())
        except OSError:
            self.release()
            return
        self.present = True

    def release(self) -> bool:
        """Give the reserve back to the filesystem; whether there was one."""
        had = self.present or self.path.exists()
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            return False
        self.present = False
        if had:
            _log.info("buffer_reserve_released", path=str(self.path), bytes=self._size)
        return had


class DiskCondition:
    """The full-disk episode and the drop streak of one store (writer thread only)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.full = False
        self.free: int | None = None
        self.capacity: int | None = None
        self._since = 0.0
        self._episode_dropped = 0
        self._episode_evicted = 0
        self._streak = 0  # samples dropped since the last block stored
        self._streak_blocks = 0

    def seen(self, space: Space, capacity: int) -> None:
        """The latest measurement and the bytes the database may use with it."""
        self.free, self.capacity = space.free, capacity

    def disk_bound(self, evicted: int, now: float) -> None:
        """The disk (not the cap) made this insert evict ``evicted`` blocks or drop it."""
        self._episode_evicted += evicted
        if self.full:
            return
        self.full, self._since = True, now
        _log.warning(
            "buffer_disk_full",
            path=str(self._path.parent),
            free_bytes=self.free,
            capacity_bytes=self.capacity,
            hint="free space on this filesystem or lower [sync] max_buffer_bytes: the buffer"
            " evicts its oldest blocks, and drops new ones when there is nothing to evict",
        )

    def dropped(self, reason: str, samples: int, total: int) -> None:
        """A block of ``samples`` samples was not stored; ``total``: dropped since start."""
        self._episode_dropped += samples
        self._streak += samples
        self._streak_blocks += 1
        emit = _log.warning if self._streak_blocks == 1 else _log.debug
        emit(
            "buffer_samples_dropped",
            reason=reason,
            samples=samples,
            dropped_samples_total=total,
            free_bytes=self.free,
        )

    def stored(self, *, full: bool, now: float) -> None:
        """A block was stored; ``full``: the disk still leaves it little room."""
        if self._streak_blocks:
            _log.info("buffer_drops_recovered", blocks=self._streak_blocks, samples=self._streak)
            self._streak = self._streak_blocks = 0
        if self.full and not full:
            _log.info(
                "buffer_disk_recovered",
                free_bytes=self.free,
                duration_s=round(max(0.0, now - self._since), 3),
                dropped_samples=self._episode_dropped,
                evicted_blocks=self._episode_evicted,
            )
            self.full = False
            self._episode_dropped = self._episode_evicted = 0
