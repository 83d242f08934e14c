"""The SQLite buffer on real files: order, identity, the byte cap, memory, corruption, the loop."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import tracemalloc
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.buffer.blocks import (
    BlockKind,
    Catalog,
    CatalogEntry,
    decode_catalog,
    decode_events,
    decode_telemetry,
    read_header,
)
from agent.buffer.buffer import Buffer, StoredBlock
from agent.domain.clock import FakeClock, SystemClock
from agent.domain.samples import Sample

T = 1_767_225_600.0
CATALOG = Catalog(tuple(CatalogEntry(f"t{i}", "", "plc") for i in range(10)))
NOISE = Catalog((CatalogEntry("noise", "", "plc"),))


def batch(n: int = 10, t: float = T) -> list[Sample]:
    return [Sample(f"t{i % 10}", t + i / 10, float(i)) for i in range(n)]


def noise(n: int, rng: random.Random) -> list[Sample]:
    """Lossless random doubles: about 8 bytes a sample, whatever the compressor does."""
    return [Sample("noise", T + i, rng.random()) for i in range(n)]


async def open_buffer(
    path: Path, clock: FakeClock | None = None, max_bytes: int = 50_000_000
) -> Buffer:
    return await Buffer.open(
        path, agent_id="agent-1", max_bytes=max_bytes, clock=clock or FakeClock(now=T)
    )


def seqs(blocks: list[StoredBlock]) -> list[int]:
    return [b.seq for b in blocks]


async def test_pending_order_catalog_first_and_quarantine(tmp_path: Path) -> None:
    buffer = await open_buffer(tmp_path / "state.db")
    try:
        assert await buffer.put_samples(batch(), CATALOG) == 2  # 1 is the catalog block
        assert await buffer.put_samples(batch(), CATALOG) == 3
        assert await buffer.put_events([{"event": "suggested", "time": T}]) == 4
        assert await buffer.put_samples(batch(5), CATALOG) == 5
        assert seqs(await buffer.pending(limit=10, newest_first=True)) == [1, 5, 4, 3, 2]
        assert seqs(await buffer.pending(limit=10, newest_first=False)) == [1, 2, 3, 4, 5]
        assert seqs(await buffer.pending(limit=3, newest_first=True)) == [1, 5, 4]
        telemetry = {BlockKind.TELEMETRY}
        assert seqs(await buffer.pending(limit=9, newest_first=True, kinds=telemetry)) == [5, 3, 2]
        assert seqs(await buffer.pending(limit=9, newest_first=True, kinds={BlockKind.EVENTS})) == [
            4
        ]

        blocks = {b.seq: b for b in await buffer.pending(limit=10, newest_first=False)}
        assert decode_catalog(blocks[1].data) == CATALOG
        assert decode_telemetry(blocks[5].data, CATALOG) == batch(5)
        assert decode_events(blocks[4].data) == [{"event": "suggested", "time": T}]
        assert blocks[5].kind is BlockKind.TELEMETRY and blocks[5].size == len(blocks[5].data)
        assert read_header(blocks[2].data).epoch == buffer.epoch

        budget = buffer.budget()
        assert (budget.blocks_pending, budget.samples_pending, budget.quarantined) == (5, 25, 0)
        await buffer.quarantine(3, "HTTP 400: bad block")
        await buffer.quarantine(3, "again")  # already quarantined: ignored
        assert 3 not in seqs(await buffer.pending(limit=10, newest_first=True))
        budget = buffer.budget()
        assert (budget.blocks_pending, budget.samples_pending, budget.quarantined) == (4, 15, 1)

        await buffer.ack([1, 2, 99])
        assert seqs(await buffer.pending(limit=10, newest_first=False)) == [4, 5]
        assert buffer.budget().samples_pending == 5

        other = Catalog((*CATALOG.entries, CatalogEntry("new", "", "plc")))
        assert await buffer.put_samples([Sample("new", T, 1)], other) == 7  # catalog block is 6
        assert seqs(await buffer.pending(limit=2, newest_first=True)) == [6, 7]
    finally:
        await buffer.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as db:
        reason = db.execute("SELECT quarantine_reason FROM blocks WHERE seq = 3").fetchone()
    assert reason == ("HTTP 400: bad block",)


async def test_seq_never_repeats_across_restarts_acks_and_an_emptied_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    used: list[int] = []
    epochs = set()
    for round_ in range(4):
        buffer = await open_buffer(path)
        epochs.add(buffer.epoch)
        used += [await buffer.put_samples(batch(), CATALOG) for _ in range(3)]
        used += [await buffer.put_events([{"round": round_}])]
        if round_ == 1:
            await buffer.ack(seqs(await buffer.pending(limit=100, newest_first=True)))
            assert buffer.budget().blocks_pending == 0
        await buffer.close()
        if round_ == 2:
            with contextlib.closing(sqlite3.connect(path)) as db, db:
                db.execute("DELETE FROM blocks")
    assert len(epochs) == 1
    assert used == sorted(used) and len(set(used)) == len(used)
    buffer = await open_buffer(path)
    try:
        catalog_seq_after_restart = used[-1] + 1
        assert await buffer.put_samples(batch(), CATALOG) == catalog_seq_after_restart + 1
    finally:
        await buffer.close()


def announced(blocks: list[StoredBlock], reason: str | None = None) -> set[int]:
    """The seqs the buffer's announcements say were evicted (for ``reason``, or any)."""
    out: set[int] = set()
    for block in blocks:
        for event in decode_events(block.data) if block.kind == BlockKind.EVENTS else []:
            if event.get("kind") == "buffer_blocks_evicted" and reason in (None, event["reason"]):
                out |= {s for first, last in event["seqs"] for s in range(first, last + 1)}
    return out


def put_order(blocks: list[StoredBlock], key: str) -> list[int]:
    """``key`` of the (non-announcement) events blocks, in seq order."""
    rows = [decode_events(b.data)[0] for b in sorted(blocks, key=lambda b: b.seq)]
    return [row[key] for row in rows if key in row]


async def test_the_byte_cap_evicts_oldest_telemetry_first_and_events_last(tmp_path: Path) -> None:
    path, cap = tmp_path / "state.db", 1_000_000
    rng = random.Random(1)
    buffer = await open_buffer(path, max_bytes=cap)
    try:
        for i in range(150):  # ~20 kB each: three times the cap
            await buffer.put_samples(noise(2500, rng), NOISE)
            if i % 10 == 0:
                await buffer.put_events([{"i": i, "audit": "x" * 200}])
        await buffer.flush()
        budget = buffer.budget()
        assert budget.evictions["telemetry"] > 50
        assert "events" not in budget.evictions
        assert budget.bytes_used <= cap
        kept = seqs(
            await buffer.pending(limit=1000, newest_first=False, kinds={BlockKind.TELEMETRY})
        )
        everything = await buffer.pending(limit=1000, newest_first=False)
        evicted = announced(everything, "telemetry")
        assert max(evicted) < min(kept)  # the newest survive, the oldest went first
        assert len(kept) + len(evicted) == 150
        assert len(evicted) == budget.evictions["telemetry"]
        assert budget.samples_pending == 2500 * len(kept)
        kept_events = await buffer.pending(limit=1000, newest_first=False, kinds={BlockKind.EVENTS})
        assert put_order(kept_events, "i") == list(range(0, 150, 10))
        assert seqs(await buffer.pending(limit=1, newest_first=False)) == [1]  # the catalog
        # every seq handed out is either still here or announced as evicted: no gap
        assert set(seqs(everything)) | evicted == set(range(1, max(seqs(everything)) + 1))

        for i in range(150):  # now only events: telemetry goes entirely, then the oldest events
            await buffer.put_events([{"j": i, "blob": rng.randbytes(9000).hex()}])
        await buffer.flush()
        budget = buffer.budget()
        assert budget.evictions["events"] > 0
        assert await buffer.pending(limit=10, newest_first=False, kinds={BlockKind.TELEMETRY}) == []
        kept_events = await buffer.pending(limit=1000, newest_first=False, kinds={BlockKind.EVENTS})
        order = put_order(kept_events, "j")
        assert order == list(range(150 - len(order), 150))
        assert seqs(await buffer.pending(limit=1, newest_first=False)) == [1]  # still there
        # announcements evicted in turn handed on what they said: still no unnamed gap
        everything = await buffer.pending(limit=1000, newest_first=False)
        lost = announced(everything)
        assert len(lost) == sum(budget.evictions.values()) and not lost & set(seqs(everything))
        assert set(seqs(everything)) | lost == set(range(1, max(seqs(everything)) + 1))
        files = [path, path.with_name("state.db-wal"), path.with_name("state.db-reserve")]
        assert sum(f.stat().st_size for f in files if f.exists()) <= cap
    finally:
        await buffer.close()
    assert path.stat().st_size <= cap
    with contextlib.closing(sqlite3.connect(path)) as db:
        counted = dict(db.execute("SELECT reason, blocks FROM evictions").fetchall())
    assert counted == dict(budget.evictions)


async def test_memory_stays_flat_over_many_blocks(tmp_path: Path) -> None:
    buffer = await open_buffer(tmp_path / "state.db")
    try:
        tracemalloc.start()
        for _ in range(200):  # warm up caches and the executor
            await buffer.put_samples(batch(50), CATALOG)
        await buffer.flush()
        before, _ = tracemalloc.get_traced_memory()
        for i in range(1500):
            await buffer.put_samples(batch(50), CATALOG)
            if i % 100 == 0:
                await buffer.ack(seqs(await buffer.pending(limit=20, newest_first=False)))
        await buffer.flush()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await buffer.close()
    assert after - before < 500_000, f"grew by {after - before} bytes over 1500 blocks"


async def test_a_garbage_file_is_moved_aside_and_a_fresh_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database " * 500)
    with capture_logs() as logs:
        buffer = await open_buffer(path)
    try:
        assert buffer.recovered_from is not None
        assert buffer.recovered_from.name.startswith("state.db.corrupt-")
        assert buffer.recovered_from.read_bytes().startswith(b"this is not a database")
        warned = [e for e in logs if e["event"] == "buffer_corrupt_moved_aside"]
        assert warned and warned[0]["log_level"] == "warning"
        (block,) = await buffer.pending(limit=10, newest_first=True)
        (event,) = decode_events(block.data)
        assert event["kind"] == "buffer_corrupt_moved_aside"
        assert event["moved_to"] == str(buffer.recovered_from)
        assert await buffer.put_samples(batch(), CATALOG) == 3
    finally:
        await buffer.close()


async def test_a_truncated_file_is_moved_aside_with_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    rng = random.Random(2)
    buffer = await open_buffer(path)
    for _ in range(40):
        await buffer.put_samples(noise(1000, rng), NOISE)
    old_epoch = buffer.epoch
    await buffer.close()
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size // 2)
    buffer = await open_buffer(path)
    try:
        assert buffer.recovered_from is not None and buffer.recovered_from.exists()
        assert buffer.recovered_from.stat().st_size == size // 2
        assert buffer.epoch != old_epoch
        assert buffer.budget().blocks_pending == 1  # the recovery event only
    finally:
        await buffer.close()
    reopened = await open_buffer(path)  # the fresh store is intact: no second recovery
    try:
        assert reopened.recovered_from is None and reopened.epoch == buffer.epoch
    finally:
        await reopened.close()


async def test_another_programs_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    buffer = await open_buffer(path)
    try:
        assert buffer.recovered_from is not None
    finally:
        await buffer.close()
    with contextlib.closing(sqlite3.connect(buffer.recovered_from)) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]


async def test_the_budget_knows_age_rate_and_hours_left(tmp_path: Path) -> None:
    clock = FakeClock(now=T)
    buffer = await open_buffer(tmp_path / "state.db", clock=clock, max_bytes=10_000_000)
    try:
        assert buffer.budget().oldest_unsent_age_s is None
        assert buffer.budget().hours_left is None
        for _ in range(30):
            await buffer.put_samples(batch(100), CATALOG)
            await clock.advance(1.0)
        await buffer.flush()
        budget = buffer.budget()
        assert budget.oldest_unsent_age_s == 30.0
        assert budget.bytes_per_hour > 0
        assert budget.hours_left is not None
        assert budget.hours_left * budget.bytes_per_hour <= budget.max_bytes - budget.bytes_used
        assert budget.max_bytes == 10_000_000
        await buffer.ack([1, 2, 3])  # the catalog and the first two telemetry blocks
        assert buffer.budget().oldest_unsent_age_s == 28.0
    finally:
        await buffer.close()


async def test_the_event_loop_keeps_running_while_the_writer_commits(tmp_path: Path) -> None:
    """A writer stuck (another process holds the database lock, like a stalled
    fsync would) must not stall the loop: puts return at once and a ticker keeps ticking."""
    path = tmp_path / "state.db"
    buffer = await Buffer.open(path, agent_id="a", max_bytes=500_000_000, clock=SystemClock())
    ticks = 0
    ticked_100 = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.002)
            ticks += 1
            if ticks == 100:
                ticked_100.set()

    task = asyncio.create_task(ticker())
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        rng = random.Random(3)
        for _ in range(100):
            await buffer.put_samples(noise(1000, rng), NOISE)  # synchronous=FULL: an fsync each
        await buffer.flush()
        blocker.execute("BEGIN EXCLUSIVE")  # the writer now waits for the lock
        last_seq = 0
        for _ in range(20):  # returns although the writer cannot commit (or this test hangs)
            last_seq = await buffer.put_samples(noise(1000, rng), NOISE)
        ticks = 0
        ticked_100.clear()
        await ticked_100.wait()  # the loop keeps ticking while the writer is stuck
        assert buffer.budget().blocks_pending == 101  # none of the 20 committed: it waits
        blocker.execute("ROLLBACK")
        await buffer.flush()
        assert buffer.budget().blocks_pending == last_seq  # the catalog and 120 telemetry
    finally:
        blocker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await buffer.close()


async def test_sqlite_full_drops_the_block_counts_it_and_burns_no_seq(tmp_path: Path) -> None:
    """SQLITE_FULL from SQLite's page limit on the writer's own connection (a real small
    filesystem: tests/integration/test_buffer_disk_full.py)."""
    buffer = await open_buffer(tmp_path / "state.db")
    rng = random.Random(4)
    try:
        await buffer.put_samples(batch(), CATALOG)
        await buffer.flush()

        def page_limit(pages: int | None) -> None:  # runs on the writer thread
            conn = buffer._store._conn
            if pages is None:
                (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}").fetchall()

        await buffer._call(lambda: page_limit(None))
        with capture_logs() as logs:
            lost = await buffer.put_samples(noise(3000, rng), NOISE)  # needs new pages
            await buffer.flush()  # not an error: dropped and counted
        assert buffer.budget().dropped_samples == {"disk_full": 3000}
        assert buffer.budget().disk_full and buffer.budget().problem is not None
        dropped = [e["log_level"] for e in logs if e["event"] == "buffer_samples_dropped"]
        assert dropped == ["warning"]
        await buffer._call(lambda: page_limit(1_000_000))
        with capture_logs() as logs:
            kept = await buffer.put_samples(noise(3000, rng), NOISE)
            await buffer.flush()
        recovered = [e for e in logs if e["event"] in ("buffer_drops_recovered",
                                                       "buffer_disk_recovered")]  # fmt: skip
        assert [e["log_level"] for e in recovered] == ["info", "info"]
        assert not buffer.budget().disk_full and buffer.budget().problem is None
        blocks = sorted(await buffer.pending(limit=10, newest_first=False), key=lambda b: b.seq)
        # 1 catalog, 2 telemetry, 3 the announcement of the drop, 4 its catalog, 5 telemetry
        assert seqs(blocks) == [1, 2, 3, 4, 5], (lost, kept)
        (drop,) = decode_events(blocks[2].data)
        assert drop["kind"] == "buffer_samples_dropped" and drop["reason"] == "disk_full"
        assert (drop["blocks"], drop["samples"]) == (1, 3000)
    finally:
        await buffer.close()


async def test_a_cap_too_small_to_hold_blocks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        await open_buffer(tmp_path / "state.db", max_bytes=100_000)
    assert not (tmp_path / "state.db").exists()
