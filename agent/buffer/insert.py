"""Storing one block: its seq, its catalog, the room it needs, and what happens without room.

Owns: the insert transaction (the announcement of evictions and drops, the catalog the block
needs, the block, ``meta.next_seq``), giving each stored block its seq (re-stamping the seq
the encoder expected), how much room the cap and the disk leave (agent.buffer.retention), the
retry inside the file's own pages after SQLITE_FULL (with the reserve file given back, so the
WAL has room to evict: agent.buffer.space), dropping a block that cannot be kept
(counted by reason), and the announcement (agent.buffer.losses): one EVENTS block that is
rewritten in place, same seq, while no upload has claimed it, and replaced by a new one once
one has. The writer thread's ``Store`` calls it and keeps the counters.
Must not: be called from another thread than the writer's, decide the eviction order, or
decode a block (``restamp`` only rewrites the seq and the CRC).
Invariants:
- ``next_seq`` advances only when the transaction that stores blocks commits, by the number
  of blocks stored; a dropped block takes no seq.
- ``insert`` never raises for want of room (it drops and counts the block); it raises
  sqlite3 errors other than SQLITE_FULL, and OSError when the folder cannot be measured
  (the store retries once, then ``drop``s the block as ``store_error``).
- Every evicted seq and every drop is announced exactly once, in the transaction that
  evicts it or the first one that stores a block after the drop; an announcement is only
  rewritten before any upload has seen it (``freeze`` is called when one claims it), so a
  receiver never gets two versions of one seq.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.buffer.blocks import BlockKind, encode_events, restamp
from agent.buffer.evict import Evicted, Evictor
from agent.buffer.losses import Losses
from agent.buffer.retention import SLACK_PAGES, disk_cap_bytes, disk_headroom_bytes, footprint
from agent.buffer.schema import transaction, used_bytes
from agent.buffer.space import DiskCondition, Reserve, measure

__all__ = ["Incoming", "Inserted", "Inserter"]

ROOM_HYSTERESIS = 0.1
"""A full disk is over once a block fits with this share of the disk's room to spare."""
_INSERT = "INSERT INTO blocks(seq, kind, created, count, size, data) VALUES (?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class Incoming:
    """A block to store (encoded with the seq it expects; the store stamps the real one)."""

    kind: BlockKind
    data: bytes
    created: float
    count: int


@dataclass(frozen=True)
class Inserted:
    """What an insert did: the block's seq (None: dropped), the blocks and samples it added
    (announcement and catalog included), the seq of a catalog it stored, what it evicted."""

    seq: int | None
    blocks: int = 0
    samples: int = 0
    catalog_seq: int | None = None
    evicted: Evicted = field(default_factory=dict)


class _NoRoom(Exception):  # noqa: N818 (internal: rolls the transaction back)
    def __init__(self, disk: bool) -> None:
        super().__init__("no room")
        self.disk = disk


def _full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class Inserter:
    """Inserts for one open buffer file (writer thread only)."""

    def __init__(
        self, conn: sqlite3.Connection, evictor: Evictor, *, path: Path, epoch: str,
        page_size: int, cap: int, wal_limit: int, next_seq: int,
    ) -> None:  # fmt: skip
        self._conn, self._evictor, self._path, self._epoch = conn, evictor, path, epoch
        self._page, self._cap, self._wal_limit = page_size, cap, wal_limit
        self.next_seq = next_seq
        self.disk = DiskCondition(path)
        self.reserve = Reserve(path, wal_limit)
        self.reserve.ensure(disk_headroom_bytes(measure(path).fs_bytes))
        self.dropped_samples: dict[str, int] = {}
        self.dropped_blocks: dict[str, int] = {}
        self._catalog: str | None = None  # the catalog this process stored last
        self._drops = Losses()  # dropped, not yet in an announcement
        self._open: tuple[int, float, Losses] | None = None  # seq, created, content

    def freeze(self, seq: int) -> None:
        """An upload claimed block ``seq``: if it is the open announcement, never rewrite it."""
        if self._open is not None and self._open[0] == seq:
            self._open = None

    def insert(
        self, block: Incoming, catalog: tuple[str, Incoming] | None, *, held: Set[int],
        newest_catalog: int | None,
    ) -> Inserted:  # fmt: skip
        """Store ``block`` (after ``catalog``, ``(id, catalog block)``, unless this process
        stored that catalog last), evicting what the cap and the disk require."""
        needs_catalog = catalog is not None and catalog[0] != self._catalog
        items = [catalog[1], block] if catalog is not None and needs_catalog else [block]
        blocks_need = sum(footprint(len(item.data), self._page) for item in items)
        if blocks_need > self._cap:
            return self.drop(block, "oversized", disk=False)
        for tight in (False, True):
            try:
                done = self._attempt(items, blocks_need, held, newest_catalog, tight=tight)
            except _NoRoom as exc:
                reason = "disk_full" if exc.disk else "buffer_full"
                return self.drop(block, reason, disk=exc.disk)
            except sqlite3.Error as exc:
                if not _full(exc):
                    raise
                self.make_room()
                continue
            if catalog is not None:
                self._catalog = catalog[0]
            return done
        return self.drop(block, "disk_full", disk=True)

    def make_room(self) -> None:
        """After SQLITE_FULL: give the reserve back and checkpoint, so the next transaction
        has room in the WAL for evicting (best effort)."""
        self.reserve.release()
        self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database so the next write can reuse the WAL's space
        (best effort: it needs no new space unless the file must grow)."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            return

    def _attempt(
        self, items: list[Incoming], blocks_need: int, held: Set[int],
        newest_catalog: int | None, *, tight: bool,
    ) -> Inserted:  # fmt: skip
        now, page = items[-1].created, self._page
        space = measure(self._path)
        logical = int(self._conn.execute("PRAGMA page_count").fetchone()[0]) * page
        used = used_bytes(self._conn, page)
        disk_cap = disk_cap_bytes(
            logical_db=logical, db_file=space.db_file, wal_file=space.wal_file,
            free=space.free, wal_peak=self._wal_limit + blocks_need + page,
            fs_bytes=space.fs_bytes, page_size=page,
        )  # fmt: skip
        if tight:  # the disk said no: stay inside the file's own pages
            disk_cap = min(disk_cap, logical - SLACK_PAGES * page)
        cap = min(self._cap, disk_cap)
        need = blocks_need + (page if self._drops or used + blocks_need > cap else 0)
        disk_bound = tight or (disk_cap < self._cap and used + need > disk_cap)
        self.disk.seen(space, cap)
        with transaction(self._conn):
            evicted, used, carried = self._evictor.evict(
                used=used, need=need, cap=cap, held=held, newest_catalog=newest_catalog,
                measure=lambda: used_bytes(self._conn, page),
            )  # fmt: skip
            if used + need > cap:
                raise _NoRoom(disk_bound)
            announcement, added = self._announce(evicted, carried, held, now)
            first, end = self._write(items, self.next_seq + added)
            self._evictor.record(evicted, now)
        self.next_seq, self._drops = end, Losses()
        if announcement is not None or self._open_evicted(evicted):
            self._open = announcement
        self._evictor.counted(evicted, end - 1)
        if disk_bound:
            self.disk.disk_bound(sum(map(len, evicted.values())), now)
        roomy = disk_cap >= self._cap or used + need <= disk_cap * (1 - ROOM_HYSTERESIS)
        self.disk.stored(full=disk_bound or not roomy, now=now)
        if roomy and not disk_bound:
            self.reserve.ensure(disk_headroom_bytes(space.fs_bytes))
        samples = sum(i.count for i in items if i.kind == BlockKind.TELEMETRY)
        catalog_seq = first if items[0].kind == BlockKind.CATALOG else None
        return Inserted(end - 1, len(items) + added, samples, catalog_seq, evicted)

    def _open_evicted(self, evicted: Evicted) -> bool:
        seq = None if self._open is None else self._open[0]
        return any(v.seq == seq for victims in evicted.values() for v in victims)

    def _announce(
        self, evicted: Evicted, carried: list[dict[str, Any]], held: Set[int], now: float
    ) -> tuple[tuple[int, float, Losses] | None, int]:
        """Write what this insert evicted, what evicted announcements said (``carried``)
        and what was dropped before it into the open announcement (or a new one): the
        announcement and the seqs it took (0 or 1)."""
        new = self._drops.copy()
        new.carry(carried)
        for reason, victims in evicted.items():
            new.evicted(reason, victims)
        if not new:
            return None, 0
        if self._open is not None and self._open[0] not in held and not self._open_evicted(evicted):
            seq, created, content = self._open
            content = content.copy()
            content.absorb(new)
            if self._store_announcement(seq, created, content, now, update=True):
                return (seq, created, content), 0
        # dated like the oldest data it names: it waits behind live data, not ahead of it
        created = min(now, new.earliest() or now)
        self._store_announcement(self.next_seq, created, new, now, update=False)
        return (self.next_seq, created, new), 1

    def _store_announcement(
        self, seq: int, created: float, content: Losses, now: float, *, update: bool
    ) -> bool:
        events = content.events(now)
        data = encode_events(epoch=self._epoch, seq=seq, created=created, events=events)
        if update:
            sql = "UPDATE blocks SET data = ?, size = ?, count = ? WHERE seq = ? AND kind = 2"
            rows = self._conn.execute(sql + " AND quarantine_reason IS NULL",
                                      (data, len(data), len(events), seq))  # fmt: skip
            return rows.rowcount == 1
        row = (seq, int(BlockKind.EVENTS), created, len(events), len(data), data)
        self._conn.execute(_INSERT, row)
        return True

    def _write(self, items: list[Incoming], seq: int) -> tuple[int, int]:
        """Insert the blocks from ``seq`` on: the first one's seq and the next seq
        (``next_seq`` moves only once the caller's transaction commits)."""
        first = seq
        for item in items:
            data = restamp(item.data, seq)
            self._conn.execute(
                _INSERT, (seq, int(item.kind), item.created, item.count, len(data), data)
            )
            seq += 1
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq),))
        return first, seq

    def drop(self, block: Incoming, reason: str, *, disk: bool = False) -> Inserted:
        """Count ``block`` as not stored (announced with the next block stored)."""
        self._drops.dropped(reason, int(block.kind), block.count, len(block.data), block.created)
        samples = block.count if block.kind == BlockKind.TELEMETRY else 0
        self.dropped_samples[reason] = self.dropped_samples.get(reason, 0) + samples
        self.dropped_blocks[reason] = self.dropped_blocks.get(reason, 0) + 1
        if disk:
            self.disk.disk_bound(0, block.created)
        self.disk.dropped(reason, samples, sum(self.dropped_samples.values()))
        return Inserted(None)
