"""The composition root freezes what start-up built FREEZE_AFTER_S later on the injected clock.

A FakeClock drives it: the freeze happens within the `advance` that moves the clock past the
30 s, and not a moment before, whatever the real time (before, a real-time `call_later` did it, so a
FakeClock never saw it and a test waited 30 real seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from pathlib import Path

from structlog.testing import capture_logs

from agent.config.loader import load_config
from agent.domain.clock import FakeClock
from agent.service.app import App
from agent.service.memory import FREEZE_AFTER_S
from tests.support.config import agent_config, modbus_source
from tests.support.ports import free_port
from tests.support.wait import until


async def test_the_startup_freeze_waits_on_the_injected_clock(tmp_path: Path) -> None:
    tag = {"name": "Level", "source": "feeders", "address": "holding:1", "type": "int16"}
    config = agent_config(
        "freeze-1",
        sources=[modbus_source(free_port())],  # nobody listens: the source just retries
        tags=[tag],
        sync={"enabled": False},
        api={"enabled": False},
    ).write(tmp_path / "agent.toml")
    (tmp_path / "state").mkdir()
    clock = FakeClock(now=1_700_000_000.0)
    app = App(load_config(config), tmp_path / "state", clock=clock)
    with capture_logs() as logs:

        def frozen() -> list[object]:
            return [e for e in logs if e["event"] == "gc_frozen"]

        task = asyncio.create_task(app.run())
        try:
            await until(lambda: task.done() or any(e["event"] == "agent_started" for e in logs),
                        "the agent started")  # fmt: skip
            assert not task.done()
            await clock.advance(FREEZE_AFTER_S - 1.0)
            assert frozen() == []  # not before its time
            await clock.advance(1.0)  # wakes the sleeper and lets it run: no real time passes
            assert len(frozen()) == 1
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            gc.unfreeze()
