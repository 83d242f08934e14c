"""A buffer writer to be killed: `python -m tests.support.crash_writer PATH`.

Owns: the child process of the SIGKILL test (tests/integration/test_buffer_crash.py): it
opens a real Buffer at PATH, prints `epoch E`, then puts `samples(k)` for k = 0, 1, ... and
after every fourth put flushes and prints `committed SEQ K` for each block now committed;
it runs until killed. Also `CATALOG` and `samples`, which the test checks the file against.

Must not: print a block as committed before its flush returned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.domain.clock import SystemClock
from agent.domain.samples import Sample
from agent.service.logs import configure_logging

CATALOG = Catalog(tuple(CatalogEntry(f"t{i}", "", "plc") for i in range(50)))


def samples(k: int) -> list[Sample]:
    return [Sample(f"t{i % 50}", 1e9 + k + i / 1000, float(k * 1000 + i)) for i in range(400)]


def say(*words: object) -> None:
    """One line to the test, on stdout at once."""
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


async def main(path: str) -> None:
    configure_logging("warning", stream=sys.stderr)
    buffer = await Buffer.open(Path(path), agent_id="crash", max_bytes=10**9, clock=SystemClock())
    say("epoch", buffer.epoch)
    k, queued = 0, []
    while True:
        queued.append((await buffer.put_samples(samples(k), CATALOG), k))
        k += 1
        if k % 4 == 0:
            await buffer.flush()  # everything queued so far is committed now
            for seq, n in queued:
                say("committed", seq, n)
            queued.clear()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
