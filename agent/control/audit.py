"""The append-only, hash-chained audit log (plant-model 3 G), in STATE_DIR/audit.db.

Owns: the audit database (one table of records, one of metadata), appending a record with
the next seq and the previous record's hash, forwarding every record to the buffer as an
event (so it reaches the cloud, where events are evicted last), reading a loop's recent
writes back (the guard's memory survives restarts), pruning by retention while keeping
the chain verifiable (the last pruned hash becomes the anchor), and `verify_file` for
`edge-agent audit verify`.
Must not: decide anything; records are built by their authors (control loops, the model
manager, remote support). The chain's rules live in agent.control.audit_chain.
Invariants: a record is committed (synchronous=FULL) before `record` returns, on a worker
thread, never on the event loop (`record_whole`: also when its caller is cancelled); seq
never repeats; the database is never rewritten, only appended to and pruned from its
oldest end.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.control.audit_chain import GENESIS, ChainReport, canonical, record_hash, verify_chain
from agent.domain.clock import Clock
from agent.domain.errors import EdgeAgentError
from agent.domain.logger import get_logger

__all__ = ["AUDIT_FILE", "AuditLog", "verify_file"]

AUDIT_FILE = "audit.db"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time REAL NOT NULL, "
    "kind TEXT NOT NULL, loop TEXT, prev TEXT NOT NULL, hash TEXT NOT NULL, "
    "body TEXT NOT NULL, move_from REAL, move_to REAL)",
    "CREATE INDEX IF NOT EXISTS audit_moves ON audit(loop, time) WHERE move_to IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

log = get_logger(__name__)

EventSink = Callable[[Sequence[Mapping[str, Any]]], Awaitable[int]]


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db


class AuditLog:
    """The audit chain of one agent; `record` appends, `moves` reads a loop's writes back."""

    def __init__(self, path: Path, *, agent_id: str, clock: Clock) -> None:
        self.path = path
        self._agent_id, self._clock = agent_id, clock
        self._db = _connect(path)
        self._lock = threading.Lock()
        self._alock = asyncio.Lock()
        row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        anchor = self._meta("anchor")
        self._seq: int = row[0] if row else int(self._meta("anchor_seq") or 0)
        self._last: str = row[1] if row else (anchor or GENESIS)
        self.sink: EventSink | None = None
        self.records = 0

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM audit_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    async def record(
        self,
        kind: str,
        body: Mapping[str, Any],
        *,
        loop: str | None = None,
        move: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Append one record; `move` = (from, to) of a setpoint write the PLC accepted."""
        async with self._alock:  # one writer at a time keeps seq and prev in order
            seq = self._seq + 1
            full = {"time": self._clock.now(), "kind": kind, "loop": loop,
                    "agent_id": self._agent_id, **body}  # fmt: skip
            text = canonical(full).decode("utf-8")  # raises on NaN: callers pass strict JSON
            digest = record_hash(self._last, seq, full)
            row = (seq, full["time"], kind, loop, self._last, digest, text,
                   *(move if move is not None else (None, None)))  # fmt: skip
            await asyncio.to_thread(self._insert, row)
            self._seq, self._last = seq, digest
            self.records += 1
        event = {"type": "audit", "seq": seq, "prev": row[4], "hash": digest, **full}
        if self.sink is not None:
            try:
                await self.sink([event])
            except EdgeAgentError as exc:  # a store error: the local chain is the record of truth
                log.error("audit_forward_failed", seq=seq, error=str(exc))
        return event

    async def record_whole(
        self,
        kind: str,
        body: Mapping[str, Any],
        *,
        loop: str | None = None,
        move: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """`record`, which a cancellation does not cut short: a cancel of the caller waits
        until the record is committed (and forwarded), then propagates."""
        task = asyncio.ensure_future(self.record(kind, body, loop=loop, move=move))
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return task.result()

    def _insert(self, row: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    async def moves(self, loop: str, since: float) -> list[tuple[float, float, float]]:
        """The loop's accepted writes at or after `since`: (time, from, to), oldest first."""

        def query() -> list[tuple[float, float, float]]:
            with self._lock:
                rows = self._db.execute(
                    "SELECT time, move_from, move_to FROM audit WHERE loop = ? AND "
                    "move_to IS NOT NULL AND time >= ? ORDER BY seq",
                    (loop, since),
                ).fetchall()
            return [(float(t), float(a), float(b)) for t, a, b in rows]

        return await asyncio.to_thread(query)

    async def last(self, kind: str, loop: str) -> dict[str, Any] | None:
        """The body of the loop's newest record of `kind`, or None."""

        def query() -> dict[str, Any] | None:
            with self._lock:
                row = self._db.execute(
                    "SELECT body FROM audit WHERE kind = ? AND loop = ? ORDER BY seq DESC LIMIT 1",
                    (kind, loop),
                ).fetchone()
            return None if row is None else dict(json.loads(row[0]))

        return await asyncio.to_thread(query)

    async def prune(self, retention_days: float, *, keep_loops: Sequence[str] = ()) -> int:
        """Drop records older than the retention; the last dropped hash becomes the anchor.

        The last cycle record of every loop in `keep_loops` is kept whatever its age (and so
        everything after it: the chain is pruned from its start only): a restart reads a
        loop's safety stop and baseline from it, even when the agent was down for longer
        than the retention.
        """
        cutoff = self._clock.now() - retention_days * 86400.0
        names = list(keep_loops)

        def run() -> int:
            with self._lock:
                below = self._seq
                if names:
                    (first_kept,) = self._db.execute(
                        "SELECT MIN(last) FROM (SELECT MAX(seq) AS last FROM audit "
                        "WHERE kind = 'cycle' AND loop IN (SELECT value FROM json_each(?)) "
                        "GROUP BY loop)",
                        (json.dumps(names),),
                    ).fetchone()
                    below = min(below, first_kept) if first_kept is not None else below
                row = self._db.execute(
                    "SELECT seq, hash FROM audit WHERE time < ? AND seq < ? ORDER BY seq DESC "
                    "LIMIT 1",
                    (cutoff, below),
                ).fetchone()
                if row is None:
                    return 0
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT OR REPLACE INTO audit_meta VALUES ('anchor', ?)", (row[1],)
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO audit_meta VALUES ('anchor_seq', ?)", (str(row[0]),)
                )
                count = self._db.execute("DELETE FROM audit WHERE seq <= ?", (row[0],)).rowcount
                self._db.execute("COMMIT")
                return int(count)

        return await asyncio.to_thread(run)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def verify_file(path: Path) -> ChainReport:
    """Verify the chain stored in an audit database, from its anchor to its last record."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM audit_meta WHERE key = 'anchor'").fetchone()
        anchor = GENESIS if row is None else str(row[0])
        rows = db.execute("SELECT seq, prev, hash, body FROM audit ORDER BY seq")

        def records() -> Any:
            for seq, prev, digest, body in rows:
                yield int(seq), str(prev), str(digest), json.loads(body)

        return verify_chain(records(), anchor)
    finally:
        db.close()
