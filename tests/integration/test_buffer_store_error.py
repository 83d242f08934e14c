"""A put that fails for another reason than a full disk (the file locked by another
connection past the busy timeout; the state folder gone so it cannot be measured): the
buffer tries the block once more, in put order, and counts it as ``store_error`` (in the
budget and in the stream) if that fails too. Real SQLite locks, a real renamed folder."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from agent.buffer.blocks import BlockKind, Catalog, CatalogEntry, decode_events, decode_telemetry
from agent.buffer.buffer import Buffer
from agent.buffer.builder import BlockBuilder
from agent.domain.clock import FakeClock
from agent.domain.samples import Sample
from tests.support.wait import until

T = 1_767_225_600.0
CATALOG = Catalog((CatalogEntry("level", "", "plc"),))


def samples(first: int, n: int) -> list[Sample]:
    return [Sample("level", T + i, float(i)) for i in range(first, first + n)]


def logged(logs: list[MutableMapping[str, Any]], event: str) -> int:
    return sum(1 for e in list(logs) if e["event"] == event)


@contextlib.contextmanager
def locked(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds the write lock (BEGIN EXCLUSIVE) until rolled back."""
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


async def test_a_put_locked_out_past_the_busy_timeout_is_tried_again_in_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "buffer.db"
    clock = FakeClock(T)
    buffer = await Buffer.open(db, agent_id="agent-1", max_bytes=50_000_000, clock=clock)
    builder = BlockBuilder(buffer, CATALOG, flush_interval_s=1.0, max_block_samples=1000,
                           clock=clock)  # fmt: skip
    try:
        with capture_logs() as logs, locked(db) as other:
            builder.add(samples(0, 100))
            await builder.flush()  # accepted: the builder no longer has these samples
            builder.add(samples(100, 50))
            await builder.flush()  # queued behind the first
            await until(lambda: logged(logs, "buffer_put_failed") >= 1, "the first failure")
            other.execute("ROLLBACK")  # the lock goes: the second try gets through
            await buffer.flush()  # raises nothing: nothing is lost
        failed = [e for e in logs if e["event"] == "buffer_put_failed"]
        assert [(e["log_level"], e["attempt"]) for e in failed] == [("warning", 1)]
        assert "locked" in failed[0]["error"]
        assert logged(logs, "buffer_put_recovered") == 1
        assert buffer.budget().dropped_samples == {}
        blocks = await buffer.pending(limit=100, newest_first=False)
        telemetry = [b for b in blocks if b.kind == BlockKind.TELEMETRY]
        stored = [s for b in telemetry for s in decode_telemetry(b.data, CATALOG)]
        assert stored == samples(0, 150)  # both blocks, in put order
        assert [b.seq for b in blocks] == list(range(1, len(blocks) + 1))  # no seq burnt
    finally:
        await buffer.close()


async def test_a_put_that_fails_twice_is_counted_and_announced_as_a_store_error(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    clock = FakeClock(T)
    buffer = await Buffer.open(
        state / "buffer.db", agent_id="agent-1", max_bytes=50_000_000, clock=clock
    )
    try:
        await buffer.put_samples(samples(0, 10), CATALOG)
        await buffer.flush()
        with capture_logs() as logs:
            state.rename(tmp_path / "moved")  # statvfs of the folder fails: OSError
            await buffer.put_samples(samples(10, 70), CATALOG)
            await buffer.flush()  # raises nothing: the block is counted instead
            (tmp_path / "moved").rename(state)
            await buffer.put_samples(samples(80, 5), CATALOG)
            await buffer.flush()
        budget = buffer.budget()
        assert budget.dropped_samples == {"store_error": 70}
        assert budget.dropped_blocks == {"store_error": 1}
        failed = [(e["log_level"], e["attempt"]) for e in logs if e["event"] == "buffer_put_failed"]
        assert failed == [("warning", 1), ("debug", 2)]
        dropped = [e for e in logs if e["event"] == "buffer_samples_dropped"]
        assert [(e["reason"], e["samples"]) for e in dropped] == [("store_error", 70)]
        blocks = await buffer.pending(limit=100, newest_first=False)
        announced = [
            e for b in blocks if b.kind == BlockKind.EVENTS for e in decode_events(b.data)
            if e["kind"] == "buffer_samples_dropped"
        ]  # fmt: skip
        assert [(e["reason"], e["samples"], e["blocks"]) for e in announced] == [
            ("store_error", 70, 1)
        ]
        stored = [
            s for b in blocks if b.kind == BlockKind.TELEMETRY
            for s in decode_telemetry(b.data, CATALOG)
        ]  # fmt: skip
        assert stored == samples(0, 10) + samples(80, 5)
        assert [b.seq for b in blocks] == list(range(1, len(blocks) + 1))  # no seq burnt
    finally:
        await buffer.close()
