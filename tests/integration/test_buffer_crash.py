"""A writer killed with SIGKILL mid-stream loses nothing it had confirmed as committed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from agent.buffer.blocks import BlockKind, decode_telemetry
from agent.buffer.buffer import Buffer
from agent.domain.clock import SystemClock
from tests.support.crash_writer import CATALOG, samples

ROOT = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "tests.support.crash_writer"]  # puts and flushes until killed


async def test_sigkill_mid_stream_keeps_every_confirmed_block(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    child = await asyncio.create_subprocess_exec(
        *CHILD, str(path), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    confirmed: dict[int, int] = {}
    epoch = ""
    try:
        while len(confirmed) < 60:
            line = (await asyncio.wait_for(child.stdout.readline(), 120)).decode().split()
            assert line, "the child ended early"
            if line[0] == "epoch":
                epoch = line[1]
            else:
                confirmed[int(line[1])] = int(line[2])
        os.kill(child.pid, signal.SIGKILL)  # mid-stream: it keeps putting between flushes
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    buffer = await Buffer.open(path, agent_id="crash", max_bytes=10**9, clock=SystemClock())
    try:
        assert buffer.epoch == epoch and buffer.recovered_from is None
        stored = {
            b.seq: b
            for b in await buffer.pending(limit=10_000, newest_first=False)
            if b.kind is BlockKind.TELEMETRY
        }
        for seq, k in confirmed.items():
            assert seq in stored, f"confirmed block {seq} is missing"
            assert decode_telemetry(stored[seq].data, CATALOG) == samples(k)
        newest = max(stored)
        assert await buffer.put_samples(samples(0), CATALOG) > newest + 1  # after a catalog
    finally:
        await buffer.close()
