"""A real small filesystem for disk-full tests: a tmpfs mounted for one test, and ballast.

``small_disk`` mounts a tmpfs of the given size (CI runs as root on a fresh machine, so it
can); when mounting is not possible the test fails loudly, naming what is missing, rather
than being skipped. The mount is always undone when the test ends (lazily if a process still
holds a file there). ``fill`` writes a ballast file that leaves a given number of bytes free;
``starve`` leaves a SQLite database next to it no byte to write with.

Owns: the tmpfs mount of one test (`small_disk`), the ballast files (`fill`, `starve`) and
`free_bytes`.

Must not: skip a test, fake a full disk (the filesystem is real, ENOSPC comes from the
kernel), or leave a mount behind.

Invariants: the mount exists only inside the `with` block; after `fill(path, leave)` the
filesystem has about `leave` bytes free at most (ballast written by this process).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "free_bytes", "small_disk", "starve"]


@contextlib.contextmanager
def small_disk(where: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``where`` (created) for the block's duration."""
    where.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(where)]
    try:
        subprocess.run(mount, check=True, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.fail(
            f"cannot mount a {size_bytes}-byte tmpfs at {where}: {detail!s}".strip()
            + " (these tests need root or CAP_SYS_ADMIN, as CI has)"
        )
    try:
        yield where
    finally:
        umount = ["umount", str(where)]
        done = subprocess.run(umount, check=False, capture_output=True, timeout=30)
        if done.returncode != 0:  # still busy: detach now, freed when the last file closes
            subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)


def free_bytes(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


def fill(where: Path, leave: int = 0, name: str = "ballast") -> Path:
    """Write a ballast file so that about ``leave`` bytes stay free (0: a full disk)."""
    ballast = where / name
    chunk = b"\0" * 65536
    with ballast.open("ab", buffering=0) as file:
        while (room := free_bytes(where) - leave) > 0:
            try:
                file.write(chunk[: min(len(chunk), room)])
            except OSError:  # ENOSPC: as full as it gets
                break
    return ballast


def starve(db: Path, name: str) -> Path:
    """Leave the buffer no byte to write with: another process checkpoints its WAL away
    (to 0 bytes) and fills the disk. The ballast file."""
    with contextlib.closing(sqlite3.connect(db)) as other:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return fill(db.parent, name=name)
