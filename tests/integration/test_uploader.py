"""The uploader against the real reference receiver on 127.0.0.1, with a real SQLite buffer.

Fake time drives every wait of the agent (backoff, Retry-After, bandwidth, polling); the HTTP
exchanges are real, so the tests advance the FakeClock in steps and give real I/O a moment
between steps (``drive``). Every sample is checked to arrive exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.config.settings import SyncSection
from agent.demo.cloud import CloudReceiver, Fault
from agent.domain.clock import FakeClock
from agent.domain.samples import Sample
from agent.sync.uploader import Uploader
from tests.support.logs import events
from tests.support.uploading import AGENT, drive, running, uploader

Row = tuple[str, float, Any, int]


class Plant:
    """Puts one telemetry block of ``tags`` samples per call, at the clock's time."""

    def __init__(self, buffer: Buffer, clock: FakeClock, tags: int = 10) -> None:
        self.buffer, self.clock = buffer, clock
        self.catalog = Catalog(
            tuple(CatalogEntry(f"Mill.T{i}", "degC", "plc") for i in range(tags))
        )
        self.batches: dict[int, list[Row]] = {}  # seq -> rows

    async def tick(self) -> int:
        t = self.clock.now()
        samples = [
            Sample(e.name, t, round(t % 1000 + i / 8, 3))
            for i, e in enumerate(self.catalog.entries)
        ]
        seq = await self.buffer.put_samples(samples, self.catalog)
        self.batches[seq] = [(s.tag, s.source_time, s.value, s.status) for s in samples]
        await self.buffer.flush()
        return seq

    def rows(self, without: Collection[int] = ()) -> list[Row]:
        return sorted(r for seq, rows in self.batches.items() if seq not in without for r in rows)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def buffer(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Buffer]:
    buf = await Buffer.open(
        tmp_path / "buffer.db", agent_id=AGENT, max_bytes=50_000_000, clock=clock
    )
    yield buf
    await buf.close()


# -- tests ------------------------------------------------------------------------------------


async def test_scripted_faults_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, buffer: Buffer, clock: FakeClock
) -> None:
    plant = Plant(buffer, clock)
    async with CloudReceiver(tmp_path / "cloud") as cloud:
        up = uploader(buffer, cloud.url, clock, tmp_path, timeout_s=0.3)
        async with running(up):
            await plant.tick()  # the catalog and a first block go through cleanly
            await drive(clock, lambda: cloud.store.counts(AGENT)["samples"] == 10)
            cloud.faults.add(
                Fault.error(500),
                Fault.error(429, retry_after="3"),
                Fault.error(400),
                Fault.slow(0.6),  # longer than timeout_s: the agent gives up, the cloud stores
                Fault.drop(),
                Fault.drop_after_store(),
                Fault.error(503),
            )
            for _ in range(12):
                await plant.tick()
                await clock.advance(0.25)
            await drive(
                clock,
                lambda: buffer.budget().blocks_pending == 0 and cloud.faults.pending == 0,
            )
            # the alert travels like any event
            await drive(clock, lambda: cloud.store.counts(AGENT)["events"] >= 1)
        stats = up.stats()
        (alert,) = cloud.store.events(AGENT)
        assert alert["kind"] == "sync_block_quarantined"
        assert alert["status"] == 400 and "refused this block" in alert["reason"]
        assert stats.quarantined == 1 and buffer.budget().quarantined == 1
        assert stats.retries >= 6  # 500, 429, timeout, drop, drop after store, 503
        assert stats.duplicates >= 1  # the block stored before its connection dropped
        received = sorted(cloud.store.samples(AGENT))
        assert received == plant.rows(without={alert["seq"]})  # each exactly once
        assert alert["seq"] in plant.batches
        assert len(plant.rows()) - len(received) == 10  # only the quarantined block is missing


async def test_retry_after_is_honoured(tmp_path: Path, buffer: Buffer, clock: FakeClock) -> None:
    plant = Plant(buffer, clock)
    async with CloudReceiver(tmp_path / "cloud") as cloud:
        cloud.faults.add(Fault.error(429, retry_after="30"))
        async with running(uploader(buffer, cloud.url, clock, tmp_path)):
            await plant.tick()
            await drive(clock, lambda: cloud.faults.pending == 0, step=0.25)
            refused_at = clock.monotonic()
            await drive(clock, lambda: len(cloud.store.blocks(AGENT)) == 2, step=1.0, within=60)
            # backoff alone would have retried after 0.5 s
            assert clock.monotonic() >= refused_at + 30
            assert clock.monotonic() <= refused_at + 32


async def test_ten_minute_outage_live_first_then_backlog_exactly_once(
    tmp_path: Path, buffer: Buffer, clock: FakeClock, logs: io.StringIO
) -> None:
    plant = Plant(buffer, clock, tags=50)
    async with CloudReceiver(tmp_path / "cloud") as cloud:
        up = uploader(
            buffer, cloud.url, clock, tmp_path, bandwidth_limit_bytes_per_s=1500,
            progress_every_s=5.0,
        )  # fmt: skip
        task = asyncio.create_task(up.run())
        for _ in range(3):
            await plant.tick()
            await clock.advance(1.0)
        await drive(clock, lambda: buffer.budget().blocks_pending == 0)
    try:
        outage_started = clock.monotonic()
        while clock.monotonic() < outage_started + 600:  # 10 minutes, a block every 10 s
            await plant.tick()
            await clock.advance(10.0)
            await asyncio.sleep(0.002)
        backlog = set(plant.batches) - {b.seq for b in _stored(tmp_path)}
        assert len(backlog) == 60
        async with CloudReceiver(tmp_path / "cloud", port=cloud.port) as back:
            live: list[int] = []
            deadline = time.monotonic() + 30
            while buffer.budget().blocks_pending and time.monotonic() < deadline:
                if clock.monotonic() % 1.0 == 0:
                    live.append(await plant.tick())
                await clock.advance(0.25)
                await asyncio.sleep(0.01)
            order = [b.seq for b in back.store.blocks(AGENT)]
            received = sorted(back.store.samples(AGENT))
            progress = up.progress()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert received == plant.rows()  # every sample exactly once
    assert progress.remaining_blocks == 0
    # live blocks went out while the backlog was still draining
    last_backlog = max(order.index(seq) for seq in backlog)
    assert sum(order.index(seq) < last_backlog for seq in live) >= 5
    lines = events(logs)
    names = [line["event"] for line in lines]
    failed = [line for line in lines if line["event"] == "sync_upload_failed"]
    assert failed[0]["level"] == "warning" and {f["level"] for f in failed[1:]} == {"debug"}
    assert [line["level"] for line in lines if line["event"] == "sync_recovered"] == ["info"]
    for name in ("sync_backlog_draining", "sync_backlog_progress", "sync_backlog_drained"):
        assert name in names
    report = next(line for line in lines if line["event"] == "sync_backlog_progress")
    assert report["remaining_blocks"] > 0 and report["eta_s"] > 0


def _stored(tmp_path: Path) -> list[Any]:
    from agent.demo.cloud_store import CloudStore

    store = CloudStore(tmp_path / "cloud" / "cloud.db")
    try:
        return store.blocks(AGENT)
    finally:
        store.close()


async def test_bandwidth_cap_is_respected(tmp_path: Path, buffer: Buffer, clock: FakeClock) -> None:
    plant = Plant(buffer, clock, tags=200)
    for _ in range(30):
        await plant.tick()
    blocks = await buffer.pending(limit=100, newest_first=False)
    total, largest = sum(len(b.data) for b in blocks), max(len(b.data) for b in blocks)
    rate = total / 10  # the whole backlog should take about 10 s
    async with CloudReceiver(tmp_path / "cloud") as cloud:
        up = uploader(buffer, cloud.url, clock, tmp_path, bandwidth_limit_bytes_per_s=int(rate))
        start = clock.monotonic()
        async with running(up):
            while buffer.budget().blocks_pending:
                await clock.advance(0.25)
                await asyncio.sleep(0.003)
                elapsed = clock.monotonic() - start
                # burst (1 s of rate) + the rate so far + one block overdrawn
                assert up.stats().bytes_sent <= rate + rate * elapsed + largest
                assert elapsed < 60, "the drain stalled"
        assert sorted(cloud.store.samples(AGENT)) == plant.rows()
    assert up.stats().bytes_sent == total
    assert elapsed >= (total - rate - largest) / rate


async def test_the_token_is_sent_and_never_logged(
    tmp_path: Path, buffer: Buffer, clock: FakeClock, logs: io.StringIO
) -> None:
    plant = Plant(buffer, clock)
    secret, wrong = "tok-3b1f9c0e-secret", "tok-0000-wrong-secret"
    async with CloudReceiver(tmp_path / "cloud", token=SecretStr(secret)) as cloud:
        bad = uploader(buffer, cloud.url, clock, tmp_path, token=SecretStr(wrong))
        async with running(bad):
            await plant.tick()
            await drive(clock, lambda: bad.stats().retries >= 3)
        assert cloud.store.blocks(AGENT) == []  # refused, and kept in the buffer
        assert "check sync.token_file" in (bad.stats().last_error or "")
        assert buffer.budget().blocks_pending == 2 and buffer.budget().quarantined == 0
        good = uploader(buffer, cloud.url, clock, tmp_path, token=SecretStr(secret))
        async with running(good):
            await drive(clock, lambda: buffer.budget().blocks_pending == 0)
    text = logs.getvalue()
    assert "sync_upload_failed" in text and "HTTP Request" in text  # httpx debug logs captured
    assert secret not in text and wrong not in text


async def test_a_dead_receiver_is_retried_forever_without_escaping(
    tmp_path: Path, buffer: Buffer, clock: FakeClock
) -> None:
    await Plant(buffer, clock).tick()
    up = uploader(buffer, "http://127.0.0.1:1", clock, tmp_path)
    async with running(up) as task:
        await drive(clock, lambda: up.stats().consecutive_failures >= 5, step=4.0)
        assert not task.done()
        assert "ConnectError" in (up.stats().last_error or "")
    assert buffer.budget().blocks_pending == 2


async def test_the_bytes_on_disk_are_the_bytes_on_the_wire(
    tmp_path: Path, buffer: Buffer, clock: FakeClock
) -> None:
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"status": "stored"})

    await Plant(buffer, clock).tick()
    on_disk = {b.seq: b.data for b in await buffer.pending(limit=10, newest_first=False)}
    up = Uploader(
        buffer,
        SyncSection(url="https://cloud.example.com/ingest/"),
        agent_id=AGENT,
        token=SecretStr("t0k-wire"),
        clock=clock,
        base_dir=tmp_path,
        transport=httpx.MockTransport(receiver),
    )
    async with running(up):
        await drive(clock, lambda: buffer.budget().blocks_pending == 0)
    assert sorted(int(r.url.path.rsplit("/", 1)[1]) for r in seen) == sorted(on_disk)
    for request in seen:
        seq = int(request.url.path.rsplit("/", 1)[1])
        assert request.method == "POST"
        assert str(request.url) == (
            f"https://cloud.example.com/ingest/v1/agents/{AGENT}/blocks/{buffer.epoch}/{seq}"
        )
        assert request.content == on_disk[seq]
        assert request.headers["content-type"] == "application/vnd.edge-agent.block"
        assert request.headers["authorization"] == "Bearer t0k-wire"
