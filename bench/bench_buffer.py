"""Benchmark: the block format and the SQLite buffer (bytes per sample, CPU, RSS).

Prints, each with its target and the ratio to it:
  1. bytes per sample on disk for the simulated mill (agent.demo.mill.Mill at 10 Hz, all 34
     tags at their own update rates), lossless and with a per-tag resolution;
  2. the same for a synthetic 10,000-tag plant at 1 Hz (noisy analog, slow analog, counters,
     booleans, setpoints, one device Bad part of the time), lossless (analog values as PLC
     REAL, i.e. float32, and as float64) and with a resolution;
  3. buffering CPU at 10,000 samples/s: process CPU time (all threads: builder, encoder,
     writer thread, SQLite) per second of samples, the samples made beforehand;
  4. RSS while the backlog grows from 0 to 36 million samples (10,000 tags x 3600 s, nothing
     uploaded), sampled every 360 s of data.
Everything goes through the real path: BlockBuilder.add -> flush -> Buffer.put_samples ->
writer thread -> SQLite (WAL, synchronous=FULL) in a temporary directory, driven by a
FakeClock (one flush per simulated second). "On disk" is the database file after close
(WAL checkpointed) divided by the samples stored. This script prints; it asserts nothing.

    .venv/bin/python bench/bench_buffer.py [--quick] [--seconds 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.buffer.builder import BlockBuilder
from agent.demo.mill import Mill
from agent.demo.tags import ALL_TAGS
from agent.domain.clock import FakeClock
from agent.domain.samples import BAD, BAD_NO_COMMUNICATION, GOOD, GOOD_LOCAL_OVERRIDE, Sample
from agent.service.logs import configure_logging

TARGET_BYTES, STRETCH_BYTES, TARGET_CPU_PCT = 4.0, 1.5, 3.0
STATUS = {"Good": GOOD, "GoodLocalOverride": GOOD_LOCAL_OVERRIDE,
          "BadNoCommunication": BAD_NO_COMMUNICATION}  # fmt: skip
MAX_BYTES = 20_000_000_000  # no eviction while measuring

Batches = Iterator[list[list[Sample]]]  # per simulated second: the drivers' batches


def resolution_for(sigma: float) -> float | None:
    """The largest power of ten at most sigma/4 (quantisation noise <= 0.07 sigma)."""
    return 10.0 ** math.floor(math.log10(sigma / 4)) if sigma > 0 else None


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# -- the sources -----------------------------------------------------------------------------


def mill_catalog(lossy: bool) -> Catalog:
    return Catalog(
        tuple(
            CatalogEntry(
                t.name, t.unit, "mill_plc", resolution_for(t.noise_sigma) if lossy else None
            )
            for t in ALL_TAGS
        )
    )


def mill_seconds(seconds: int) -> Batches:
    """Every tag whose reading changed (source time or status) after each 0.1 s tick."""
    mill = Mill(seed=1)
    last: dict[str, tuple[float, str]] = {}
    for _ in range(seconds):
        second: list[list[Sample]] = []
        for _ in range(10):
            mill.step()
            batch = []
            for tag in ALL_TAGS:
                r = mill.read(tag.name)
                if last.get(tag.name) != (r.source_time, r.status):
                    last[tag.name] = (r.source_time, r.status)
                    batch.append(
                        Sample(tag.name, r.source_time, r.value, STATUS.get(r.status, BAD))
                    )
            second.append(batch)
        yield second


class Plant:
    """10,000 synthetic tags on 50 devices of 200, polled once a second."""

    DEVICES, PER_DEVICE = 50, 200

    def __init__(self, seed: int = 3, *, real: bool = True) -> None:
        rng = self.rng = np.random.default_rng(seed)
        n = self.DEVICES * self.PER_DEVICE
        self.names = [
            f"dev{d:02d}.tag{i:03d}" for d in range(self.DEVICES) for i in range(self.PER_DEVICE)
        ]
        # kinds: 0 noisy analog 35 %, 1 slow analog 30 %, 2 counter 10 %, 3 bool 20 %,
        # 4 setpoint 5 %
        self.kind = rng.choice(5, size=n, p=[0.35, 0.30, 0.10, 0.20, 0.05])
        self.level = np.exp(rng.uniform(np.log(1.0), np.log(5000.0), size=n))
        self.sigma = (
            np.where(self.kind == 0, 0.005, np.where(self.kind == 1, 0.0005, 0.0)) * self.level
        )
        self.state = self.level.copy()
        self.count = rng.integers(0, 10_000_000, size=n)
        self.rate = rng.uniform(0, 5, size=n)
        self.flag = rng.random(n) < 0.5
        self.real = real
        self.t0 = 1_767_225_600.0
        self.offset = rng.uniform(0, 0.9, size=self.DEVICES)

    def catalog(self, lossy: bool) -> Catalog:
        entries = []
        for name, kind, sigma, level in zip(
            self.names, self.kind, self.sigma, self.level, strict=True
        ):
            res = None
            if lossy and kind in (0, 1):
                res = resolution_for(float(sigma))
            elif lossy and kind == 4:
                res = resolution_for(float(level) * 1e-3)
            entries.append(CatalogEntry(name, "", name[:5], res))
        return Catalog(tuple(entries))

    def seconds(self, seconds: int) -> Batches:
        rng, kind, n = self.rng, self.kind, len(self.names)
        analog = (kind == 0) | (kind == 1)
        for k in range(seconds):
            drift = rng.standard_normal(n) * self.sigma * 0.2
            self.state += drift - 0.01 * (self.state - self.level)
            values = self.state + rng.standard_normal(n) * self.sigma
            if self.real:
                values = values.astype(np.float32).astype(np.float64)
            self.count += rng.poisson(self.rate)
            self.flag ^= rng.random(n) < 0.001
            setpoint_moves = (kind == 4) & (rng.random(n) < 0.002)
            self.level[setpoint_moves] *= 1.01
            vals: list[object] = values.tolist()
            counts, flags, levels = self.count.tolist(), self.flag.tolist(), self.level.tolist()
            for i in np.flatnonzero(~analog).tolist():
                kd = kind[i]
                vals[i] = counts[i] if kd == 2 else flags[i] if kd == 3 else round(levels[i], 2)
            second = []
            for d in range(self.DEVICES):
                t = self.t0 + k + float(self.offset[d]) + float(rng.uniform(0, 0.02))
                lo, hi = d * self.PER_DEVICE, (d + 1) * self.PER_DEVICE
                if d == 7 and 0.4 * seconds <= k < 0.5 * seconds:  # one device offline
                    second.append(
                        [
                            Sample(self.names[i], t, None, BAD_NO_COMMUNICATION)
                            for i in range(lo, hi)
                        ]
                    )
                else:
                    second.append([Sample(self.names[i], t, vals[i]) for i in range(lo, hi)])  # type: ignore[arg-type]
            yield second


# -- the measurement -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    samples: int
    blocks: int
    block_bytes: int  # sum of the blocks' sizes
    disk_bytes: int  # the database file after close, minus an empty store's file
    cpu_s: float


async def empty_store_bytes(folder: Path) -> int:
    path = folder / "empty.db"
    buffer = await Buffer.open(path, agent_id="bench", max_bytes=MAX_BYTES, clock=FakeClock())
    await buffer.close()
    return path.stat().st_size


async def store(
    folder: Path,
    catalog: Catalog,
    source: Batches | Sequence[list[list[Sample]]],
    *,
    flush_interval_s: float = 1.0,
    every: int = 0,
    probe: Callable[[int], None] | None = None,
) -> Stored:
    """Feed every second of ``source`` through builder and buffer, one flush per interval.
    ``probe(samples)`` runs every ``every`` seconds."""
    path = folder / "state.db"
    for leftover in folder.glob("state.db*"):  # noqa: ASYNC240 (a benchmark's setup)
        leftover.unlink()
    clock = FakeClock(now=1_767_225_600.0, settle=4)
    buffer = await Buffer.open(path, agent_id="bench", max_bytes=MAX_BYTES, clock=clock)
    builder = BlockBuilder(
        buffer, catalog, flush_interval_s=flush_interval_s, max_block_samples=1_000_000,
        clock=clock,
    )  # fmt: skip
    runner = asyncio.create_task(builder.run())
    samples = 0
    cpu = time.process_time()
    interval = round(flush_interval_s)
    for k, second in enumerate(source):
        for batch in second:
            builder.add(batch)
            samples += len(batch)
        await clock.advance(1.0)
        if (k + 1) % interval == 0:  # one block per interval, as in real time: let it land
            while builder.samples < samples:  # noqa: ASYNC110 (polling a counter)
                await asyncio.sleep(0)
            await buffer.flush()
        if probe is not None and every and (k + 1) % every == 0:
            probe(samples)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await buffer.flush()
    budget = buffer.budget()
    await buffer.close()
    cpu = time.process_time() - cpu
    assert budget.samples_pending == samples, (budget.samples_pending, samples)
    assert builder.blocks == math.ceil((k + 1) / interval), "one block per flush interval"
    with contextlib.closing(sqlite3.connect(path)) as db:
        blocks, block_bytes = db.execute("SELECT count(*), sum(size) FROM blocks").fetchone()
    empty = await empty_store_bytes(folder)
    return Stored(samples, blocks, block_bytes, path.stat().st_size - empty, cpu)


def line(label: str, value: float, unit: str, target: float, stretch: float | None = None) -> None:
    extra = f"; stretch {stretch:g}: ratio {value / stretch:.2f}" if stretch else ""
    ratio = f"target <= {target:g}: ratio {value / target:.2f}{extra}"
    print(f"  {label:<50} {value:6.2f} {unit:<9} {ratio}")


def per_sample(label: str, r: Stored) -> None:
    line(label, r.disk_bytes / r.samples, "B/sample", TARGET_BYTES, STRETCH_BYTES)
    print(
        f"  {'':<50} ({r.samples:,} samples in {r.blocks:,} blocks; the blocks alone: "
        f"{r.block_bytes / r.samples:.2f} B/sample, {r.block_bytes / r.blocks:,.0f} B/block)"
    )


async def bytes_per_sample(folder: Path, seconds: int) -> None:
    print(f"1. simulated mill, {seconds} s at 10 Hz (34 tags at their update rates)")
    for lossy, flush in ((False, 1.0), (True, 1.0), (False, 10.0), (True, 10.0)):
        r = await store(folder, mill_catalog(lossy), mill_seconds(seconds), flush_interval_s=flush)
        kind = "resolution 10^floor(log10(sigma/4))" if lossy else "lossless"
        per_sample(f"{kind}, flush_interval_s={flush:g}", r)
    print(f"2. synthetic 10,000-tag plant, {seconds} s at 1 Hz")
    for label, real, lossy, flush in (
        ("lossless, analog as float32 (PLC REAL)", True, False, 1.0),
        ("lossless, analog as float64", False, False, 1.0),
        ("resolution, analog as float64", False, True, 1.0),
        ("lossless, float32, flush_interval_s=10", True, False, 10.0),
        ("resolution, float64, flush_interval_s=10", False, True, 10.0),
    ):
        plant = Plant(real=real)
        r = await store(
            folder, plant.catalog(lossy), plant.seconds(seconds), flush_interval_s=flush
        )
        per_sample(label, r)


async def cpu(folder: Path, seconds: int) -> None:
    plant = Plant(real=True)
    data = list(plant.seconds(seconds))
    r = await store(folder, plant.catalog(False), data)
    print(f"3. buffering CPU at {r.samples / seconds:,.0f} samples/s over {seconds} s of samples")
    line("process CPU per second of samples (% of a core)", r.cpu_s / seconds * 100, "%",
         TARGET_CPU_PCT)  # fmt: skip
    print("     (the target covers buffering and upload together; this is buffering alone)")


async def rss(folder: Path, seconds: int) -> None:
    plant = Plant(real=True)
    rows: list[tuple[int, float]] = []
    start = rss_mb()
    every = max(1, seconds // 10)
    r = await store(folder, plant.catalog(False), plant.seconds(seconds), every=every,
                    probe=lambda samples: rows.append((samples, rss_mb())))  # fmt: skip
    print(
        f"4. RSS while the backlog grows to {r.samples / 1e6:.0f} M samples "
        f"({r.disk_bytes / 1e6:.0f} MB on disk, nothing uploaded)"
    )
    print(f"     before: {start:.0f} MB; " + ", ".join(f"{s / 1e6:.1f}M: {m:.0f}" for s, m in rows))
    first, last = rows[0][1], rows[-1][1]
    print(
        f"  RSS from {rows[0][0] / 1e6:.1f} M to {r.samples / 1e6:.0f} M samples: "
        f"{last - first:+.1f} MB, ratio {last / first:.3f} (target: independent of the "
        "backlog, 1.00)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (60 s, RSS to 3.6 M)")
    parser.add_argument("--seconds", type=int, default=600, help="seconds of data for 1 and 2")
    parser.add_argument(
        "--keep", type=Path, help="work in this directory instead of a temporary one"
    )
    args = parser.parse_args()
    configure_logging("warning")
    seconds = 60 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder = Path(tmp)
        await bytes_per_sample(folder, seconds)
        await cpu(folder, 60)
        await rss(folder, 360 if args.quick else 3600)


if __name__ == "__main__":
    asyncio.run(main())
