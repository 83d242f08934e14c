"""The OPC UA driver against real faults of a server running in another process.

The server is tests.support.opcua_line_server in a process of its own: an asyncua server
that registers EXTRA filler namespaces before its own (so its namespace index moves when
EXTRA changes) and publishes `GEN * 1e6 + n` to five variables every 50 ms. Faults are done to that process by its PID: terminate and start again with other
namespace indexes (a PLC program download), and SIGSTOP / SIGCONT (a hung server: the TCP
connection stays open, the subscription goes silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.config.settings import OpcUaSource, Tag
from agent.domain.backoff import Backoff
from agent.domain.clock import SystemClock
from agent.domain.samples import BAD_NODE_ID_UNKNOWN, Quality, Sample
from agent.service.supervisor import Supervisor
from drivers.opcua import OpcUaDriver
from tests.support.opcua_line_server import NS, ServerProcess
from tests.support.ports import free_port
from tests.support.wait import until

ROOT = Path(__file__).resolve().parents[2]
BACKOFF = Backoff(initial_s=0.1, max_s=0.4, jitter=0.2)
WAIT_S = 120.0  # the limit of any wait for progress (a busy 2-core machine: be generous)


@contextlib.asynccontextmanager
async def supervised(driver: OpcUaDriver, sink: Callable[[Sequence[Sample]], None]
                     ) -> AsyncIterator[Supervisor]:  # fmt: skip
    supervisor = Supervisor(SystemClock(), backoff=BACKOFF, healthy_after_s=60)
    supervisor.add("opcua:line", lambda: driver.run(sink))
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def source(port: int, **fields: Any) -> OpcUaSource:
    values: dict[str, Any] = {"kind": "opcua", "name": "line",
                              "endpoint": f"opc.tcp://127.0.0.1:{port}/",
                              "security_policy": "None", "security_mode": "None",
                              "publishing_interval_s": 0.1, "sampling_interval_s": 0.05,
                              **fields}  # fmt: skip
    return OpcUaSource(**values)


TAGS = [
    *(Tag(name=f"V{i}", source="line", address=f"nsu={NS};s=Line/V{i}") for i in range(3)),
    Tag(name="ByPath", source="line", address=f"nsu={NS};path=/Line/V3"),
    Tag(name="ByIndex", source="line", address="ns=2;s=Line/V4"),  # breaks on renumbering
]


def from_generation(samples: Sequence[Sample], name: str, generation: int) -> bool:
    return any(
        s.tag == name and s.quality is Quality.GOOD and int(s.value or 0) // 1_000_000 == generation
        for s in samples
    )


async def test_renumbered_namespaces_still_resolve_by_uri(tmp_path: Path) -> None:
    port, samples = free_port(), list[Sample]()
    driver = OpcUaDriver(source(port, timeout_s=2.0), TAGS, state_dir=tmp_path, agent_id="t",
                         password=None, clock=SystemClock())  # fmt: skip
    renumbered = await ServerProcess.prepare(port, 3, 2, tmp_path / "server2.log")  # ns=5
    server = await ServerProcess.start(port, 0, 1, tmp_path / "server.log")  # ours: ns=2
    try:
        async with supervised(driver, samples.extend):
            names = [t.name for t in TAGS]
            await until(lambda: all(from_generation(samples, n, 1) for n in names), "gen 1", WAIT_S)
            await server.stop()
            server = await renumbered.serve()
            seen = len(samples)
            await until(lambda: all(from_generation(samples[seen:], n, 2) for n in names[:4]),
                        "gen 2 through nsu= ids and the browse path", WAIT_S)  # fmt: skip
            after = samples[seen:]
            assert not any(s.status == BAD_NODE_ID_UNKNOWN for s in after if s.tag != "ByIndex")
            assert any(s.tag == "ByIndex" and s.status == BAD_NODE_ID_UNKNOWN for s in after)
    finally:
        await server.stop()
        await renumbered.stop()
    assert driver.counters.reconnects >= 1 and driver.counters.dropped == 0


async def test_a_silent_subscription_trips_the_watchdog(tmp_path: Path) -> None:
    port, samples = free_port(), list[Sample]()
    # asyncua's own health probe runs every timeout_s (3 s); the watchdog: 5 x 0.1 s
    src = source(port, timeout_s=3.0, watchdog_intervals=5)
    driver = OpcUaDriver(src, TAGS[:2], state_dir=tmp_path, agent_id="t", password=None,
                         clock=SystemClock())  # fmt: skip
    server = await ServerProcess.start(port, 0, 1, tmp_path / "server.log")
    try:
        async with supervised(driver, samples.extend) as supervisor:
            await until(lambda: from_generation(samples, "V0", 1), "first data", WAIT_S)
            # A while of data (20 more notifications, however long they take): data in every
            # interval, so no keep-alive was needed.
            flowing = driver.counters.notifications_received + 20
            await until(
                lambda: driver.counters.notifications_received >= flowing, "data flows", WAIT_S
            )
            assert driver.counters.keepalives == 0
            trips, restarts = driver.counters.watchdog_trips, supervisor.snapshot()[0].restarts
            server.signal(signal.SIGSTOP)
            # Our watchdog trips and ends the session (asyncua's own health probe would end
            # it with another error, and only after its 3 s timeout).
            await until(lambda: driver.counters.watchdog_trips > trips, "watchdog trip", WAIT_S)
            await until(lambda: supervisor.snapshot()[0].restarts > restarts, "restart", WAIT_S)
            assert "watchdog" in (supervisor.snapshot()[0].last_error or "")
            server.signal(signal.SIGCONT)
            seen = len(samples)
            await until(lambda: from_generation(samples[seen:], "V0", 1), "data resumes", WAIT_S)
    finally:
        await server.stop()
    assert driver.counters.reconnects >= 1


# -- the server process --------------------------------------------------------------------
