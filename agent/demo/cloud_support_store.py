"""The reference receiver's remote-support store: status reports, desired state, results.

Owns: one SQLite file (``support.db`` next to the blocks' ``cloud.db``) holding each agent's
status reports (all of them, the latest is the last), the desired-state document support
staff set per agent (stored as given: the agent, not the receiver, decides what it accepts),
the diagnostics results and the model delivery reports the agents post back.

Must not: know HTTP (``agent.demo.cloud_support`` does) or validate a desired-state document
beyond "a JSON object" (a test must be able to offer a forbidden request).

Invariants: every write is committed (WAL, synchronous=FULL) before the method returns; one
connection behind one lock, so every method is thread-safe; ``desired`` leaves out the
diagnostics an agent has already answered (same id and kind), so a restarted agent does not
serve them again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SupportStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, received_at REAL NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS desired (
    agent_id TEXT PRIMARY KEY, updated_at REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS diagnostics (
    agent_id TEXT NOT NULL, request_id TEXT NOT NULL, received_at REAL NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (agent_id, request_id));
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
    received_at REAL NOT NULL, body TEXT NOT NULL);
"""
_EMPTY: dict[str, Any] = {"model": None, "diagnostics": []}


class SupportStore:
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

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- from the agents ---------------------------------------------------------------------

    def put_status(self, agent_id: str, report: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO status (agent_id, received_at, body) VALUES (?,?,?)",
            (agent_id, self._now(), json.dumps(report)),
        )

    def put_result(self, agent_id: str, request_id: str, result: dict[str, Any]) -> None:
        """A diagnostics result (or refusal); a repeated post replaces the earlier one."""
        self._write(
            "INSERT OR REPLACE INTO diagnostics (agent_id, request_id, received_at, body)"
            " VALUES (?,?,?,?)",
            (agent_id, request_id, self._now(), json.dumps(result)),
        )

    def put_delivery(self, agent_id: str, model: str, version: str, body: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO deliveries (agent_id, model, version, received_at, body)"
            " VALUES (?,?,?,?,?)",
            (agent_id, model, version, self._now(), json.dumps(body)),
        )

    def desired(self, agent_id: str) -> tuple[dict[str, Any], str]:
        """The document still to do (answered diagnostics left out) and its ETag."""
        rows = self._rows("SELECT body FROM desired WHERE agent_id=?", (agent_id,))
        document: dict[str, Any] = json.loads(rows[0][0]) if rows else dict(_EMPTY)
        answered = {
            (r[0], json.loads(r[1]).get("kind"))
            for r in self._rows(
                "SELECT request_id, body FROM diagnostics WHERE agent_id=?", (agent_id,)
            )
        }
        items = document.get("diagnostics")
        if isinstance(items, list):
            document["diagnostics"] = [item for item in items if _key(item) not in answered]
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return document, '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'

    # -- from support staff ------------------------------------------------------------------

    def set_desired(self, agent_id: str, document: dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO desired (agent_id, updated_at, body) VALUES (?,?,?)",
            (agent_id, self._now(), json.dumps(document)),
        )

    def status(self, agent_id: str, *, limit: int = 1) -> list[dict[str, Any]]:
        """The newest ``limit`` reports, newest first, with ``received_at``."""
        rows = self._rows(
            "SELECT received_at, body FROM status WHERE agent_id=? ORDER BY id DESC LIMIT ?",
            (agent_id, limit),
        )
        return [{"received_at": r[0], "report": json.loads(r[1])} for r in rows]

    def results(self, agent_id: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT request_id, received_at, body FROM diagnostics WHERE agent_id=?"
            " ORDER BY received_at, request_id",
            (agent_id,),
        )
        return [{"id": r[0], "received_at": r[1], **json.loads(r[2])} for r in rows]

    def deliveries(self, agent_id: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT received_at, body FROM deliveries WHERE agent_id=? ORDER BY id", (agent_id,)
        )
        return [{"received_at": r[0], **json.loads(r[1])} for r in rows]


def _key(item: object) -> tuple[str, str | None] | None:
    """(id, kind) of a diagnostics item when both are text (or kind is absent)."""
    if not isinstance(item, dict):
        return None
    ident, kind = item.get("id"), item.get("kind")
    if isinstance(ident, str) and (kind is None or isinstance(kind, str)):
        return (ident, kind)
    return None
