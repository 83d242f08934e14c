"""`freeze_startup` measures its collection on the injected clock, not the real one.

It freezes the whole process's collector, so it runs in a fresh Python process (never in
the pytest worker, whose collector other tests share). The clock there reads 0.25 s later
at every reading: the logged duration is exactly one step, whatever the collection took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = textwrap.dedent(
    """
    import json
    from structlog.testing import capture_logs
    from agent.service import memory

    class SteppingClock:
        '''Every reading of monotonic() is 0.25 s after the previous one.'''
        def __init__(self) -> None:
            self.t = 0.0
        def monotonic(self) -> float:
            self.t += 0.25
            return self.t
        def now(self) -> float:
            return 1_700_000_000.0 + self.t
        async def sleep(self, seconds: float) -> None:
            raise AssertionError("freeze_startup does not wait")

    with capture_logs() as logs:
        memory.freeze_startup(SteppingClock())
    print(json.dumps([e for e in logs if e["event"] == "gc_frozen"]))
    """
)


def test_the_collection_is_timed_on_the_injected_clock() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=50, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (event,) = json.loads(done.stdout)
    assert event["collect_ms"] == 250.0
    assert event["objects"] > 0
