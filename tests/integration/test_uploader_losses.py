"""The uploader and the buffer's losses, against the real reference receiver on 127.0.0.1:
evictions while blocks are in flight are counted exactly (every counted block is one the
receiver never gets, and the stream names it), and on a real full disk the uploader survives
acks it cannot commit, sends nothing twice meanwhile and resumes acking when space returns."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.demo.cloud import CloudReceiver, Fault
from agent.domain.clock import FakeClock
from agent.domain.samples import Sample
from tests.support.logs import events
from tests.support.small_disk import small_disk, starve
from tests.support.uploading import drive, running, uploader

AGENT = "plant-1"
T = 1_767_225_600.0
NOISE = Catalog((CatalogEntry("noise", "", "plc"),))


def noise(n: int, rng: random.Random, t: float) -> list[Sample]:
    return [Sample("noise", t + i / n, rng.random()) for i in range(n)]


def announced(cloud: CloudReceiver) -> set[int]:
    """Seqs the agent's announcements (received as events) say will never come."""
    out: set[int] = set()
    for event in cloud.store.events(AGENT):
        if event.get("kind") == "buffer_blocks_evicted":
            out |= {s for first, last in event["seqs"] for s in range(first, last + 1)}
    return out


def ack_failures(logs: io.StringIO) -> int:
    """How many times deleting acknowledged blocks failed so far (one per try)."""
    return sum(1 for e in events(logs) if e["event"] == "sync_ack_failed")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", 2 * 1024 * 1024) as where:
        yield where


async def test_counted_evictions_are_exactly_the_blocks_the_receiver_never_gets(
    tmp_path: Path,
) -> None:
    clock = FakeClock(now=T)
    rng = random.Random(9)
    buffer = await Buffer.open(tmp_path / "buffer.db", agent_id=AGENT, max_bytes=600_000,
                               clock=clock)  # fmt: skip
    try:
        async with CloudReceiver(tmp_path / "cloud") as cloud:
            # a slow receiver: blocks are in flight, and in the uploader's hands, for a while;
            # and answers lost after the block was stored (it must not then count as evicted)
            for _ in range(8):
                cloud.faults.add(Fault.slow(0.3), times=5)
                cloud.faults.add(Fault.drop_after_store())
            up = uploader(buffer, cloud.url, clock, tmp_path, timeout_s=5.0)
            async with running(up):
                for _ in range(120):  # ~20 kB a block: four times the cap
                    await buffer.put_samples(noise(2500, rng, clock.now()), NOISE)
                    await clock.advance(0.5)
                    await asyncio.sleep(0.02)
                await drive(clock, lambda: buffer.budget().blocks_pending == 0, within=60)
                await drive(clock, lambda: up.stats().in_flight == 0, within=60)
            evictions = sum(buffer.budget().evictions.values())
            received = {b.seq for b in cloud.store.blocks(AGENT)}
            lost = announced(cloud)
            assert evictions > 20  # the cap did bite while blocks were in flight
            assert not received & lost, f"counted as evicted, yet delivered: {received & lost}"
            assert received | lost == set(range(1, max(received | lost) + 1))
            assert evictions == len(lost)
    finally:
        await buffer.close()


async def test_the_uploader_survives_acks_a_full_disk_refuses_and_resumes(
    tmp_path: Path, disk: Path, logs: io.StringIO
) -> None:
    clock = FakeClock(now=T)
    rng = random.Random(10)
    path = disk / "buffer.db"
    buffer = await Buffer.open(path, agent_id=AGENT, max_bytes=50_000_000, clock=clock)
    try:
        for _ in range(20):  # a backlog from an outage
            await buffer.put_samples(noise(200, rng, clock.now()), NOISE)
            await clock.advance(1.0)
        await buffer.flush()
        # Nothing left to spare: the buffer gives its reserve back for one block on a full
        # disk, then another process takes that space too.
        first = starve(path, "ballast-1")
        await buffer.put_samples(noise(200, rng, clock.now()), NOISE)
        await buffer.flush()
        assert not path.with_name("buffer.db-reserve").exists()
        stored = buffer.budget().blocks_pending
        second = starve(path, "ballast-2")
        async with CloudReceiver(tmp_path / "cloud") as cloud:
            up = uploader(buffer, cloud.url, clock, tmp_path, timeout_s=5.0)
            async with running(up) as task:
                await drive(clock, lambda: len(cloud.store.blocks(AGENT)) == stored)
                await drive(clock, lambda: up.stats().acks == stored)
                # the acks keep failing, retried after their backoff: nothing is sent twice
                # meanwhile (three failed deletes seen: two of them retries)
                await drive(clock, lambda: ack_failures(logs) >= 3, within=60)
                assert not task.done(), "the uploader died"
                assert buffer.budget().blocks_pending == stored  # not deleted: no room
                assert up.stats().acks_waiting == stored
                assert up.stats().duplicates == 0 and up.stats().blocks_sent == stored
                first.unlink()  # space returns
                second.unlink()
                await drive(clock, lambda: buffer.budget().blocks_pending == 0, within=60)
                assert not task.done()
            assert up.stats().duplicates == 0
    finally:
        await buffer.close()
    lines = [e for e in events(logs) if e["event"] in ("sync_ack_failed", "sync_ack_recovered")]
    levels = [(e["event"], e["level"]) for e in lines]
    assert levels[0] == ("sync_ack_failed", "warning")
    assert ("sync_ack_failed", "warning") not in levels[1:]
    assert levels[-1] == ("sync_ack_recovered", "info")
    assert not [e for e in events(logs) if e["event"] == "task_failed"]
