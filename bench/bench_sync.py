"""Benchmark: draining a backlog to the reference receiver, and the cost of live upload.

    .venv/bin/python bench/bench_sync.py [--minutes 60] [--tags 10000] [--live-seconds 30]

1. Backlog: ``--minutes`` of ``--tags`` tags at 1 Hz (default: one hour of 10,000 tags, 36
   million samples, in 3,600 telemetry blocks of 10,000 samples) is put into a real buffer
   (SQLite, WAL, synchronous=FULL) while the receiver is away; then the receiver (FastAPI +
   uvicorn + its own SQLite, decoding every sample into a row) starts in a SUBPROCESS and the
   uploader drains the buffer. Printed: samples/s, the agent's CPU (this process: uploader,
   buffer writer thread, httpx) and the receiver's CPU, each with its target and ratio.
2. Live: ``--tags`` samples every second (the same plant, live) buffered and uploaded for
   ``--live-seconds``; printed: the agent's CPU share of one core for buffering + upload
   (sample objects are created before the measurement: they are the drivers' cost).

Targets: drain >= 500,000 samples/s; live buffering + upload <= 3 % of one core. Prints
figures; asserts nothing. With --minutes below 60 the drain figures are for that backlog
and the one-hour time is extrapolated (and said so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.config.settings import SyncSection
from agent.domain.clock import SystemClock
from agent.domain.samples import Sample
from agent.service.logs import configure_logging
from agent.sync.uploader import Uploader

AGENT = "bench-plant"
DRAIN_TARGET = 500_000.0  # samples/s
LIVE_TARGET = 0.03  # share of one core
T0 = 1_767_225_600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_rng = random.Random(7)
NOISE = [_rng.gauss(0.0, 0.4) for _ in range(10_007)]


def second(catalog: Catalog, t: float) -> list[Sample]:
    """One second of the plant: every tag once; a level per tag, a drift and sensor noise,
    kept to 2 decimals (what a PLC's REAL usually carries)."""
    s = int(t - T0)
    return [
        Sample(
            e.name,
            t,
            round(100.0 + i % 97 + s * 0.001 * (i % 7) + NOISE[(i * 31 + s * 17) % 10_007], 2),
        )
        for i, e in enumerate(catalog.entries)
    ]


@dataclass(frozen=True)
class Receiver:
    url: str
    pid: int


@contextlib.contextmanager
def receiver(data: Path) -> Iterator[Receiver]:
    """The reference receiver in a subprocess (``python -m agent.demo.cloud``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "agent.demo.cloud", "--port", str(port), "--data", str(data)]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", trust_env=False).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)
        yield Receiver(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


async def until_empty(buffer: Buffer) -> None:
    while buffer.budget().blocks_pending:  # noqa: ASYNC110 (polling the buffer's counters)
        await asyncio.sleep(0.05)


async def counts(url: str) -> dict[str, int]:
    """The receiver's counts; the read first decodes whatever is still pending."""
    async with httpx.AsyncClient(trust_env=False, timeout=None) as client:
        answer = await client.get(f"{url}/v1/agents/{AGENT}/counts")
        result: dict[str, int] = answer.raise_for_status().json()
        return result


async def fill(buffer: Buffer, catalog: Catalog, seconds: int) -> float:
    started = time.perf_counter()
    for s in range(seconds):
        await buffer.put_samples(second(catalog, T0 + s), catalog)
        if s % 600 == 599:
            print(f"  buffered {s + 1} s of data ({(s + 1) * len(catalog.entries):,} samples)")
    await buffer.flush()
    return time.perf_counter() - started


async def drain(args: argparse.Namespace, work: Path, catalog: Catalog) -> None:
    seconds, tags = int(args.minutes * 60), len(catalog.entries)
    total = seconds * tags
    clock = SystemClock()
    buffer = await Buffer.open(
        work / "backlog.db", agent_id=AGENT, max_bytes=20_000_000_000, clock=clock
    )
    print(f"building the backlog: {seconds} s x {tags} tags = {total:,} samples ...")
    built = await fill(buffer, catalog, seconds)
    budget = buffer.budget()
    print(
        f"  {budget.blocks_pending} blocks, {budget.bytes_used / 1e6:.1f} MB on disk "
        f"({budget.bytes_used / total:.2f} B/sample), built in {built:.1f} s"
    )
    with receiver(work / "cloud") as cloud:
        sync = SyncSection(url=cloud.url, timeout_s=60)
        up = Uploader(
            buffer, sync, agent_id=AGENT, token=None, clock=clock, base_dir=work,
            concurrency=args.concurrency,
        )  # fmt: skip
        cpu0, rcpu0, wall0 = time.process_time(), cpu_of(cloud.pid), time.perf_counter()
        task = asyncio.create_task(up.run())
        await until_empty(buffer)
        wall = time.perf_counter() - wall0
        cpu, rcpu = time.process_time() - cpu0, cpu_of(cloud.pid) - rcpu0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        held = await counts(cloud.url)
        decoded_after = time.perf_counter() - wall0
        rcpu_all = cpu_of(cloud.pid) - rcpu0
    await buffer.close()
    stats = up.stats()
    rate = total / wall
    print(f"\nDRAIN ({args.minutes:g} min backlog, concurrency {args.concurrency})")
    print(f"  receiver holds {held['samples']:,} of {total:,} samples as rows, "
          f"{stats.retries} retries, {stats.duplicates} duplicates")  # fmt: skip
    print(f"  wall {wall:.1f} s; {stats.bytes_sent / wall / 1e6:.1f} MB/s on the wire")
    print(f"  drain rate      {rate:12,.0f} samples/s  target {DRAIN_TARGET:,.0f}  "
          f"ratio {rate / DRAIN_TARGET:.2f}")  # fmt: skip
    print(f"  agent CPU       {cpu:8.1f} s = {cpu / wall:.0%} of one core "
          f"({cpu / total * 1e9:.0f} ns/sample; one core could drain "
          f"{total / cpu:,.0f} samples/s)")  # fmt: skip
    print(f"  receiver CPU    {rcpu:8.1f} s = {rcpu / wall:.0%} of one core while draining "
          f"(storing the blocks durably, acknowledging)")  # fmt: skip
    print(
        f"  receiver decode: all {total:,} samples were SQLite rows {decoded_after:.1f} s "
        f"after the drain started ({total / decoded_after:,.0f} samples/s end to end;"
    )
    print(f"                   receiver CPU {rcpu_all:.1f} s in all, "
          f"{rcpu_all / total * 1e9:.0f} ns/sample)")  # fmt: skip
    if args.minutes < 60:
        print(f"  EXTRAPOLATED to one hour (36,000,000 samples at this rate): "
              f"{36e6 / rate:.0f} s")  # fmt: skip


async def live(args: argparse.Namespace, work: Path, catalog: Catalog) -> None:
    clock = SystemClock()
    prepared = [second(catalog, T0 + s) for s in range(args.live_seconds)]
    buffer = await Buffer.open(work / "live.db", agent_id=AGENT, max_bytes=10**9, clock=clock)
    with receiver(work / "cloud-live") as cloud:
        sync = SyncSection(url=cloud.url)
        up = Uploader(buffer, sync, agent_id=AGENT, token=None, clock=clock, base_dir=work)
        task = asyncio.create_task(up.run())
        await buffer.put_samples(prepared[0], catalog)  # catalog + warm-up
        await asyncio.sleep(1.0)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n, samples in enumerate(prepared[1:], start=1):
            await buffer.put_samples(samples, catalog)
            await asyncio.sleep(max(0.0, wall0 + n - time.perf_counter()))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        lag = up.progress().remaining_blocks
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await buffer.close()
    share = cpu / wall
    rate = (len(prepared) - 1) * len(catalog.entries) / wall
    print(f"\nLIVE ({len(catalog.entries):,} tags at 1 Hz for {wall:.0f} s: {rate:,.0f} samples/s)")
    print(f"  buffering + upload CPU {cpu:.2f} s = {share:.2%} of one core  "
          f"target {LIVE_TARGET:.0%}  ratio {share / LIVE_TARGET:.2f}")  # fmt: skip
    print(f"  blocks not yet acknowledged at the end: {lag}; last latency "
          f"{(up.stats().last_latency_s or 0) * 1000:.1f} ms")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--live-seconds", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-drain", action="store_true")
    args = parser.parse_args()
    configure_logging("warning")
    catalog = Catalog(
        tuple(CatalogEntry(f"Plant.Tag{i:05d}", "u", "plc") for i in range(args.tags))
    )
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        if not args.skip_drain:
            await drain(args, Path(tmp), catalog)
        await live(args, Path(tmp), catalog)


if __name__ == "__main__":
    asyncio.run(main())
