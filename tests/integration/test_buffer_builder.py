"""The block builder on a real buffer, driven by a FakeClock: timing, size, drops, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from agent.buffer.blocks import BlockKind, Catalog, CatalogEntry, decode_telemetry, read_header
from agent.buffer.buffer import Buffer
from agent.buffer.builder import BlockBuilder
from agent.domain.clock import FakeClock
from agent.domain.samples import Sample

T = 1_767_225_600.0
CATALOG = Catalog((CatalogEntry("a", "", "plc"), CatalogEntry("b", "", "plc")))


@pytest_asyncio.fixture
async def clock() -> FakeClock:
    return FakeClock(now=T)


@pytest_asyncio.fixture
async def buffer(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Buffer]:
    buffer = await Buffer.open(
        tmp_path / "state.db", agent_id="a", max_bytes=10_000_000, clock=clock
    )
    yield buffer
    await buffer.close()


async def telemetry(buffer: Buffer) -> list[tuple[float, list[Sample]]]:
    """(created, samples) of every telemetry block, oldest first."""
    await buffer.flush()
    blocks = await buffer.pending(limit=1000, newest_first=False, kinds={BlockKind.TELEMETRY})
    return [(read_header(b.data).created, decode_telemetry(b.data, CATALOG)) for b in blocks]


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def s(tag: str, k: int) -> Sample:
    return Sample(tag, T + k, float(k))


async def test_the_first_samples_are_stored_at_once_then_one_block_per_interval(
    buffer: Buffer, clock: FakeClock
) -> None:
    builder = BlockBuilder(
        buffer, CATALOG, flush_interval_s=1.0, max_block_samples=100, clock=clock
    )
    task = asyncio.create_task(builder.run())
    try:
        await clock.advance(0.25)
        builder.add([s("a", 1), s("b", 2)])  # the first data after start: stored at once
        await clock.advance(0.0)
        assert await telemetry(buffer) == [(T + 0.25, [s("a", 1), s("b", 2)])]
        builder.add([s("a", 3)])
        await clock.advance(0.5)
        assert len(await telemetry(buffer)) == 1  # later data: not before the tick
        builder.add([s("b", 4)])
        await clock.advance(0.25)  # t = 1.0: the first tick, on the grid of the start
        await clock.advance(1.0)  # t = 2.0: nothing open, no empty block
        builder.add([s("a", 5)])
        await clock.advance(1.0)  # t = 3.0
    finally:
        await stop(task)
    blocks = await telemetry(buffer)
    assert blocks == [
        (T + 0.25, [s("a", 1), s("b", 2)]),
        (T + 1.0, [s("a", 3), s("b", 4)]),
        (T + 3.0, [s("a", 5)]),
    ]
    assert (builder.blocks, builder.samples) == (3, 5)


async def test_a_late_wake_up_skips_missed_ticks_instead_of_bunching(
    buffer: Buffer, clock: FakeClock
) -> None:
    builder = BlockBuilder(
        buffer, CATALOG, flush_interval_s=1.0, max_block_samples=100, clock=clock
    )
    task = asyncio.create_task(builder.run())
    try:
        builder.add([s("b", 0)])  # the first data, stored at once (see above)
        await clock.advance(0.0)
        builder.add([s("a", 1)])
        clock.jump(2.5)  # the loop was busy: ticks 1.0 and 2.0 are overdue
        await clock.advance(0.0)
        builder.add([s("a", 2)])
        await clock.advance(0.4)  # t = 2.9: the schedule did not move to 3.5
        assert len(await telemetry(buffer)) == 2
        await clock.advance(0.1)  # t = 3.0, on the original grid
    finally:
        await stop(task)
    assert await telemetry(buffer) == [
        (T, [s("b", 0)]),
        (T + 2.5, [s("a", 1)]),
        (T + 3.0, [s("a", 2)]),
    ]


async def test_a_full_block_flushes_at_once_in_order(buffer: Buffer, clock: FakeClock) -> None:
    builder = BlockBuilder(buffer, CATALOG, flush_interval_s=60.0, max_block_samples=5, clock=clock)
    task = asyncio.create_task(builder.run())
    try:
        await clock.advance(0.0)
        builder.add([s("a", k) for k in range(12)])
        for _ in range(20):
            await asyncio.sleep(0)
        blocks = await telemetry(buffer)
    finally:
        await stop(task)
    assert [samples for _, samples in blocks] == [
        [s("a", k) for k in range(0, 5)],
        [s("a", k) for k in range(5, 10)],
        [s("a", k) for k in range(10, 12)],
    ]
    assert clock.monotonic() == 0.0  # no time passed: the size did it


async def test_unknown_tags_and_unstorable_values_are_dropped_and_counted(
    buffer: Buffer, clock: FakeClock
) -> None:
    builder = BlockBuilder(
        buffer, CATALOG, flush_interval_s=1.0, max_block_samples=100, clock=clock
    )
    task = asyncio.create_task(builder.run())
    try:
        with capture_logs() as logs:
            builder.add([s("a", 1), s("x", 2), s("x", 3), s("y", 4)])
            builder.add([Sample("b", T, object()), s("b", 5)])  # type: ignore[arg-type]
            await clock.advance(1.0)
    finally:
        await stop(task)
    assert await telemetry(buffer) == [(T, [s("a", 1), s("b", 5)])]
    assert (builder.dropped_unknown, builder.unknown_tags) == (3, {"x": 2, "y": 1})
    assert builder.dropped_invalid == 1
    warnings = [(e["event"], e.get("tag")) for e in logs if e["log_level"] == "warning"]
    assert warnings == [
        ("sample_tag_unknown", "x"),
        ("sample_tag_unknown", "y"),
        ("samples_dropped", None),
    ]


async def test_cancellation_flushes_the_open_block_then_propagates(
    buffer: Buffer, clock: FakeClock
) -> None:
    builder = BlockBuilder(
        buffer, CATALOG, flush_interval_s=1.0, max_block_samples=100, clock=clock
    )
    task = asyncio.create_task(builder.run())
    await clock.advance(0.5)
    builder.add([s("a", 1), s("b", 2)])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [samples for _, samples in await telemetry(buffer)] == [[s("a", 1), s("b", 2)]]


async def test_bad_settings_are_refused(buffer: Buffer, clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        BlockBuilder(buffer, CATALOG, flush_interval_s=0.0, max_block_samples=1, clock=clock)
    with pytest.raises(ValueError):
        BlockBuilder(buffer, CATALOG, flush_interval_s=1.0, max_block_samples=0, clock=clock)
