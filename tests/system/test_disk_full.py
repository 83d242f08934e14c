"""The agent as a subprocess with its state directory on a real small filesystem (a tmpfs).

The disk fills up (another process's ballast) while the cloud receiver is down; then the
receiver comes back, then space returns. The agent must keep running (same PID, no
traceback), say so within seconds (/readyz, /status, /metrics, the systemd STATUS= line on a
real notify socket), make room by evicting its oldest blocks, and in the end the receiver
holds every block but those the stream announced as evicted: seqs 1..N with every gap
named, and the evictions counted equal to the blocks it never got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.buffer.blocks import BlockKind, Catalog, CatalogEntry, decode_events
from agent.buffer.buffer import Buffer
from agent.demo.cloud import CloudReceiver
from agent.demo.runner import SimulatedPlant
from agent.domain.clock import SystemClock
from agent.domain.samples import Sample
from tests.support.config import agent_config, mill_tags, opcua_source
from tests.support.env import clean_env
from tests.support.ports import free_port
from tests.support.small_disk import fill, small_disk

AGENT_ID = "disk-1"
TAGS = ("FeedRate", "SeparatorSpeed", "MillPower", "Vibration")
DISK = 4 * 1024 * 1024
STALL_S = 90.0  # a wait fails only after this long without the progress it watches


def _config(tmp: Path, state: Path, opcua_url: str, cloud_url: str, api_port: int) -> Path:
    return (
        agent_config(
            AGENT_ID,
            sources=[opcua_source(opcua_url)],
            tags=mill_tags(*TAGS),
            sync={
                "enabled": True,
                "url": cloud_url,
                "flush_interval_s": 0.2,
                "max_buffer_bytes": 50_000_000,
                "timeout_s": 5,
            },
            api={"enabled": True, "port": api_port},
            shutdown_timeout_s=60,
        )
        .set("agent.state_dir", state)
        .write(tmp / "agent.toml")
    )


async def _prefill(state: Path, target_bytes: int) -> None:
    """A backlog from a long outage, as the agent's own buffer would hold it."""
    catalog = Catalog(tuple(CatalogEntry(name, "", "mill") for name in TAGS))
    buffer = await Buffer.open(state / "buffer.db", agent_id=AGENT_ID, max_bytes=50_000_000,
                               clock=SystemClock())  # fmt: skip
    rng = random.Random(7)
    t = time.time() - 86_400
    try:
        while buffer.budget().bytes_used < target_bytes:
            samples = [Sample(name, t + i * 0.1, rng.gauss(100, 10)) for i in range(200)
                       for name in TAGS]  # fmt: skip
            await buffer.put_samples(samples, catalog)
            await buffer.flush()
            t += 20
    finally:
        await buffer.close()


class Agent:
    """The agent subprocess, its log lines (read as they come) and its local API."""

    def __init__(self, proc: asyncio.subprocess.Process, api: str) -> None:
        self.proc, self.lines, self.stderr = proc, list[dict[str, Any]](), bytearray()
        self.raw = bytearray()
        self.http = httpx.AsyncClient(base_url=api, timeout=10)
        self._readers = [asyncio.create_task(self._read()), asyncio.create_task(self._err())]

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.raw += line
            if line.startswith(b"{"):
                self.lines.append(json.loads(line))

    async def _err(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr += line

    def alive(self) -> None:
        assert self.proc.returncode is None, f"the agent died: {self.proc.returncode}"

    async def get(self, path: str) -> httpx.Response:
        self.alive()
        return await self.http.get(path)

    async def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = (await self.get("/status")).json()
        assert doc["agent"]["pid"] == self.proc.pid  # the same process all along
        return doc

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout=STALL_S)
        await asyncio.gather(*self._readers)
        await self.http.aclose()
        return code


async def _until(
    check: Callable[[], Awaitable[bool]], what: str, progress: Callable[[], Awaitable[object]]
) -> None:
    """Poll ``check`` until true; fail naming ``what`` once ``progress()`` (a figure that
    moves while the agent works towards it) has not changed for STALL_S."""
    seen, since = await progress(), time.monotonic()
    while not await check():
        now_seen = await progress()
        if now_seen != seen:
            seen, since = now_seen, time.monotonic()
        assert time.monotonic() - since < STALL_S, f"no progress for {STALL_S:g} s: {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _notify_socket(where: Path) -> AsyncIterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = str(where / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


def _received(sock: socket.socket, into: list[str]) -> list[str]:
    with contextlib.suppress(BlockingIOError):
        while True:
            into.extend(sock.recv(65536).decode().splitlines())
    return into


def _left_in(db: Path) -> list[tuple[int, int, bytes]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [(int(s), int(k), bytes(d)) for s, k, d in
                conn.execute("SELECT seq, kind, data FROM blocks")]  # fmt: skip


def _announced(events: list[dict[str, Any]]) -> set[int]:
    out: set[int] = set()
    for event in events:
        if event.get("kind") == "buffer_blocks_evicted":
            out |= {s for first, last in event["seqs"] for s in range(first, last + 1)}
    return out


@pytest.mark.timeout(900)
async def test_a_full_disk_is_reported_survived_and_every_lost_block_announced(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", DISK) as disk:
        state = disk / "state"
        state.mkdir()
        await _prefill(state, 2_000_000)
        cloud_port, api_port = free_port(), free_port()
        cloud_url = f"http://127.0.0.1:{cloud_port}"
        async with SimulatedPlant(opcua_port=0, modbus_port=0, time_scale=5) as plant, \
                _notify_socket(tmp_path) as (notify, notify_path):  # fmt: skip
            config = _config(tmp_path, state, plant.opcua_url, cloud_url, api_port)
            env = clean_env(NOTIFY_SOCKET=notify_path)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", "--config", str(config), env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            agent = Agent(proc, f"http://127.0.0.1:{api_port}")
            statuses: list[str] = []

            async def log_count() -> int:
                agent.alive()
                return len(agent.lines)

            async def api_up() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await agent.get("/readyz")).status_code == 200
                return False

            await _until(api_up, "the agent became ready", log_count)

            # Another process fills the disk while the cloud is down.
            ballast = fill(disk)

            async def reported() -> bool:
                ready = await agent.get("/readyz")
                doc = await agent.status()
                metrics = (await agent.get("/metrics")).text
                return (
                    ready.status_code == 503
                    and "disk full" in ready.json()["detail"]
                    and doc["buffer"]["disk_full"] is True
                    and "disk full" in (doc["buffer"]["problem"] or "")
                    and doc["health"]["ready"] is False
                    and "edge_agent_buffer_disk_full 1.0" in metrics
                    and sum(doc["buffer"]["evictions"].values()) > 0  # it made room
                    and any("BUFFER disk full" in s for s in _received(notify, statuses))
                )

            await _until(reported, "the full disk in /readyz, /status, /metrics, STATUS=",
                         log_count)  # fmt: skip

            # The receiver comes back while the disk is still full, then space returns.
            async with CloudReceiver(tmp_path / "cloud", port=cloud_port) as cloud:

                async def received() -> int:
                    return len(cloud.store.blocks(AGENT_ID))

                await _until(lambda: _at_least(received, 10), "uploads resumed", received)
                ballast.unlink()

                async def recovered() -> bool:
                    ready = await agent.get("/readyz")
                    doc = await agent.status()
                    return ready.status_code == 200 and doc["buffer"]["disk_full"] is False

                await _until(recovered, "the agent ready again", received)
                await plant.pause()  # no new data: the backlog can drain to the end

                async def drained() -> bool:
                    return int((await agent.status())["buffer"]["blocks_pending"]) == 0

                await _until(drained, "the backlog drained", received)
                code = await agent.stop()
                plant.resume()
                blocks = cloud.store.blocks(AGENT_ID)
                events = cloud.store.events(AGENT_ID)
            left = _left_in(state / "buffer.db")
        output = agent.raw.decode() + agent.stderr.decode()
    assert code == 0
    assert "Traceback" not in output, output[-3000:]
    names = [line["event"] for line in agent.lines]
    assert "task_failed" not in names and "shutdown_forced" not in names
    assert [line["level"] for line in agent.lines if line["event"] == "buffer_disk_full"]
    assert "buffer_disk_recovered" in names
    epochs = {line["epoch"] for line in agent.lines if line["event"] == "agent_started"}
    assert len(epochs) == 1
    got = {b.seq for b in blocks if b.epoch in epochs}
    still_here = {seq for seq, _, _ in left}
    for _, kind, data in left:  # an announcement not uploaded yet still counts as said
        if kind == BlockKind.EVENTS:
            events += decode_events(data)
    lost = _announced(events)
    assert not got & lost, "announced as lost, yet delivered"
    every = got | still_here | lost
    assert every == set(range(1, max(every) + 1)), "a seq is missing and was never announced"
    closed = next(line for line in agent.lines if line["event"] == "buffer_closed")
    assert sum(closed["evictions"].values()) == len(lost) > 0
    assert len(still_here) <= 1  # at most the block flushed on the way out


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n
