"""The layout of quality.db and the conversions between its rows and the truth loop's types.

Owns: `QUALITY_FILE`, the schema (tables results, predictions, residuals, step_downs, offsets,
csv_files, meta), `connect` (WAL, synchronous=FULL, schema created), `QualityStoreError` and
`mapped_errors` (sqlite3 and OS errors mapped once, here), and the row <-> value conversions.
Must not: be used from the event loop (agent.quality.store runs every call on its one worker
thread), decide anything about results or models.
Invariants: results are identified by (sample_id, test); residuals are a derived cache,
identified by (loop, model, version, role, test, sample_id) and rewritten whole for a
(sample_id, test) whenever that result is stored or corrected, so they outlive the predictions
they were computed from (a 28-day result's predictions may be pruned later, its residual is
kept until the result itself is pruned); step_downs has one row per stepped-down loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.domain.errors import RetryableError
from agent.quality.correction import Offset
from agent.quality.monitor import StepDown
from agent.quality.results import LabResult, Prediction, Residual

__all__ = [
    "QUALITY_FILE",
    "QualityStoreError",
    "connect",
    "mapped_errors",
    "offset_of",
    "prediction_of",
    "prediction_row",
    "residual_of",
    "residual_row",
    "result_of",
    "result_row",
    "step_down_of",
]

QUALITY_FILE = "quality.db"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS results (sample_id TEXT NOT NULL, test TEXT NOT NULL, "
    "sample_time REAL NOT NULL, window_s REAL NOT NULL, product TEXT NOT NULL, "
    "value REAL NOT NULL, unit TEXT NOT NULL, entry_time REAL NOT NULL, source TEXT NOT NULL, "
    "revision INTEGER NOT NULL, PRIMARY KEY (sample_id, test))",
    "CREATE INDEX IF NOT EXISTS results_time ON results(sample_time)",
    # Results stored whose join and forwarding are not done yet (a crash between the two): an
    # ingest that finds one again as a duplicate finishes them.
    "CREATE TABLE IF NOT EXISTS pending (sample_id TEXT NOT NULL, test TEXT NOT NULL, "
    "PRIMARY KEY (sample_id, test))",
    "CREATE TABLE IF NOT EXISTS predictions (id INTEGER PRIMARY KEY, loop TEXT NOT NULL, "
    "model TEXT NOT NULL, version TEXT NOT NULL, role TEXT NOT NULL, product TEXT NOT NULL, "
    "time REAL NOT NULL, raw TEXT NOT NULL, corrected TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS predictions_window ON predictions(loop, role, time)",
    "CREATE INDEX IF NOT EXISTS predictions_time ON predictions(time)",
    "CREATE TABLE IF NOT EXISTS residuals (loop TEXT NOT NULL, model TEXT NOT NULL, "
    "version TEXT NOT NULL, role TEXT NOT NULL, product TEXT NOT NULL, test TEXT NOT NULL, "
    "sample_id TEXT NOT NULL, sample_time REAL NOT NULL, value REAL NOT NULL, "
    "raw REAL NOT NULL, used REAL NOT NULL, predictions INTEGER NOT NULL, "
    "PRIMARY KEY (loop, model, version, role, test, sample_id))",
    "CREATE INDEX IF NOT EXISTS residuals_result ON residuals(sample_id, test)",
    "CREATE TABLE IF NOT EXISTS step_downs (loop TEXT PRIMARY KEY, since REAL NOT NULL, "
    "model TEXT NOT NULL, version TEXT NOT NULL, test TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS offsets (loop TEXT NOT NULL, output TEXT NOT NULL, "
    "value REAL NOT NULL, source TEXT NOT NULL, results INTEGER NOT NULL, "
    "PRIMARY KEY (loop, output))",
    "CREATE TABLE IF NOT EXISTS csv_files (name TEXT NOT NULL, size INTEGER NOT NULL, "
    "mtime INTEGER NOT NULL, sha256 TEXT NOT NULL, read_at REAL NOT NULL, "
    "rows INTEGER NOT NULL, problems INTEGER NOT NULL, PRIMARY KEY (name, sha256))",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class QualityStoreError(RetryableError):
    """quality.db could not be read or written (locked, disk full, I/O error, corrupt)."""


@contextmanager
def mapped_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise QualityStoreError(f"quality database {path}: {exc}") from exc
    except OSError as exc:
        raise QualityStoreError(f"quality database {path}: {exc}") from exc


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for statement in _SCHEMA:
        db.execute(statement)
    return db


def result_row(r: LabResult) -> tuple[Any, ...]:
    return (r.sample_id, r.test, r.sample_time, r.window_s, r.product, r.value, r.unit,
            r.entry_time, r.source, r.revision)  # fmt: skip


def result_of(row: tuple[Any, ...]) -> LabResult:
    sample_id, test, sample_time, window_s, product, value, unit, entry, source, rev = row
    return LabResult(
        sample_id=str(sample_id), sample_time=float(sample_time), window_s=float(window_s),
        product=str(product), test=str(test), value=float(value), unit=str(unit),
        entry_time=float(entry), source=str(source), revision=int(rev),
    )  # fmt: skip


def prediction_row(p: Prediction) -> tuple[Any, ...]:
    raw = json.dumps({k: float(v) for k, v in p.raw.items()}, sort_keys=True)
    corrected = json.dumps({k: float(v) for k, v in p.corrected.items()}, sort_keys=True)
    return (p.loop, p.model, p.version, p.role, p.product, p.time, raw, corrected)


def prediction_of(row: tuple[Any, ...]) -> Prediction:
    loop, model, version, role, product, time, raw, corrected = row
    return Prediction(
        loop=str(loop), model=str(model), version=str(version), role=str(role),
        product=str(product), time=float(time), raw=json.loads(raw),
        corrected=json.loads(corrected),
    )  # fmt: skip


def residual_row(r: Residual) -> tuple[Any, ...]:
    return (r.loop, r.model, r.version, r.role, r.product, r.test, r.sample_id, r.sample_time,
            r.value, r.raw, r.used, r.predictions)  # fmt: skip


def residual_of(row: tuple[Any, ...]) -> Residual:
    loop, model, version, role, product, test, sid, st, value, raw, used, n = row
    return Residual(
        loop=str(loop), model=str(model), version=str(version), role=str(role),
        product=str(product), test=str(test), sample_id=str(sid), sample_time=float(st),
        value=float(value), raw=float(raw), used=float(used), predictions=int(n),
    )  # fmt: skip


def step_down_of(row: tuple[Any, ...]) -> StepDown:
    loop, since, model, version, test, reason = row
    return StepDown(loop=str(loop), since=float(since), model=str(model),
                    version=str(version), test=str(test), reason=str(reason))  # fmt: skip


def offset_of(row: tuple[Any, ...]) -> Offset:
    output, value, source, results = row
    return Offset(output=str(output), value=float(value), source=str(source),
                  results=int(results))  # fmt: skip
