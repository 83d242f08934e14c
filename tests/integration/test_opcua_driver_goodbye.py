"""A normal OPC UA server restart, from a server that says goodbye: one WARNING, no traceback.

The server is an in-process asyncua server restarted on the same port; the driver reaches it
through `GoodbyeProxy`, which makes the restart look on the wire like one of a server that
is not asyncua (open62541, a PLC): an ERR message (BadShutdown, BadServerHalted) or a
ServiceFault answering the pending Publish (BadSessionClosed, BadShutdown) before the
connection closes. asyncua 2.1 logs those as ERRORs ("Publish iteration crashed" with a
traceback, "Got error status from server", a CRITICAL "Received an error"); the agent's
only line must be the supervisor's one WARNING, and data must resume after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from asyncua import ua
from asyncua.server.server import Server
from structlog.testing import capture_logs

from agent.config.settings import OpcUaSource, Tag
from agent.domain.backoff import Backoff
from agent.domain.clock import SystemClock
from agent.domain.samples import BAD_NO_COMMUNICATION, Quality, Sample
from agent.service.supervisor import Supervisor
from drivers.opcua import OpcUaDriver
from tests.support.opcua_goodbye import Goodbye, GoodbyeProxy
from tests.support.ports import free_port
from tests.support.wait import until

NS = "urn:edge-agent:test:goodbye"
BAD_SERVER_HALTED = 0x800E0000
BAD_SESSION_CLOSED = 0x80260000


async def start_server(port: int, generation: float) -> Server:
    """An asyncua server on `port` whose one variable holds `generation`."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS)
    node_id = ua.NodeId(cast(Any, "Line/V"), cast(Any, idx))
    await server.nodes.objects.add_variable(node_id, ua.QualifiedName("V", idx), generation)
    await server.start()
    return server


@contextlib.asynccontextmanager
async def supervised(driver: OpcUaDriver, samples: list[Sample]) -> AsyncIterator[None]:
    supervisor = Supervisor(
        SystemClock(), backoff=Backoff(initial_s=0.1, max_s=0.4, jitter=0.2), healthy_after_s=60
    )
    supervisor.add("opcua:line", lambda: driver.run(samples.extend))
    task = asyncio.create_task(supervisor.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def good(samples: list[Sample], generation: float) -> bool:
    return any(s.quality is Quality.GOOD and s.value == generation for s in samples)


@pytest.mark.timeout(120)  # two asyncua servers start (seconds each on a busy machine)
@pytest.mark.parametrize(
    ("kind", "status"),
    [("err", BAD_SERVER_HALTED), ("service_fault", BAD_SESSION_CLOSED)],
    ids=["err_bad_server_halted", "service_fault_bad_session_closed"],
)
async def test_a_restart_is_one_warning_without_traceback(
    kind: Goodbye, status: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, samples = free_port(), list[Sample]()
    server = await start_server(port, 1.0)
    try:
        async with GoodbyeProxy(port, kind, status) as proxy:
            source = OpcUaSource(
                kind="opcua", name="line", endpoint=f"opc.tcp://127.0.0.1:{proxy.port}/",
                security_policy="None", security_mode="None", publishing_interval_s=0.1,
                sampling_interval_s=0.05, timeout_s=2.0,
            )  # fmt: skip
            tags = [Tag(name="V", source="line", address=f"nsu={NS};s=Line/V")]
            driver = OpcUaDriver(source, tags, state_dir=tmp_path, agent_id="t", password=None,
                                 clock=SystemClock())  # fmt: skip
            with capture_logs() as events:
                async with supervised(driver, samples):
                    await until(lambda: good(samples, 1.0), "data from the first server")
                    caplog.clear()
                    await server.stop()
                    await until(lambda: proxy.goodbyes == 1, "the goodbye")
                    await until(
                        lambda: any(s.status == BAD_NO_COMMUNICATION for s in samples),
                        "the tag marked Bad_NoCommunication",
                    )
                    server = await start_server(port, 2.0)
                    await until(lambda: good(samples, 2.0), "data from the restarted server")
    finally:
        await server.stop()
    assert driver.counters.reconnects >= 1
    client_side = [r for r in caplog.records if not r.name.startswith("asyncua.server")]
    assert [r.getMessage() for r in client_side if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in client_side if r.exc_info] == []
    loud = [e for e in events if e["log_level"] in ("warning", "error", "critical")]
    assert [e["event"] for e in loud] == ["task_failed"], loud
