"""The buffer on a real small filesystem (a tmpfs of a few MB), and on a file that lost its
contents: a full disk makes it evict and, when that cannot help, drop and count; it never
raises for want of room, never skips a seq silently, and says so in its budget and logs."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.buffer.blocks import BlockKind, Catalog, CatalogEntry, decode_events
from agent.buffer.buffer import Buffer, StoredBlock, StoreFullError
from agent.domain.clock import FakeClock
from agent.domain.samples import Sample
from tests.support.small_disk import fill, free_bytes, small_disk, starve

T = 1_767_225_600.0
NOISE = Catalog((CatalogEntry("noise", "", "plc"),))
DISK = 2 * 1024 * 1024


def noise(n: int, rng: random.Random) -> list[Sample]:
    """Lossless random doubles: about 8 bytes a sample, whatever the compressor does."""
    return [Sample("noise", T + i, rng.random()) for i in range(n)]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", DISK) as where:
        yield where


async def open_buffer(path: Path, max_bytes: int = 50_000_000) -> Buffer:
    return await Buffer.open(path, agent_id="agent-1", max_bytes=max_bytes, clock=FakeClock(T))


def events_of(blocks: list[StoredBlock], kind: str) -> list[dict[str, object]]:
    out = []
    for block in blocks:
        if block.kind == BlockKind.EVENTS:
            out += [e for e in decode_events(block.data) if e.get("kind") == kind]
    return out


def evicted_seqs(blocks: list[StoredBlock]) -> set[int]:
    out: set[int] = set()
    for event in events_of(blocks, "buffer_blocks_evicted"):
        ranges = event["seqs"]
        assert isinstance(ranges, list)
        out |= {s for first, last in ranges for s in range(first, last + 1)}
    return out


async def test_the_disk_bounds_the_buffer_it_evicts_announces_and_leaves_headroom(
    disk: Path,
) -> None:
    rng = random.Random(1)
    buffer = await open_buffer(disk / "buffer.db")  # a 50 MB cap on a 2 MB disk
    try:
        with capture_logs() as logs:
            for _ in range(150):  # ~20 kB each: 1.5 times the disk
                await buffer.put_samples(noise(2500, rng), NOISE)
            await buffer.flush()
        budget = buffer.budget()
        assert budget.disk_full and budget.problem is not None and "disk full" in budget.problem
        assert budget.evictions["telemetry"] > 10
        assert budget.dropped_samples == {}  # evicting was enough: nothing new was lost
        assert free_bytes(disk) > 0  # the rest of the system keeps some room
        blocks = await buffer.pending(limit=1000, newest_first=False)
        kept = {b.seq for b in blocks}
        evicted = evicted_seqs(blocks)
        assert not kept & evicted
        assert kept | evicted == set(range(1, max(kept) + 1)), "a seq is missing unannounced"
        assert len(evicted) == sum(budget.evictions.values())
        telemetry = sorted(b.seq for b in blocks if b.kind == BlockKind.TELEMETRY)
        assert max(evicted) < telemetry[0]  # the oldest went first
        full = [e["log_level"] for e in logs if e["event"] == "buffer_disk_full"]
        assert full == ["warning"]
        # one announcement for the whole episode, rewritten as it went, not one per put
        assert len(events_of(blocks, "buffer_blocks_evicted")) == 1
    finally:
        await buffer.close()


async def test_a_disk_filled_by_others_drops_and_counts_then_recovers(disk: Path) -> None:
    rng = random.Random(2)
    buffer = await open_buffer(disk / "buffer.db")
    try:
        await buffer.put_samples(noise(100, rng), NOISE)
        await buffer.flush()
        ballast = fill(disk)
        with capture_logs() as logs:
            for _ in range(10):
                await buffer.put_samples(noise(3000, rng), NOISE)  # never raises
            await buffer.flush()
        budget = buffer.budget()
        assert budget.disk_full and budget.problem is not None
        dropped = budget.dropped_samples["disk_full"]
        assert dropped >= 3000 and dropped % 3000 == 0
        levels = [e["log_level"] for e in logs if e["event"] == "buffer_samples_dropped"]
        assert levels[0] == "warning" and set(levels[1:]) <= {"debug"}
        assert [e["log_level"] for e in logs if e["event"] == "buffer_disk_full"] == ["warning"]

        ballast.unlink()  # space returns
        with capture_logs() as logs:
            await buffer.put_samples(noise(10, rng), NOISE)
            await buffer.flush()
        budget = buffer.budget()
        assert not budget.disk_full and budget.problem is None
        assert budget.dropped_samples["disk_full"] == dropped  # counted for good
        back = [e["event"] for e in logs if e["log_level"] == "info"]
        assert "buffer_disk_recovered" in back and "buffer_drops_recovered" in back
        blocks = await buffer.pending(limit=1000, newest_first=False)
        kept = {b.seq for b in blocks}
        assert kept | evicted_seqs(blocks) == set(range(1, max(kept) + 1)), "a seq was burnt"
        drops = events_of(blocks, "buffer_samples_dropped")
        assert sum(int(str(e["samples"])) for e in drops) == dropped
    finally:
        await buffer.close()


async def test_a_full_disk_gives_back_the_reserve_then_an_ack_is_a_store_full_error(
    disk: Path,
) -> None:
    rng = random.Random(3)
    path = disk / "buffer.db"
    buffer = await open_buffer(path)
    try:
        for _ in range(5):
            await buffer.put_samples(noise(500, rng), NOISE)
        await buffer.flush()
        seqs = [b.seq for b in await buffer.pending(limit=100, newest_first=False)]
        reserve = path.with_name("buffer.db-reserve")
        assert reserve.stat().st_size > 0  # set aside while there was room
        first = starve(path, "ballast-1")
        await buffer.ack(seqs[:1])  # a delete needs WAL space: the reserve gives it
        assert not reserve.exists()
        second = starve(path, "ballast-2")  # and another process takes that too
        with pytest.raises(StoreFullError):
            await buffer.ack(seqs[1:])
        assert buffer.budget().blocks_pending == len(seqs) - 1
        first.unlink()
        second.unlink()
        await buffer.ack(seqs[1:])
        assert buffer.budget().blocks_pending == 0
        await buffer.put_samples(noise(10, rng), NOISE)  # with room again, the reserve is back
        await buffer.flush()
        assert reserve.stat().st_size > 0
    finally:
        await buffer.close()


async def test_an_empty_buffer_file_is_moved_aside_with_its_wal_and_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "buffer.db"
    first = await open_buffer(path)
    await first.put_samples(noise(10, random.Random(4)), NOISE)
    await first.close()
    wal = path.with_name("buffer.db-wal")
    wal.write_bytes(b"the WAL that still held the data")
    path.write_bytes(b"")  # what a crash on a filesystem without data journaling can leave
    with capture_logs() as logs:
        buffer = await open_buffer(path)
    try:
        moved = buffer.recovered_from
        assert moved is not None and moved.name.startswith("buffer.db.corrupt-")
        assert moved.stat().st_size == 0
        assert moved.with_name(moved.name + "-wal").read_bytes().startswith(b"the WAL")
        assert buffer.epoch != first.epoch
        (warned,) = [e for e in logs if e["event"] == "buffer_corrupt_moved_aside"]
        assert warned["log_level"] == "warning" and "empty" in str(warned["error"])
        (block,) = await buffer.pending(limit=10, newest_first=True)
        (event,) = decode_events(block.data)
        assert event["kind"] == "buffer_corrupt_moved_aside"
        assert event["moved_to"] == str(moved)
    finally:
        await buffer.close()
