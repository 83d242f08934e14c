"""A writer killed with SIGKILL mid-stream loses nothing it had confirmed as committed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from agent.buffer.blocks import BlockKind, Catalog, CatalogEntry, decode_telemetry
from agent.buffer.buffer import Buffer
from agent.domain.clock import SystemClock
from agent.domain.samples import Sample

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Catalog(tuple(CatalogEntry(f"t{i}", "", "plc") for i in range(50)))

CHILD = """
import asyncio, sys
from pathlib import Path
from agent.domain.clock import SystemClock
from agent.service.logs import configure_logging
from agent.buffer.buffer import Buffer
from tests.integration.test_buffer_crash import CATALOG, samples

async def main(path: str) -> None:
    configure_logging("warning", stream=sys.stderr)
    buffer = await Buffer.open(Path(path), agent_id="crash", max_bytes=10**9, clock=SystemClock())
    print("epoch", buffer.epoch, flush=True)
    k, queued = 0, []
    while True:
        queued.append((await buffer.put_samples(samples(k), CATALOG), k))
        k += 1
        if k % 4 == 0:
            await buffer.flush()  # everything queued so far is committed now
            for seq, n in queued:
                print("committed", seq, n, flush=True)
            queued.clear()

asyncio.run(main(sys.argv[1]))
"""


def samples(k: int) -> list[Sample]:
    return [Sample(f"t{i % 50}", 1e9 + k + i / 1000, float(k * 1000 + i)) for i in range(400)]


async def test_sigkill_mid_stream_keeps_every_confirmed_block(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), cwd=ROOT, stdout=asyncio.subprocess.PIPE
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
