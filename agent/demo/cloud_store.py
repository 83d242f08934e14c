"""The reference receiver's store: one SQLite file of blocks, catalogs, samples and events.

Owns: the receiver's schema; deduplication by ``(agent_id, epoch, seq)``; decoding telemetry
blocks into sample rows with the catalog they name (after the acknowledgement: a block is
stored raw, then decoded by ``decode_pending``, which the receiver runs whenever it is idle
and every read runs first; a block whose catalog has not arrived yet waits for it); storing
events and catalogs; the read queries of the demo and the tests.

Must not: know HTTP (``agent.demo.cloud`` does), or report "stored" before the commit.

Invariants:
- ``put_block`` returns "stored" only after its transaction committed (WAL, synchronous=FULL).
  An identity is stored at most once: the same bytes again are "duplicate", the same identity
  with other bytes is "conflict"; neither changes anything.
- Every sample row belongs to exactly one block (``samples.block``), inserted in the
  transaction that moves that block from "pending" to "decoded": decoded once, never partly.
- Reads are consistent with acknowledgements: they decode every decodable pending block first.
- One connection behind one lock: every method is thread-safe (FastAPI calls from threads);
  the CPU-heavy decoding runs outside the lock.
- Sample rows are append-only with no per-tag index: a block carries every tag, so an index
  keyed by tag would rewrite one page per tag per block (~40 MB of WAL per 10,000-sample
  block). Reading one tag scans the table: fine for a demo and tests, not for a real cloud.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.buffer import blocks
from agent.buffer.blocks import BlockHeader, BlockKind, Catalog
from agent.domain.errors import RejectedError

__all__ = ["BlockRow", "CloudStore", "PutResult"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    kind INTEGER NOT NULL, created REAL NOT NULL, count INTEGER NOT NULL,
    catalog_id TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    received_at REAL NOT NULL, state TEXT NOT NULL, data BLOB NOT NULL,
    UNIQUE (agent_id, epoch, seq));
CREATE INDEX IF NOT EXISTS blocks_pending ON blocks (id) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS catalogs (
    agent_id TEXT NOT NULL, catalog_id TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (agent_id, catalog_id));
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, tag TEXT NOT NULL, unit TEXT NOT NULL,
    source TEXT NOT NULL, UNIQUE (agent_id, tag));
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER NOT NULL, time REAL NOT NULL, value, status INTEGER NOT NULL,
    block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, block INTEGER NOT NULL, kind TEXT,
    time REAL, body TEXT NOT NULL);
"""


_Rows = list[tuple[int, float, Any, int]]
_NEXT_PENDING = (
    "SELECT b.id, b.agent_id, b.catalog_id, b.data FROM blocks b WHERE b.state = 'pending'"
    " AND EXISTS (SELECT 1 FROM catalogs c"
    " WHERE c.agent_id = b.agent_id AND c.catalog_id = b.catalog_id) ORDER BY b.id LIMIT 1"
)


@dataclass(frozen=True)
class PutResult:
    status: Literal["stored", "duplicate", "conflict"]
    kind: BlockKind
    count: int
    sha256: str


@dataclass(frozen=True)
class BlockRow:
    """A stored block as tests see it; ``id`` orders blocks by arrival."""

    id: int
    epoch: str
    seq: int
    kind: BlockKind
    count: int
    size: int
    state: str


class CloudStore:
    """The receiver's SQLite file; see the module docstring."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # (agent_id, catalog_id) -> the catalog and its tags' series ids (under the lock)
        self._known: dict[tuple[str, str], tuple[Catalog, dict[str, int]]] = {}
        self._closed = False
        self._decoding = threading.Lock()
        self.last_put = 0.0  # time.monotonic() of the last put_block: the receiver's idleness

    def close(self) -> None:
        with self._decoding, self._lock:  # waits for a decode in progress
            self._closed = True
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------

    def put_block(self, agent_id: str, header: BlockHeader, data: bytes) -> PutResult:
        """Store one block; events and catalogs are decoded now (``RejectedError`` if they do
        not decode), telemetry later (the expensive part, off the acknowledgement's path)."""
        digest = hashlib.sha256(data).hexdigest()
        self.last_put = time.monotonic()
        with self._transaction() as db:
            row = db.execute(
                "SELECT sha256 FROM blocks WHERE agent_id=? AND epoch=? AND seq=?",
                (agent_id, header.epoch, header.seq),
            ).fetchone()
            if row is not None:
                status: Literal["duplicate", "conflict"] = (
                    "duplicate" if row[0] == digest else "conflict"
                )
                return PutResult(status, header.kind, header.count, digest)
            state = "pending" if header.kind == BlockKind.TELEMETRY else "decoded"
            block_id = db.execute(
                "INSERT INTO blocks (agent_id, epoch, seq, kind, created, count, catalog_id, size,"
                " sha256, received_at, state, data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (agent_id, header.epoch, header.seq, int(header.kind), header.created,
                 header.count, header.catalog_id, len(data), digest, self._now(), state, data),
            ).lastrowid  # fmt: skip
            assert block_id is not None
            if header.kind == BlockKind.EVENTS:
                self._insert_events(db, agent_id, block_id, blocks.decode_events(data))
            elif header.kind == BlockKind.CATALOG:
                self._add_catalog(db, agent_id, blocks.decode_catalog(data), data)
        return PutResult("stored", header.kind, header.count, digest)

    def decode_pending(self, limit: int | None = None) -> int:
        """Decode up to ``limit`` pending telemetry blocks whose catalog is stored, oldest
        first, each in its own transaction; returns how many were done."""
        with self._decoding:  # one decoder at a time: the idle loop or a read catching up
            done = 0
            while (limit is None or done < limit) and self._decode_next():
                done += 1
            return done

    def _decode_next(self) -> bool:
        with self._lock:
            row = None if self._closed else self._db.execute(_NEXT_PENDING).fetchone()
            if row is None:
                return False
            block_id, agent_id, catalog_id, data = row
            known = self._known.get((agent_id, catalog_id))
            if known is None:
                (raw,) = self._db.execute(
                    "SELECT data FROM catalogs WHERE agent_id=? AND catalog_id=?",
                    (agent_id, catalog_id),
                ).fetchone()
                known = self._remember(self._db, agent_id, blocks.decode_catalog(raw))
        catalog, ids = known
        try:
            samples = blocks.decode_telemetry(data, catalog)
            rows: _Rows | None = [(ids[s.tag], s.source_time, s.value, s.status) for s in samples]
        except RejectedError:
            rows = None
        with self._transaction() as db:
            state = "undecodable" if rows is None else "decoded"
            moved = db.execute(
                "UPDATE blocks SET state=? WHERE id=? AND state='pending'", (state, block_id)
            ).rowcount
            if moved and rows is not None:
                sql = f"INSERT INTO samples VALUES (?,?,?,?,{int(block_id)})"  # noqa: S608
                db.executemany(sql, rows)
        return True

    def _remember(
        self, db: sqlite3.Connection, agent_id: str, catalog: Catalog
    ) -> tuple[Catalog, dict[str, int]]:
        rows = db.execute("SELECT tag, id FROM series WHERE agent_id=?", (agent_id,))
        ids = dict(rows.fetchall())
        known = (catalog, {e.name: ids[e.name] for e in catalog.entries})
        self._known[(agent_id, catalog.id)] = known
        return known

    def _add_catalog(
        self, db: sqlite3.Connection, agent_id: str, catalog: Catalog, data: bytes
    ) -> None:
        db.execute(
            "INSERT OR IGNORE INTO catalogs (agent_id, catalog_id, data) VALUES (?,?,?)",
            (agent_id, catalog.id, data),
        )
        db.executemany(
            "INSERT OR IGNORE INTO series (agent_id, tag, unit, source) VALUES (?,?,?,?)",
            [(agent_id, e.name, e.unit, e.source) for e in catalog.entries],
        )

    def _insert_events(
        self, db: sqlite3.Connection, agent_id: str, block_id: int, events: list[dict[str, Any]]
    ) -> None:
        db.executemany(
            "INSERT INTO events (agent_id, block, kind, time, body) VALUES (?,?,?,?,?)",
            [
                (agent_id, block_id, _text(e.get("kind")), _number(e.get("time")),
                 json.dumps(e, sort_keys=True, default=str))
                for e in events
            ],
        )  # fmt: skip

    # -- reading -----------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.decode_pending()
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def agents(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT agent_id FROM blocks ORDER BY 1")]

    def counts(self, agent_id: str) -> dict[str, int]:
        """Blocks per kind, bytes, decoded samples, samples waiting for a catalog, events."""
        (row,) = self._query(
            "SELECT count(*), coalesce(sum(size), 0),"
            " coalesce(sum(kind=1), 0), coalesce(sum(kind=2), 0), coalesce(sum(kind=3), 0),"
            " coalesce(sum(CASE WHEN kind=1 AND state='decoded' THEN count END), 0),"
            " coalesce(sum(CASE WHEN state='pending' THEN count END), 0),"
            " coalesce(sum(state='undecodable'), 0) FROM blocks WHERE agent_id=?",
            (agent_id,),
        )
        (events,) = self._query("SELECT count(*) FROM events WHERE agent_id=?", (agent_id,))[0]
        keys = [
            *("blocks", "bytes", "telemetry_blocks", "event_blocks", "catalog_blocks"),
            *("samples", "samples_waiting_catalog", "undecodable_blocks"),
        ]
        return dict(zip(keys, (int(v) for v in row), strict=True)) | {"events": int(events)}

    def blocks(self, agent_id: str) -> list[BlockRow]:
        """Every stored block of an agent, in arrival order."""
        rows = self._query(
            "SELECT id, epoch, seq, kind, count, size, state FROM blocks WHERE agent_id=?"
            " ORDER BY id",
            (agent_id,),
        )
        return [BlockRow(r[0], r[1], r[2], BlockKind(r[3]), r[4], r[5], r[6]) for r in rows]

    def samples(
        self, agent_id: str, tag: str | None = None, *, since: float | None = None, limit: int = -1
    ) -> list[tuple[str, float, Any, int]]:
        """(tag, time, value, status) rows, by tag then time; every tag when ``tag`` is None."""
        sql = (
            "SELECT series.tag, time, value, status FROM samples JOIN series"
            " ON series.id = samples.series WHERE series.agent_id=?"
        )
        args: list[Any] = [agent_id]
        if tag is not None:
            sql, args = sql + " AND series.tag=?", [*args, tag]
        if since is not None:
            sql, args = sql + " AND time>=?", [*args, since]
        rows = self._query(sql + " ORDER BY 1, 2 LIMIT ?", (*args, limit))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def events(self, agent_id: str, *, limit: int = -1) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT body FROM events WHERE agent_id=? ORDER BY id LIMIT ?", (agent_id, limit)
        )
        return [json.loads(r[0]) for r in rows]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
