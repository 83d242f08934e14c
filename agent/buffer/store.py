"""The buffer's transactions on its SQLite file, run by the writer thread and nothing else.

Owns: the store's operations (insert, via agent.buffer.insert; ack; quarantine; the
pending query), the blocks the uploader holds (in flight, or acknowledged and not yet
deleted: never evicted), the outage budget's counters (one immutable ``Counters`` value,
of agent.buffer.budget, replaced after every operation), and the mapping of sqlite3 errors
into agent.domain.errors (``StoreUnavailableError`` and its ``StoreFullError``: retry later;
``StoreCorruptError``: stop). Eviction: agent.buffer.evict; the disk: agent.buffer.space.
Must not: be called from the event loop or from two threads (the connection belongs to the
writer thread), decode blocks (but the announcements in EVENTS blocks it evicts), or decide
the eviction order (agent.buffer.retention).
Invariants:
- The seq advances only in the transaction that stores a block, so an epoch's seqs are
  1, 2, 3, ... and every one that will never be sent is named by a ``buffer_blocks_evicted``
  event (see agent.buffer.insert); an insert never fails for want of room.
- A held seq is never evicted; an ack releases what it deleted (a failed ack keeps them held).
- An ack that hits SQLITE_FULL gives back the reserve, checkpoints and tries once more, then
  raises StoreFullError.
- An insert that fails for another reason than room is retried once at once (the writer is
  FIFO: put order holds), then dropped and counted as ``store_error``: no block the buffer
  accepted is lost uncounted (only a corrupt file raises).
- Used bytes are measured: (page_count - freelist_count) x page_size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from agent.buffer.blocks import BlockKind
from agent.buffer.budget import Counters
from agent.buffer.evict import Evictor
from agent.buffer.insert import Incoming, Inserter
from agent.buffer.retention import db_cap_bytes
from agent.buffer.schema import Opened, transaction, used_bytes
from agent.domain.errors import FatalError, RetryableError
from agent.domain.logger import get_logger

__all__ = [
    "Counters",
    "Incoming",
    "Store",
    "StoreCorruptError",
    "StoreFullError",
    "StoreUnavailableError",
    "StoredBlock",
]

_log = get_logger("agent.buffer.buffer")
_CHUNK = 500
_SELECT_SEQS = (
    "SELECT seq, kind, count, quarantine_reason IS NOT NULL FROM blocks WHERE seq IN ({marks})"
)
_BLOCK = "SELECT seq, kind, data, created, size FROM blocks WHERE quarantine_reason IS NULL"
_PENDING_CATALOGS = f"{_BLOCK} AND kind = 3 ORDER BY seq LIMIT ?"
_PENDING = _BLOCK + " AND kind IN ({marks}) ORDER BY seq {order} LIMIT ?"


class StoreUnavailableError(RetryableError):
    """SQLite could not do it now (disk full, I/O error, locked): the same call may succeed."""


class StoreFullError(StoreUnavailableError):
    """The disk is full (SQLITE_FULL): retry once space returns."""


class StoreCorruptError(FatalError):
    """The file went corrupt while open: stop; the next open moves it aside."""


@dataclass(frozen=True)
class StoredBlock:
    seq: int
    kind: BlockKind
    data: bytes
    created: float
    size: int


@contextmanager
def mapped_errors() -> Iterator[None]:
    """sqlite3 errors -> StoreCorruptError (corrupt file), StoreFullError (disk full) or
    StoreUnavailableError; OSError measuring the disk -> StoreUnavailableError."""
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise StoreCorruptError(f"buffer database is corrupt: {exc}") from exc
        if code == sqlite3.SQLITE_FULL:
            raise StoreFullError(f"buffer database: {exc}") from exc
        raise StoreUnavailableError(f"buffer database: {exc}") from exc
    except OSError as exc:
        raise StoreUnavailableError(f"buffer folder: {exc}") from exc


class Store:
    """The open buffer file. Every method blocks on disk: writer thread only."""

    def __init__(self, opened: Opened, *, max_bytes: int, path: Path) -> None:
        self._conn, self._page = opened.conn, opened.page_size
        self._held: set[int] = set()
        self._put_failures = 0  # failed insert attempts since the last block stored
        with mapped_errors():
            self._evictor = Evictor(self._conn, self._page)
            self._inserter = Inserter(
                self._conn, self._evictor, path=path, epoch=opened.epoch,
                page_size=opened.page_size, cap=db_cap_bytes(max_bytes, opened.page_size),
                wal_limit=opened.wal_limit, next_seq=opened.next_seq,
            )  # fmt: skip
            self.counters = self._load()

    def _load(self) -> Counters:
        rows = self._conn.execute(
            "SELECT kind, quarantine_reason IS NOT NULL, count(*), coalesce(sum(count), 0)"
            " FROM blocks GROUP BY 1, 2"
        ).fetchall()
        (newest,) = self._conn.execute("SELECT max(seq) FROM blocks WHERE kind = 3").fetchone()
        self._newest_catalog: int | None = newest
        pending = sum(n for _, q, n, _ in rows if not q)
        samples = sum(s for kind, q, _, s in rows if not q and kind == BlockKind.TELEMETRY)
        quarantined = sum(n for _, q, n, _ in rows if q)
        return self._counters(pending, samples, quarantined, self._oldest())

    def insert(self, block: Incoming, catalog: tuple[str, Incoming] | None) -> int | None:
        """Store ``block`` (its catalog first when this process has not stored it): its
        seq, or None when it was dropped (counted; see agent.buffer.insert). A failed
        insert (locked, I/O error, the folder gone) is tried once more at once, so put
        order holds, then dropped and counted as ``store_error``; StoreCorruptError is
        raised."""
        for attempt in (1, 2):
            try:
                with mapped_errors():
                    done = self._inserter.insert(
                        block, catalog, held=self._held, newest_catalog=self._newest_catalog
                    )
            except StoreUnavailableError as exc:
                self._put_failures += 1
                emit = _log.warning if self._put_failures == 1 else _log.debug
                emit("buffer_put_failed", error=f"{type(exc).__name__}: {exc}",
                     attempt=attempt, failures=self._put_failures)  # fmt: skip
                if attempt == 1:
                    continue
                done = self._inserter.drop(block, "store_error")
            else:
                if self._put_failures:
                    _log.info("buffer_put_recovered", after_failures=self._put_failures)
                    self._put_failures = 0
            break
        c = self.counters
        with mapped_errors():
            pending, samples = c.blocks_pending + done.blocks, c.samples_pending + done.samples
            quarantined = c.quarantined
            for victims in done.evicted.values():
                pending -= sum(1 for v in victims if not v.quarantined)
                samples -= sum(v.count for v in victims if v.kind == 1 and not v.quarantined)
                quarantined -= sum(1 for v in victims if v.quarantined)
            if done.catalog_seq is not None:
                self._newest_catalog = done.catalog_seq
            oldest = c.oldest_created
            if done.evicted or (oldest is None and done.blocks):
                oldest = self._oldest()
            self.counters = self._counters(pending, samples, quarantined, oldest)
        return done.seq

    # -- the uploader's side -------------------------------------------------------------

    def claim(self, seq: int) -> StoredBlock | None:
        """Hold a pending block (it will not be evicted or rewritten) and return it as it is
        now; None when it is gone."""
        with mapped_errors():
            found = self._blocks(f"{_BLOCK} AND seq = ?", (seq,))
        if not found:
            return None
        self._held.add(seq)
        self._inserter.freeze(seq)
        return found[0]

    def release(self, seqs: Iterable[int]) -> None:
        """Let these blocks be evicted again (their upload failed)."""
        self._held.difference_update(seqs)

    def ack(self, seqs: Sequence[int]) -> None:
        """Delete these blocks (unknown seqs are ignored); StoreFullError when even a
        checkpoint does not give the delete room (the blocks stay held)."""
        unique = sorted(set(seqs))
        with mapped_errors():
            try:
                self._ack(unique)
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                    raise
                self._inserter.make_room()
                self._ack(unique)
        self._held.difference_update(unique)

    def _ack(self, unique: list[int]) -> None:
        c = self.counters
        pending, samples, quarantined = c.blocks_pending, c.samples_pending, c.quarantined
        with transaction(self._conn):
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for _, kind, count, q in self._conn.execute(
                    _SELECT_SEQS.format(marks=marks), chunk
                ):
                    pending -= not q
                    quarantined -= bool(q)
                    samples -= count if kind == BlockKind.TELEMETRY and not q else 0
                sql = f"DELETE FROM blocks WHERE seq IN ({marks})"  # noqa: S608 (placeholders)
                self._conn.execute(sql, chunk)
            if self._newest_catalog in unique:
                (self._newest_catalog,) = self._conn.execute(
                    "SELECT max(seq) FROM blocks WHERE kind = 3"
                ).fetchone()
        self.counters = self._counters(pending, samples, quarantined, self._oldest())

    def quarantine(self, seq: int, reason: str, now: float) -> bool:
        """Mark a pending block quarantined; False when there is no such pending block."""
        c = self.counters
        with mapped_errors():
            with transaction(self._conn):
                row = self._conn.execute(
                    "UPDATE blocks SET quarantine_reason = ?, quarantined_at = ?"
                    " WHERE seq = ? AND quarantine_reason IS NULL RETURNING kind, count",
                    (reason, now, seq),
                ).fetchone()
            if row is None:
                return False
            samples = c.samples_pending - (row[1] if row[0] == BlockKind.TELEMETRY else 0)
            self.counters = self._counters(
                c.blocks_pending - 1, samples, c.quarantined + 1, self._oldest()
            )
        return True

    def pending(
        self, limit: int, newest_first: bool, kinds: Collection[BlockKind] | None
    ) -> list[StoredBlock]:
        """Up to ``limit`` blocks neither acked nor quarantined; catalogs first (oldest first)."""
        wanted = sorted({int(k) for k in (kinds if kinds is not None else BlockKind)})
        out: list[StoredBlock] = []
        with mapped_errors():
            if BlockKind.CATALOG in wanted and limit > 0:
                out += self._blocks(_PENDING_CATALOGS, (limit,))
            others = [k for k in wanted if k != BlockKind.CATALOG]
            if others and limit > len(out):
                sql = _PENDING.format(
                    marks=",".join("?" * len(others)), order="DESC" if newest_first else "ASC"
                )
                out += self._blocks(sql, (*others, limit - len(out)))
        return out

    def close(self) -> None:
        self._conn.close()

    # -- internals -----------------------------------------------------------------------

    def _oldest(self) -> float | None:
        row = self._conn.execute(
            "SELECT created FROM blocks WHERE quarantine_reason IS NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        return None if row is None else float(row[0])

    def _blocks(self, sql: str, params: Sequence[object]) -> list[StoredBlock]:
        return [
            StoredBlock(seq, BlockKind(kind), bytes(data), created, size)
            for seq, kind, data, created, size in self._conn.execute(sql, params)
        ]

    def _counters(
        self, pending: int, samples: int, quarantined: int, oldest: float | None
    ) -> Counters:
        ins = self._inserter
        return Counters(
            bytes_used=used_bytes(self._conn, self._page),
            blocks_pending=pending,
            samples_pending=samples,
            oldest_created=oldest,
            evictions=MappingProxyType(dict(self._evictor.totals)),
            quarantined=quarantined,
            next_seq=ins.next_seq,
            dropped_samples=MappingProxyType(dict(ins.dropped_samples)),
            dropped_blocks=MappingProxyType(dict(ins.dropped_blocks)),
            disk_full=ins.disk.full,
            disk_free_bytes=ins.disk.free,
            capacity_bytes=ins.disk.capacity,
        )
