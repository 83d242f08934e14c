"""The agent as a subprocess, reading the simulator and uploading to the reference receiver.

Real faults: the agent is killed with SIGKILL at random moments 20 times and restarted; the
buffer file is corrupted; the disk cap is reached. The receiver must end up holding every
committed block exactly once (block seqs contiguous, no sample twice). Every wait follows
the agent's observed progress (its log lines, blocks at the receiver or in the buffer file),
never a guessed number of seconds: a busy machine only makes the tests slower.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua.client.client import Client

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.demo.cloud import CloudReceiver
from agent.demo.runner import SimulatedPlant
from agent.domain.clock import SystemClock
from agent.domain.samples import Sample
from tests.support.config import agent_config, mill_tags, opcua_source
from tests.support.env import clean_env
from tests.support.plant import REQUEST_TIMEOUT_S, read
from tests.support.wait import eventually, until

AGENT = [sys.executable, "-m", "agent"]
WAIT_S = 120.0  # the limit of any one wait for progress (generous: a busy 2-core machine)
MOVING = ("FeedRate", "SeparatorSpeed", "MillPower", "Vibration")  # a new value every tick
TAGS = (*MOVING, "RemoteActive", "Heartbeat")


def _config(tmp: Path, opcua_url: str, cloud_url: str, *, max_buffer_bytes: int = 50_000_000,
            sync: bool = True) -> Path:  # fmt: skip
    return agent_config(
        "sf-1",
        sources=[opcua_source(opcua_url)],
        tags=mill_tags(*TAGS),
        sync={
            "enabled": sync,
            "url": cloud_url,
            "flush_interval_s": 0.2,
            "max_buffer_bytes": max_buffer_bytes,
        },
        api={"enabled": False},
        shutdown_timeout_s=60,  # a limit, not a wait: a busy machine may be slow to drain
    ).write(tmp / "agent.toml")


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *AGENT, "run", "--config", str(config), env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _events(proc: asyncio.subprocess.Process) -> list[dict[str, object]]:
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


async def _until_event(proc: asyncio.subprocess.Process, name: str) -> list[dict[str, object]]:
    """The agent's log events up to and including the first `name` event."""
    assert proc.stdout is not None
    events: list[dict[str, object]] = []
    while not any(e.get("event") == name for e in events):
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=WAIT_S)
        assert line, f"the agent ended before {name}: {[e.get('event') for e in events]}"
        if line.startswith(b"{"):
            events.append(json.loads(line))
    return events


async def _until_started(proc: asyncio.subprocess.Process) -> list[dict[str, object]]:
    """The agent's log events up to and including `agent_started`."""
    return await _until_event(proc, "agent_started")


async def _moved_on(plant: SimulatedPlant) -> None:
    """Until every moving tag's value at the plant's OPC UA server has a newer source
    timestamp than when this was called: the plant has stepped and published since."""
    client = Client(plant.opcua_url, timeout=REQUEST_TIMEOUT_S)
    await client.connect()
    try:

        async def stamps() -> dict[str, object]:
            return {tag: (await read(client, tag)).SourceTimestamp for tag in MOVING}

        before = await stamps()

        async def moved() -> bool:
            now = await stamps()
            return all(now[tag] != before[tag] for tag in MOVING)

        await eventually(moved, f"new values of {MOVING} at the OPC UA server", WAIT_S)
    finally:
        await client.disconnect()


def _received(cloud: CloudReceiver, blocks: int) -> bool:
    return len(cloud.store.blocks("sf-1")) >= blocks


def _pending(state: Path) -> int:
    with sqlite3.connect(f"file:{state / 'buffer.db'}?mode=ro", uri=True) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "blocks" in tables, tables
        return int(db.execute("SELECT count(*) FROM blocks").fetchone()[0])


@pytest.fixture
async def plant() -> AsyncIterator[SimulatedPlant]:
    async with SimulatedPlant(opcua_port=0, modbus_port=0, time_scale=5) as running:
        yield running


@pytest.mark.timeout(900)
async def test_sigkill_20_times_loses_and_duplicates_nothing(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    rng = random.Random(20261127)
    async with CloudReceiver(tmp_path / "cloud") as cloud:
        config = _config(tmp_path, plant.opcua_url, cloud.url)
        uploading = 0
        for _ in range(20):
            # Each kill lands at a moment chosen from observed progress, not from a clock:
            # during start-up (after its 1st or 2nd log line), or once the receiver got 1-4
            # more blocks from this run (mid-upload, mid-ack, mid-commit).
            proc = await _start(config)
            assert proc.stdout is not None
            more = rng.choice([0, 0, 1, 2, 3, 4])
            if more == 0:
                for _ in range(rng.randint(1, 2)):
                    await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
            else:
                await _until_started(proc)
                want = len(cloud.store.blocks("sf-1")) + more
                await until(functools.partial(_received, cloud, want), "uploads", WAIT_S)
                uploading += 1
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
            assert proc.returncode == -signal.SIGKILL
        # Last run: no new data (the plant is paused), drain everything, stop gracefully.
        # The last run subscribes anew, and OPC UA then re-delivers each item's current value
        # with its original source timestamp. Paused at once, the plant may not have published
        # since the killed run last received (and stored) those values: they would arrive a
        # second time, and the check below that a moving tag is never seen twice would judge
        # a re-read, not a duplicated block. So the plant first moves on, as observed at its
        # OPC UA server: every moving tag carries a source timestamp no killed run has seen.
        await _moved_on(plant)
        await plant.pause()
        before = len(cloud.store.blocks("sf-1"))
        proc = await _start(config)
        # This run's first blocks (its catalog and the subscription's current values) reach
        # the cloud before the drain is judged, however slowly the agent starts under load.
        await until(
            lambda: len(cloud.store.blocks("sf-1")) > before + 1,
            "the last run uploads",
            within=WAIT_S,
        )
        await until(lambda: _pending(tmp_path / "state") == 0, "the backlog drained", WAIT_S)
        proc.send_signal(signal.SIGTERM)
        events = await _events(proc)
        assert proc.returncode == 0
        plant.resume()
        epochs = {e["epoch"] for e in events if e.get("event") == "agent_started"}
        assert len(epochs) == 1  # the store survived every kill: same epoch
        blocks = [b for b in cloud.store.blocks("sf-1") if b.epoch in epochs]
        seqs = sorted(b.seq for b in blocks)
        # Every committed block arrived exactly once; the last graceful stop may leave the
        # block it flushed on the way out in the buffer, so allow that one only.
        left = _pending(tmp_path / "state")
        assert left <= 1
        assert seqs == list(range(1, len(seqs) + 1)), "a committed block is missing"
        assert len(seqs) >= uploading  # each run killed among uploads added one at least
        samples = cloud.store.samples("sf-1")
        # OPC UA re-delivers each item's current value, with its original source timestamp,
        # when a subscription is created: a tag that did not change between two runs (here
        # Heartbeat, which nobody writes) is read again, identically. That is a second
        # observation, not a block sent twice; anything else seen twice would be.
        rows: dict[tuple[str, float], set[tuple[object, int]]] = {}
        for tag, stamp, value, status in samples:
            rows.setdefault((tag, stamp), set()).add((value, status))
        keys = Counter((tag, stamp) for tag, stamp, _, _ in samples)
        twice = {k: n for k, n in keys.items() if n > 1}
        assert all(len(rows[k]) == 1 for k in twice), "different values at one timestamp"
        assert sum(n - 1 for n in twice.values()) <= 21 * len(TAGS)  # one per run at most
        assert not [k for k in twice if k[0] in MOVING], "a changing tag's sample arrived twice"
        assert {tag for tag, *_ in samples} >= {"FeedRate", "SeparatorSpeed", "MillPower"}


async def test_corrupt_buffer_is_moved_aside_and_the_agent_starts(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = _config(tmp_path, plant.opcua_url, "http://127.0.0.1:9", sync=False)
    state = tmp_path / "state"
    state.mkdir()
    (state / "buffer.db").write_bytes(b"this is not a database" * 1000)
    proc = await _start(config)
    first = await _until_started(proc)
    await until(lambda: _pending(state) >= 1, "the new store took a block", WAIT_S)
    proc.send_signal(signal.SIGTERM)
    events = first + await _events(proc)
    assert proc.returncode == 0
    aside = [p for p in state.iterdir() if p.name.startswith("buffer.db") and "corrupt" in p.name]
    assert len(aside) == 1, sorted(p.name for p in state.iterdir())
    assert aside[0].read_bytes().startswith(b"this is not a database")
    names = [e["event"] for e in events]
    assert "agent_started" in names and "agent_stopped" in names
    assert _pending(state) >= 1  # the new store took samples (and the recovery event)


async def _prefill(state: Path, target_bytes: int) -> int:
    """Fill the agent's buffer file (as a long outage would) up to about target_bytes."""
    state.mkdir()
    catalog = Catalog(tuple(CatalogEntry(name, "", "mill") for name in TAGS))
    buffer = await Buffer.open(state / "buffer.db", agent_id="sf-1", max_bytes=10 * target_bytes,
                               clock=SystemClock())  # fmt: skip
    rng = random.Random(7)
    t = time.time() - 86_400
    blocks = 0
    try:
        while buffer.budget().bytes_used < target_bytes:
            samples = [Sample(name, t + i * 0.1, rng.gauss(100, 10)) for i in range(200)
                       for name in TAGS]  # fmt: skip
            await buffer.put_samples(samples, catalog)
            t += 20
            blocks += 1
    finally:
        await buffer.close()
    return blocks


async def test_byte_cap_evicts_oldest_and_keeps_running(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    cap = 1_000_000
    state = tmp_path / "state"
    prefilled = await _prefill(state, int(cap * 1.2))
    config = _config(tmp_path, plant.opcua_url, "http://127.0.0.1:9", sync=False,
                     max_buffer_bytes=cap)  # fmt: skip
    proc = await _start(config)
    # Running, then evicting: the cap is reached by this run's own blocks (none is ever
    # evicted before the first one is stored), and the agent is still there afterwards.
    first = await _until_event(proc, "buffer_evicted")
    assert proc.returncode is None, "the agent stopped"
    proc.send_signal(signal.SIGTERM)
    events = first + await _events(proc)
    assert proc.returncode == 0
    closed = next(e for e in events if e["event"] == "buffer_closed")
    assert isinstance(closed["bytes_used"], int) and closed["bytes_used"] <= cap, closed
    evictions = closed["evictions"]
    assert isinstance(evictions, dict) and sum(int(n) for n in evictions.values()) > 0, closed
    pending = closed["blocks_pending"]
    assert isinstance(pending, int) and pending < prefilled + 30  # old blocks went, new ones came
