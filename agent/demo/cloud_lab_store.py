"""The reference receiver's lab results: what a LIMS (or a person) posted for an agent, kept
in order so the agent can pull them from where it left off.

Owns: one SQLite file (``lab.db`` next to the blocks' ``cloud.db``) with one row per posted
result (the agent it is for, when it was received, the result as JSON) under a cursor.
Must not: know HTTP or validate a result (``agent.demo.cloud_lab`` does both); judge a result
against an earlier one (the agent's store tells duplicates and corrections apart).

Invariants: cursors only ever grow (AUTOINCREMENT: a cursor is never reused, even after rows
are deleted); a batch is committed (WAL, synchronous=FULL) before ``put`` returns, all of it or
none; ``after(agent, cursor)`` returns that agent's results with a larger cursor, oldest first.
One connection behind one lock: every method is thread-safe.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LabStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lab_results (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL,
    received_at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS lab_results_agent ON lab_results (agent_id, cursor);
"""


class LabStore:
    """See the module docstring."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self._now = path, now
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def now(self) -> float:
        return self._now()

    def put(self, agent_id: str, results: Sequence[dict[str, Any]]) -> int:
        """Store a batch in one transaction; the cursor of its last result (0: empty batch)."""
        received = self._now()
        last = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for result in results:
                    cursor = self._db.execute(
                        "INSERT INTO lab_results (agent_id, received_at, body) VALUES (?,?,?)",
                        (agent_id, received, json.dumps(result, sort_keys=True)),
                    ).lastrowid
                    last = int(cursor or 0)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return last

    def after(self, agent_id: str, cursor: int, *, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """(cursor, result) of the agent's results past ``cursor``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT cursor, body FROM lab_results WHERE agent_id = ? AND cursor > ?"
                " ORDER BY cursor LIMIT ?",
                (agent_id, cursor, limit),
            ).fetchall()
        return [(int(c), json.loads(body)) for c, body in rows]
