"""The buffer's transactions on its SQLite file, run by the writer thread and nothing else.

Owns: one transaction per operation (insert a block with the evictions it needs, ack, quarantine),
the pending query, the counters of the outage budget (kept in memory, refreshed by every
transaction, published as one immutable ``Counters`` value), and the mapping of sqlite3 errors
into agent.errors (``StoreUnavailableError``: retry; ``StoreCorruptError``: stop).
Must not: be called from the event loop or from two threads (the connection belongs to the
writer thread), encode or decode blocks, or decide the eviction order (agent.core.retention).
Invariants:
- An insert commits the block, its evictions and ``meta.next_seq = seq + 1`` together, or none
  of them; seq never repeats (the counter only grows, also over an emptied table).
- Used bytes are measured, not estimated: (page_count - freelist_count) x page_size; an
  insert evicts until used + the block's estimated footprint fits ``db_cap_bytes``; a block
  that could never fit is dropped and counted as evicted for reason "oversized".
- ``counters`` is replaced, never mutated, so readers on other threads see a consistent value.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

from agent.core.blocks import BlockKind
from agent.core.retention import (
    EVICTION_ORDER,
    Candidate,
    db_cap_bytes,
    footprint,
    plan_eviction,
)
from agent.errors import FatalError, RetryableError
from agent.logs import get_logger
from agent.shell.buffer_schema import Opened

__all__ = ["Counters", "Store", "StoreCorruptError", "StoreUnavailableError", "StoredBlock"]

_log = get_logger("agent.shell.buffer")
_BATCH = 64
_CHUNK = 500
_SELECT_SEQS = (
    "SELECT seq, kind, count, quarantine_reason IS NOT NULL FROM blocks WHERE seq IN ({marks})"
)
_DELETE_SEQS = "DELETE FROM blocks WHERE seq IN ({marks})"
_PENDING_CATALOGS = (
    "SELECT seq, kind, data, created, size FROM blocks"
    " WHERE kind = 3 AND quarantine_reason IS NULL ORDER BY seq LIMIT ?"
)
_PENDING = (
    "SELECT seq, kind, data, created, size FROM blocks"
    " WHERE kind IN ({marks}) AND quarantine_reason IS NULL ORDER BY seq {order} LIMIT ?"
)
_EVICT_SQL = {
    "quarantined": "SELECT seq, kind, count, size, 1 FROM blocks"
    " WHERE quarantine_reason IS NOT NULL ORDER BY seq LIMIT ?",
    "telemetry": "SELECT seq, kind, count, size, 0 FROM blocks"
    " WHERE kind = 1 AND quarantine_reason IS NULL ORDER BY seq LIMIT ?",
    "catalog": "SELECT seq, kind, count, size, 0 FROM blocks"
    " WHERE kind = 3 AND quarantine_reason IS NULL AND seq < ? ORDER BY seq LIMIT ?",
    "events": "SELECT seq, kind, count, size, 0 FROM blocks"
    " WHERE kind = 2 AND quarantine_reason IS NULL ORDER BY seq LIMIT ?",
}


_Victim = tuple[int, int, int, int, int]
"""(seq, kind, count, size, quarantined) of a block the cap removed."""


class StoreUnavailableError(RetryableError):
    """SQLite could not do it now (disk full, I/O error, locked): the same call may succeed."""


class StoreCorruptError(FatalError):
    """The file went corrupt while open: stop; the next open moves it aside."""


@dataclass(frozen=True)
class StoredBlock:
    seq: int
    kind: BlockKind
    data: bytes
    created: float
    size: int


@dataclass(frozen=True)
class Counters:
    bytes_used: int
    blocks_pending: int
    samples_pending: int
    oldest_created: float | None
    evictions: Mapping[str, int]
    quarantined: int


@contextmanager
def mapped_errors() -> Iterator[None]:
    """sqlite3 errors -> StoreCorruptError (corrupt file) or StoreUnavailableError."""
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise StoreCorruptError(f"buffer database is corrupt: {exc}") from exc
        raise StoreUnavailableError(f"buffer database: {exc}") from exc


class Store:
    """The open buffer file. Every method blocks on disk: writer thread only."""

    def __init__(self, opened: Opened, *, max_bytes: int) -> None:
        self._conn = opened.conn
        self._page = opened.page_size
        self._cap = db_cap_bytes(max_bytes, opened.page_size)
        self._warned: set[str] = set()
        with mapped_errors():
            self.counters = self._load()

    def _load(self) -> Counters:
        rows = self._conn.execute(
            "SELECT kind, quarantine_reason IS NOT NULL, count(*), coalesce(sum(count), 0)"
            " FROM blocks GROUP BY 1, 2"
        ).fetchall()
        evictions = self._conn.execute("SELECT reason, blocks FROM evictions").fetchall()
        (newest,) = self._conn.execute("SELECT max(seq) FROM blocks WHERE kind = 3").fetchone()
        self._newest_catalog: int | None = newest
        self._evictions = {str(reason): int(blocks) for reason, blocks in evictions}
        pending = sum(n for _, q, n, _ in rows if not q)
        samples = sum(s for kind, q, _, s in rows if not q and kind == BlockKind.TELEMETRY)
        quarantined = sum(n for _, q, n, _ in rows if q)
        return self._counters(pending, samples, quarantined, self._oldest())

    # -- transactions --------------------------------------------------------------------

    def insert(self, seq: int, kind: BlockKind, data: bytes, created: float, count: int) -> None:
        """Store one block (evicting what the cap needs) and advance next_seq, atomically."""
        with mapped_errors():
            self.counters = self._insert(seq, kind, data, created, count)

    def _insert(
        self, seq: int, kind: BlockKind, data: bytes, created: float, count: int
    ) -> Counters:
        c = self.counters
        pending, samples, quarantined = c.blocks_pending, c.samples_pending, c.quarantined
        need = footprint(len(data), self._page)
        evicted: dict[str, list[_Victim]] = {}
        with self._transaction():
            if need > self._cap:
                evicted["oversized"] = [(seq, int(kind), count, len(data), 0)]
            else:
                evicted = self._evict(need)
                self._conn.execute(
                    "INSERT INTO blocks(seq, kind, created, count, size, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, int(kind), created, count, len(data), data),
                )
            self._conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'next_seq' AND CAST(value AS INTEGER) <= ?",
                (str(seq + 1), seq),
            )
            for reason, victims in evicted.items():
                self._record_eviction(reason, victims, created)
        for reason, victims in evicted.items():
            if reason != "oversized":
                pending -= sum(1 for v in victims if not v[4])
                samples -= sum(v[2] for v in victims if v[1] == BlockKind.TELEMETRY and not v[4])
                quarantined -= sum(1 for v in victims if v[4])
            self._evictions[reason] = self._evictions.get(reason, 0) + len(victims)
            self._log_eviction(reason, victims, seq)
        if "oversized" not in evicted:
            pending += 1
            samples += count if kind == BlockKind.TELEMETRY else 0
            if kind == BlockKind.CATALOG:
                self._newest_catalog = seq
        oldest = self._oldest() if evicted else (c.oldest_created or created)
        return self._counters(pending, samples, quarantined, oldest)

    def ack(self, seqs: Sequence[int]) -> None:
        """Delete these blocks (unknown seqs are ignored)."""
        unique = sorted(set(seqs))
        with mapped_errors():
            self._ack(unique)

    def _ack(self, unique: list[int]) -> None:
        c = self.counters
        pending, samples, quarantined = c.blocks_pending, c.samples_pending, c.quarantined
        with self._transaction():
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = _SELECT_SEQS.format(marks=marks)
                for _, kind, count, q in self._conn.execute(sql, chunk):
                    pending -= not q
                    quarantined -= bool(q)
                    samples -= count if kind == BlockKind.TELEMETRY and not q else 0
                self._conn.execute(_DELETE_SEQS.format(marks=marks), chunk)
            if self._newest_catalog in unique:
                (self._newest_catalog,) = self._conn.execute(
                    "SELECT max(seq) FROM blocks WHERE kind = 3"
                ).fetchone()
        self.counters = self._counters(pending, samples, quarantined, self._oldest())

    def quarantine(self, seq: int, reason: str, now: float) -> bool:
        """Mark a pending block quarantined; False when there is no such pending block."""
        c = self.counters
        with mapped_errors():
            with self._transaction():
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

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _used(self) -> int:
        (pages,) = self._conn.execute("PRAGMA page_count").fetchone()
        (free,) = self._conn.execute("PRAGMA freelist_count").fetchone()
        return int(pages - free) * self._page

    def _evict(self, need: int) -> dict[str, list[_Victim]]:
        """Delete blocks in EVICTION_ORDER until ``need`` more bytes fit; what was deleted."""
        evicted: dict[str, list[_Victim]] = {}
        used = self._used()
        for reason in EVICTION_ORDER:
            while used + need > self._cap:
                sql = _EVICT_SQL[reason]
                params = (self._newest_catalog or 0, _BATCH) if reason == "catalog" else (_BATCH,)
                rows = self._conn.execute(sql, params).fetchall()
                if not rows:
                    break
                by_seq = {row[0]: row for row in rows}
                candidates = [Candidate(row[0], footprint(row[3], self._page)) for row in rows]
                victims = [by_seq[v.seq] for v in plan_eviction(used, need, self._cap, candidates)]
                marks = ",".join("?" * len(victims))
                self._conn.execute(_DELETE_SEQS.format(marks=marks), [v[0] for v in victims])
                evicted.setdefault(reason, []).extend(victims)
                used = self._used()
        return evicted

    def _record_eviction(self, reason: str, victims: list[_Victim], now: float) -> None:
        samples = sum(v[2] for v in victims if v[1] == BlockKind.TELEMETRY)
        self._conn.execute(
            "INSERT INTO evictions(reason, blocks, samples, bytes, last_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(reason) DO UPDATE SET blocks = blocks + excluded.blocks,"
            " samples = samples + excluded.samples, bytes = bytes + excluded.bytes,"
            " last_at = excluded.last_at",
            (reason, len(victims), samples, sum(v[3] for v in victims), now),
        )

    def _log_eviction(self, reason: str, victims: list[_Victim], seq: int) -> None:
        emit = _log.debug if reason in self._warned else _log.warning
        self._warned.add(reason)
        emit(
            "buffer_block_dropped" if reason == "oversized" else "buffer_evicted",
            reason=reason,
            blocks=len(victims),
            bytes=sum(v[3] for v in victims),
            total=self._evictions[reason],
            for_seq=seq,
        )

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
        return Counters(
            bytes_used=self._used(),
            blocks_pending=pending,
            samples_pending=samples,
            oldest_created=oldest,
            evictions=MappingProxyType(dict(self._evictions)),
            quarantined=quarantined,
        )
