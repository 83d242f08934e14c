"""The buffer's SQLite file: schema, migrations, connection settings, corrupt-file recovery.

Owns: the tables (created and migrated with sqlite-utils, so plant IT can inspect the file
with ``sqlite-utils tables state.db --counts``), the pragmas every connection gets, the
check that a file is an intact buffer, and moving a corrupt one aside.
Must not: run on the event loop (every function here blocks on disk: the buffer's writer
thread calls them), decide what to evict, or know the block format beyond the kind numbers.

Schema (migration set ``edge_agent_buffer`` in sqlite-utils' ``_sqlite_migrations`` table):

    blocks       one row per stored block
                 seq INTEGER PRIMARY KEY   the block's seq (the rowid: insertion order)
                 kind INTEGER              -> block_kinds.id (1 telemetry, 2 events, 3 catalog)
                 created REAL              unix seconds when the block was put
                 count INTEGER             samples, events or catalog tags in the block
                 size INTEGER              bytes of data
                 quarantined_at REAL       NULL while pending; set when the cloud refused it
                 quarantine_reason TEXT    why it was refused (NULL while pending)
                 data BLOB                 the block, byte for byte what is sent
                 partial indexes on seq: blocks_events (kind = 2), blocks_catalogs
                 (kind = 3), blocks_quarantined (quarantine_reason IS NOT NULL)
    block_kinds  id INTEGER PRIMARY KEY, name TEXT: the kind numbers spelled out
    meta         key TEXT PRIMARY KEY, value TEXT: format, epoch (uuid4 hex), next_seq, agent_id,
                 created (unix s); next_seq is updated in the transaction of every insert
    evictions    reason TEXT PRIMARY KEY, blocks, samples, bytes, last_at: every block the byte
                 cap removed unsent, since the store was created

Invariants: every connection uses WAL, synchronous=FULL, explicit transactions
(isolation_level=None) and a WAL bounded by its share of the cap, or of the filesystem when
that is smaller; a file that SQLite calls corrupt or "not a database", that fails
``quick_check``, that is not a buffer of ours, or that is empty (0 bytes: SQLite would take it
for a new database and silently discard its WAL) is renamed (with its -wal and -shm) to
``<name>.corrupt-<UTC timestamp>``, never deleted.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database, Migrations

from agent.buffer.retention import wal_limit_bytes

__all__ = [
    "KIND_NAMES",
    "CorruptStoreError",
    "Opened",
    "connect",
    "move_aside",
    "open_database",
    "transaction",
    "used_bytes",
]

FORMAT = "edge-agent buffer"
KIND_NAMES = {1: "telemetry", 2: "events", 3: "catalog"}
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}

migrations = Migrations("edge_agent_buffer")


@migrations()
def m001_create(db: Database) -> None:
    db.table("block_kinds").insert_all(
        [{"id": k, "name": name} for k, name in KIND_NAMES.items()], pk="id"
    )
    db.table("blocks").create(
        {
            "seq": int, "kind": int, "created": float, "count": int, "size": int,
            "quarantined_at": float, "quarantine_reason": str, "data": bytes,
        },
        pk="seq",
        not_null={"kind", "created", "count", "size", "data"},
        foreign_keys=[("kind", "block_kinds", "id")],
    )  # fmt: skip
    db.table("blocks").create_index(["kind"])
    db.execute("CREATE INDEX blocks_quarantined ON blocks(seq) WHERE quarantine_reason IS NOT NULL")
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("meta").insert_all(
        [
            {"key": "format", "value": FORMAT},
            {"key": "epoch", "value": uuid.uuid4().hex},
            {"key": "next_seq", "value": "1"},
        ]
    )
    db.table("evictions").create(
        {"reason": str, "blocks": int, "samples": int, "bytes": int, "last_at": float},
        pk="reason",
    )


class CorruptStoreError(Exception):
    """The file is not an intact buffer (internal: open_database moves it aside)."""


@dataclass(frozen=True)
class Opened:
    """A buffer file ready for the writer: its connection, identity and recovery, if any."""

    conn: sqlite3.Connection
    page_size: int
    wal_limit: int
    epoch: str
    next_seq: int
    recovered_from: Path | None
    problem: str | None


def connect(path: Path, max_bytes: int) -> tuple[sqlite3.Connection, int]:
    """A connection with the buffer's pragmas, and its WAL limit in bytes (raises sqlite3
    errors on a bad file, OSError when the folder cannot be measured)."""
    st = os.statvfs(path.parent)
    fs_bytes = st.f_blocks * st.f_frsize
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        wal = wal_limit_bytes(min(max_bytes, fs_bytes), page_size)
        conn.execute(f"PRAGMA wal_autocheckpoint={max(1, wal // page_size // 2)}")
        conn.execute(f"PRAGMA journal_size_limit={wal}")
    except BaseException:
        conn.close()
        raise
    return conn, wal


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; anything raised, a failed COMMIT included, rolls back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def used_bytes(conn: sqlite3.Connection, page_size: int) -> int:
    """Bytes in pages in use: (page_count - freelist_count) x page_size."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    return int(pages - free) * page_size


def _check(conn: sqlite3.Connection) -> None:
    """Raise CorruptStoreError unless this is an intact, fully created buffer of ours."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise CorruptStoreError("; ".join(problems))
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and not tables & {"meta", "_sqlite_migrations"}:
        raise CorruptStoreError(f"not an edge-agent buffer (tables: {sorted(tables)})")


def _identity(conn: sqlite3.Connection) -> tuple[str, int]:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT or len(str(meta.get("epoch", ""))) != 32:
        raise CorruptStoreError("not an edge-agent buffer (no format or epoch in meta)")
    (top,) = conn.execute("SELECT max(seq) FROM blocks").fetchone()
    return str(meta["epoch"]), max(int(meta["next_seq"]), (top or 0) + 1)


def _migrate(conn: sqlite3.Connection, agent_id: str, now: float) -> None:
    db = Database(conn, execute_plugins=False)
    migrations.apply(db)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)", (repr(now),))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('agent_id', ?)", (agent_id,))
    conn.execute("COMMIT")


def move_aside(path: Path, now: float) -> Path:
    """Rename the file (and its -wal/-shm) to ``<name>.corrupt-<UTC stamp>``; the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target


def open_database(path: Path, *, agent_id: str, max_bytes: int, now: float) -> Opened:
    """Open (creating, migrating or recovering) the buffer file at ``path``."""
    recovered_from: Path | None = None
    problem: str | None = None
    try:
        if path.exists() and path.stat().st_size == 0:
            raise CorruptStoreError("the file is empty (0 bytes): its contents were lost")
        conn, wal = connect(path, max_bytes)
        try:
            _check(conn)
            _migrate(conn, agent_id, now)
            epoch, next_seq = _identity(conn)
        except BaseException:
            conn.close()
            raise
    except (sqlite3.DatabaseError, CorruptStoreError) as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.DatabaseError) and code not in _CORRUPT_CODES:
            raise
        problem = f"{type(exc).__name__}: {exc}"
        recovered_from = move_aside(path, now)
        conn, wal = connect(path, max_bytes)
        _migrate(conn, agent_id, now)
        epoch, next_seq = _identity(conn)
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return Opened(conn, page_size, wal, epoch, next_seq, recovered_from, problem)
