"""quality.db: lab results, recorded predictions, residuals, step-downs, offsets, the CSV
watcher's memory and a key/value meta table (issue 14), in STATE_DIR/quality.db.

Owns: `QualityStore` and its one worker thread: every SQLite call runs there, never on the
event loop; `Put` (what storing a result did); `Pruned` (what a pruning pass dropped).
Must not: judge models, compute offsets or join results (agent.quality.monitor, .correction,
.truth do), or log.
Invariants: a write is committed (WAL, synchronous=FULL) before its coroutine returns; a result
is identified by (sample_id, test): the same value again is a duplicate and changes nothing,
another value is a correction that replaces it with revision + 1; predictions are bounded by
`max_predictions` at every `record` (oldest dropped first) and by age at `prune`; pruning a
result drops its residuals; every sqlite3/OS error surfaces as `QualityStoreError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.domain.clock import Clock
from agent.quality.correction import Offset
from agent.quality.monitor import StepDown
from agent.quality.results import Ingested, LabResult, Prediction, Residual, same_value
from agent.quality.store_schema import (
    QUALITY_FILE,
    QualityStoreError,
    connect,
    mapped_errors,
    offset_of,
    prediction_of,
    prediction_row,
    residual_of,
    residual_row,
    result_of,
    result_row,
    step_down_of,
)

__all__ = ["QUALITY_FILE", "Pruned", "Put", "QualityStore", "QualityStoreError"]

T = TypeVar("T")
_DAY = 86400.0


@dataclass(frozen=True)
class Put:
    """What storing one result did: the outcome, the result as stored (its revision), and the
    value it replaced (a correction only)."""

    outcome: Ingested
    result: LabResult
    previous: float | None = None
    pending: bool = False  # stored before, but its join and forwarding were never finished


@dataclass(frozen=True)
class Pruned:
    predictions: int = 0  # older than the retention, or beyond max_predictions
    results: int = 0  # older than the result retention (by sample time)


class QualityStore:
    """quality.db on one worker thread; open with `await QualityStore.open(path, clock=...)`."""

    def __init__(self, path: Path, db: sqlite3.Connection, pool: ThreadPoolExecutor,
                 clock: Clock) -> None:  # fmt: skip
        self.path, self._db, self._pool, self._clock = path, db, pool, clock
        self._kept: dict[str, int] = {}  # loop -> predictions held; read and written only
        self._recount(db)  # on the worker thread, shown through `predictions_kept`

    @classmethod
    async def open(cls, path: Path, *, clock: Clock) -> QualityStore:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quality-db")
        try:
            with mapped_errors(path):
                db = await asyncio.get_running_loop().run_in_executor(pool, connect, path)
                return await asyncio.get_running_loop().run_in_executor(
                    pool, lambda: cls(path, db, pool, clock)
                )
        except BaseException:
            pool.shutdown(wait=False)
            raise

    async def close(self) -> None:
        await self._run(self._db.close)
        self._pool.shutdown(wait=False)

    async def _run(self, call: Callable[[], T]) -> T:
        def guarded() -> T:
            with mapped_errors(self.path):
                return call()

        return await asyncio.get_running_loop().run_in_executor(self._pool, guarded)

    def _tx(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction; a failed body or COMMIT (a full disk) is rolled back, so the next
        BEGIN finds no transaction left open."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            out = body(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._recount(self._db)
            raise
        return out

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._db.execute(sql, args).fetchall())

    # -- results ---------------------------------------------------------------------------

    async def put_result(self, result: LabResult) -> Put:
        def body(db: sqlite3.Connection) -> Put:
            row = db.execute(
                "SELECT * FROM results WHERE sample_id = ? AND test = ?",
                (result.sample_id, result.test),
            ).fetchone()
            key = (result.sample_id, result.test)
            if row is None:
                db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?)", result_row(result))
                db.execute("INSERT OR IGNORE INTO pending VALUES (?,?)", key)
                return Put(Ingested.NEW, result)
            stored = result_of(row)
            if same_value(stored.value, result.value):
                left = db.execute("SELECT 1 FROM pending WHERE sample_id = ? AND test = ?", key)
                return Put(Ingested.DUPLICATE, stored, pending=left.fetchone() is not None)
            new = dataclasses.replace(result, revision=max(stored.revision + 1, result.revision))
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?)", result_row(new)
            )
            db.execute("INSERT OR IGNORE INTO pending VALUES (?,?)", key)
            return Put(Ingested.CORRECTION, new, stored.value)

        return await self._run(lambda: self._tx(body))

    async def settle(self, keys: Sequence[tuple[str, str]]) -> None:
        """The join and forwarding of these results (sample_id, test) are done."""
        if keys:
            await self._run(lambda: self._tx(lambda db: db.executemany(
                "DELETE FROM pending WHERE sample_id = ? AND test = ?", keys)))  # fmt: skip

    async def result(self, sample_id: str, test: str) -> LabResult | None:
        rows = await self._run(
            lambda: self._all(
                "SELECT * FROM results WHERE sample_id = ? AND test = ?", (sample_id, test)
            )
        )
        return result_of(rows[0]) if rows else None

    async def result_count(self) -> int:
        rows = await self._run(lambda: self._all("SELECT COUNT(*) FROM results"))
        return int(rows[0][0])

    # -- predictions -----------------------------------------------------------------------

    async def record(self, prediction: Prediction, max_predictions: int) -> int:
        """Store one prediction; drop the oldest beyond `max_predictions`; how many dropped."""
        row = prediction_row(prediction)

        def body(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO predictions (loop, model, version, role, product, time, "
                       "raw, corrected) VALUES (?,?,?,?,?,?,?,?)", row)  # fmt: skip
            self._kept[prediction.loop] = self._kept.get(prediction.loop, 0) + 1
            return self._trim(db, max_predictions)

        return await self._run(lambda: self._tx(body))

    def predictions_kept(self, loop: str | None = None) -> int:
        """How many predictions quality.db holds for `loop` (None: all loops)."""
        kept = dict(self._kept)  # a copy: the worker thread may be updating it
        return sum(kept.values()) if loop is None else kept.get(loop, 0)

    async def predictions(self, loop: str, start: float, end: float) -> list[Prediction]:
        """The loop's predictions (both roles) with start < time <= end, oldest first."""
        rows = await self._run(
            lambda: self._all(
                "SELECT loop, model, version, role, product, time, raw, corrected FROM predictions "
                "WHERE loop = ? AND role IN ('active', 'challenger') AND time > ? AND time <= ? "
                "ORDER BY time, id",
                (loop, start, end),
            )
        )
        return [prediction_of(r) for r in rows]

    async def latest_prediction(self, loop: str, role: str) -> Prediction | None:
        rows = await self._run(
            lambda: self._all(
                "SELECT loop, model, version, role, product, time, raw, corrected FROM predictions "
                "WHERE loop = ? AND role = ? ORDER BY time DESC, id DESC LIMIT 1",
                (loop, role),
            )
        )
        return prediction_of(rows[0]) if rows else None

    # -- residuals -------------------------------------------------------------------------

    async def replace_residuals(self, sample_id: str, test: str,
                                residuals: Sequence[Residual]) -> None:  # fmt: skip
        """The residuals of one result, replacing whatever was stored for it."""
        rows = [residual_row(r) for r in residuals]

        def body(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM residuals WHERE sample_id = ? AND test = ?", (sample_id, test))
            db.executemany("INSERT INTO residuals VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

        await self._run(lambda: self._tx(body))

    async def residuals_of(self, sample_id: str, test: str) -> list[Residual]:
        """The stored residuals of one result (every loop, model version and role)."""
        query = "SELECT * FROM residuals WHERE sample_id = ? AND test = ?"
        rows = await self._run(lambda: self._all(query, (sample_id, test)))
        return [residual_of(r) for r in rows]

    async def residuals(self, loop: str) -> list[Residual]:
        """Every stored residual of the loop, by sample time."""
        rows = await self._run(
            lambda: self._all(
                "SELECT * FROM residuals WHERE loop = ? ORDER BY sample_time, sample_id", (loop,)
            )
        )
        return [residual_of(r) for r in rows]

    # -- step-downs and offsets ------------------------------------------------------------

    async def put_step_down(self, step: StepDown) -> None:
        row = (step.loop, step.since, step.model, step.version, step.test, step.reason)
        await self._run(
            lambda: self._db.execute("INSERT OR REPLACE INTO step_downs VALUES (?,?,?,?,?,?)", row)
        )

    async def clear_step_down(self, loop: str) -> None:
        await self._run(lambda: self._db.execute("DELETE FROM step_downs WHERE loop = ?", (loop,)))

    async def step_downs(self) -> dict[str, StepDown]:
        rows = await self._run(lambda: self._all("SELECT * FROM step_downs"))
        return {str(r[0]): step_down_of(r) for r in rows}

    async def put_offset(self, loop: str, output: str, offset: Offset | None) -> None:
        """Store the offset in force (None: no offset any more)."""
        if offset is None:
            sql, args = "DELETE FROM offsets WHERE loop = ? AND output = ?", (loop, output)
        else:
            sql = "INSERT OR REPLACE INTO offsets VALUES (?,?,?,?,?)"
            args = (loop, output, offset.value, offset.source, offset.results)  # type: ignore[assignment]
        await self._run(lambda: self._db.execute(sql, args))

    async def offsets(self) -> dict[str, dict[str, Offset]]:
        rows = await self._run(
            lambda: self._all("SELECT loop, output, value, source, results FROM offsets")
        )
        found: dict[str, dict[str, Offset]] = {}
        for row in rows:
            found.setdefault(str(row[0]), {})[str(row[1])] = offset_of(row[1:])
        return found

    # -- the CSV watcher's memory and the meta table ----------------------------------------

    async def seen_file(self, name: str, size: int, mtime_ns: int, sha256: str) -> bool:
        """Whether a file of this name and content (sha256 and size) was read before; its
        mtime alone does not make it new (a touched file is not read twice)."""
        rows = await self._run(
            lambda: self._all(
                "SELECT 1 FROM csv_files WHERE name = ? AND sha256 = ? AND size = ?",
                (name, sha256, size),
            )
        )
        return bool(rows)

    async def remember_file(  # noqa: PLR0917 (the CSV watcher's call, as issue 14 gives it)
        self, name: str, size: int, mtime_ns: int, sha256: str, rows: int, problems: int
    ) -> None:
        row = (name, size, mtime_ns, sha256, self._clock.now(), rows, problems)
        await self._run(
            lambda: self._db.execute("INSERT OR REPLACE INTO csv_files VALUES (?,?,?,?,?,?,?)", row)
        )

    async def get_meta(self, key: str) -> str | None:
        rows = await self._run(lambda: self._all("SELECT value FROM meta WHERE key = ?", (key,)))
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(
            lambda: self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        )

    # -- pruning ---------------------------------------------------------------------------

    async def prune(self, *, prediction_retention_days: float, max_predictions: int,
                    result_retention_days: float) -> Pruned:  # fmt: skip
        """Drop predictions older than their retention and beyond `max_predictions` (oldest
        first), and results (with their residuals) whose sample time is older than theirs."""
        now = self._clock.now()
        p_cut, r_cut = now - prediction_retention_days * _DAY, now - result_retention_days * _DAY

        def body(db: sqlite3.Connection) -> Pruned:
            old = self._dropped(
                db.execute("DELETE FROM predictions WHERE time < ? RETURNING loop", (p_cut,))
            )
            db.execute("DELETE FROM residuals WHERE sample_time < ?", (r_cut,))
            results = db.execute("DELETE FROM results WHERE sample_time < ?", (r_cut,)).rowcount
            return Pruned(predictions=old + self._trim(db, max_predictions), results=results)

        return await self._run(lambda: self._tx(body))

    def _recount(self, db: sqlite3.Connection) -> None:
        rows = db.execute("SELECT loop, COUNT(*) FROM predictions GROUP BY loop").fetchall()
        self._kept = {str(loop): int(n) for loop, n in rows}

    def _dropped(self, cursor: sqlite3.Cursor) -> int:
        dropped = 0
        for (loop,) in cursor.fetchall():
            self._kept[loop] = self._kept.get(loop, 0) - 1
            dropped += 1
        return dropped

    def _trim(self, db: sqlite3.Connection, max_predictions: int) -> int:
        excess = sum(self._kept.values()) - max_predictions
        if excess <= 0:
            return 0
        return self._dropped(
            db.execute(
                "DELETE FROM predictions WHERE id IN (SELECT id FROM predictions ORDER BY time, id "
                "LIMIT ?) RETURNING loop",
                (excess,),
            )
        )
