"""The OPC UA driver against the simulated PLC (a real asyncua server on 127.0.0.1).

One plant per module (conftest's `sim_plant`, 10x time scale). The driver runs as the
agent runs it: `run()` is one session; the restart test puts it under the real Supervisor
with the SystemClock and a small Backoff. The server_down test runs last (it restarts the
listener).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from agent.config.settings import OpcUaSource, Tag
from agent.demo.runner import SimulatedPlant
from agent.demo.tags import NAMESPACE_URI
from agent.domain.backoff import Backoff
from agent.domain.clock import SystemClock
from agent.domain.errors import ConnectionLostError, WriteRejectedError
from agent.domain.samples import (
    BAD_NO_COMMUNICATION,
    BAD_NODE_ID_UNKNOWN,
    DriverState,
    Quality,
    Sample,
)
from agent.service.supervisor import Supervisor
from drivers.opcua import OpcUaDriver, read_once
from drivers.opcua_browse import browse, render_tree
from drivers.opcua_values import status_name
from tests.support.wait import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

NSU = f"nsu={NAMESPACE_URI};s=Plant/Mill1/"
WAIT_S = 60.0  # the limit of a polled wait: generous, a busy 2-core machine only slows it
WRITABLE = {"FeedRateSetpoint", "SeparatorSpeedSetpoint", "Heartbeat", "FanSpeedSetpoint"}


def source(url: str, **overrides: Any) -> OpcUaSource:
    fields: dict[str, Any] = {
        "kind": "opcua",
        "name": "mill",
        "endpoint": url,
        "security_policy": "None",
        "security_mode": "None",
        "publishing_interval_s": 0.1,
        "sampling_interval_s": 0.05,
        "timeout_s": 2.0,
        **overrides,
    }
    return OpcUaSource(**fields)


def tag(name: str, address: str | None = None, **fields: Any) -> Tag:
    return Tag(name=name, source="mill", address=address or NSU + name, **fields)


TAGS = [
    tag("FeedRate"),
    tag("MillPower"),
    tag("Vibration", f"nsu={NAMESPACE_URI};path=/Plant/Mill1/Vibration"),
    tag("RemoteActive"),
    tag("FeedRateSetpoint", writable=True),
    tag("SeparatorSpeedSetpoint", writable=True),
    tag("Heartbeat", writable=True),
    tag("HeartbeatEcho"),
    tag("Missing", NSU + "NoSuchTag"),
]


class Sink:
    """Collects every batch the driver emits."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def __call__(self, batch: Sequence[Sample]) -> None:
        self.samples.extend(batch)

    def of(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.tag == name]


class Running:
    """A driver whose `run()` is a task of the test."""

    def __init__(self, driver: OpcUaDriver) -> None:
        self.driver, self.sink = driver, Sink()
        self.task = asyncio.create_task(driver.run(self.sink))

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest_asyncio.fixture(loop_scope="module")
async def running(sim: SimulatedPlant, tmp_path: Path) -> AsyncIterator[Running]:
    driver = OpcUaDriver(source(sim.opcua_url), TAGS, state_dir=tmp_path, agent_id="t",
                         password=None, clock=SystemClock())  # fmt: skip
    run = Running(driver)
    await until(lambda: driver.state is DriverState.CONNECTED, "connected")
    yield run
    await run.stop()


async def test_subscription_delivers_every_tag_with_status_and_timestamps(
    running: Running,
) -> None:
    sink, driver = running.sink, running.driver
    await until(lambda: len(sink.of("FeedRate")) >= 5, "FeedRate changes")
    feed = sink.of("FeedRate")
    assert all(s.quality is Quality.GOOD and isinstance(s.value, float) for s in feed)
    # wall-clock seconds (not sim time, not milliseconds): the sim lags a busy machine a bit
    assert all(s.server_time is not None and abs(s.source_time - time.time()) < 60 for s in feed)
    stamps = [s.source_time for s in feed]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert sink.of("Vibration"), "the browse-path tag resolves"
    assert sink.of("RemoteActive")[0].value is True
    (missing,) = sink.of("Missing")  # one Bad sample per session, not a dead driver
    assert missing.status == BAD_NODE_ID_UNKNOWN and missing.value is None
    counters = driver.counters
    assert counters.dropped == 0 and counters.unresolved_tags == 1
    assert counters.samples_emitted == counters.notifications_received > 0
    assert counters.last_subscribe_s is not None


@pytest.mark.parametrize(("kind", "name", "params", "expected"), [
    ("bad", "MillPower", {}, "BadSensorFailure"),
    ("uncertain", "Vibration", {"code": "UncertainLastUsableValue"}, "UncertainLastUsableValue"),
    ("local_override", "FeedRate", {}, "GoodLocalOverride"),
])  # fmt: skip
async def test_status_codes_of_faults_become_quality(
    running: Running, sim: SimulatedPlant, kind: str, name: str, params: dict[str, str],
    expected: str,
) -> None:  # fmt: skip
    quality = {"B": Quality.BAD, "U": Quality.UNCERTAIN, "G": Quality.GOOD}[expected[0]]
    sim.mill.inject(kind, name, **params)
    await until(
        lambda: any(status_name(s.status) == expected for s in running.sink.of(name)), expected
    )
    sample = next(s for s in running.sink.of(name) if status_name(s.status) == expected)
    assert sample.quality is quality
    assert (sample.value is None) == (quality is Quality.BAD)  # a Bad sample is never a 0


async def test_setpoint_write_reaches_the_mill(
    running: Running, sim: SimulatedPlant, heartbeat: Callable[[], Awaitable[None]]
) -> None:
    target = float(sim.mill.read("SeparatorSpeedSetpoint").value or 950.0) + 5.0
    result = await running.driver.write("SeparatorSpeedSetpoint", target)
    assert (result.status, result.raw) == (0, target)
    assert sim.mill.read("SeparatorSpeedSetpoint").value == target
    await until(
        lambda: any(s.value == target for s in running.sink.of("SeparatorSpeedSetpoint")),
        "the new setpoint is published back",
    )


async def test_heartbeat_is_coerced_to_int32(running: Running, sim: SimulatedPlant) -> None:
    result = await running.driver.write("Heartbeat", 4242.0)  # a float: the node is Int32
    assert result.raw == 4242 and type(result.raw) is int
    assert sim.mill.read("Heartbeat").value == 4242
    with pytest.raises(WriteRejectedError, match="whole number"):
        await running.driver.write("Heartbeat", 1.5)


async def test_writes_the_plc_refuses_are_rejected(
    running: Running, sim: SimulatedPlant, heartbeat: Callable[[], Awaitable[None]]
) -> None:
    before = sim.mill.read("FeedRateSetpoint").value
    with pytest.raises(WriteRejectedError, match=r"FeedRateSetpoint.*BadOutOfRange"):
        await running.driver.write("FeedRateSetpoint", 400.0)  # PLC clamp: 0..300
    sim.mill.inject("plc_reject_writes", code="BadUserAccessDenied")
    with pytest.raises(WriteRejectedError, match="not writable"):
        await running.driver.write("FeedRateSetpoint", 181.0)
    assert sim.mill.read("FeedRateSetpoint").value == before


async def test_a_read_only_node_is_not_writable(tmp_path: Path, sim: SimulatedPlant) -> None:
    claims_writable = [tag("FeedRate", writable=True), tag("RemoteActive")]
    driver = OpcUaDriver(source(sim.opcua_url), claims_writable, state_dir=tmp_path,
                         agent_id="t", password=None, clock=SystemClock())  # fmt: skip
    with pytest.raises(ConnectionLostError, match="not connected"):
        await driver.write("FeedRate", 1.0)
    run = Running(driver)
    await until(lambda: driver.state is DriverState.CONNECTED, "connected")
    with pytest.raises(WriteRejectedError, match=r"not writable on the server.*BadNotWritable"):
        await driver.write("FeedRate", 1.0)
    with pytest.raises(WriteRejectedError, match="writable = false"):
        await driver.write("RemoteActive", False)  # refused before the wire: config says no
    await run.stop()
    assert {s.status for s in run.sink.samples[-2:]} == {BAD_NO_COMMUNICATION}


async def test_poll_acquisition_and_unresolved_tags_are_named(
    tmp_path: Path, sim: SimulatedPlant
) -> None:
    polled = source(sim.opcua_url, acquisition="poll", poll_interval_s=0.1)
    tags = [tag("FeedRate"), tag("Missing", NSU + "Nope"), tag("Elsewhere", "nsu=urn:x;i=5")]
    driver = OpcUaDriver(polled, tags, state_dir=tmp_path, agent_id="t", password=None,
                         clock=SystemClock())  # fmt: skip
    with capture_logs() as logs:
        run = Running(driver)
        await until(lambda: driver.counters.polls >= 3, "three polls")
        await run.stop()
    warning = next(e for e in logs if e["event"] == "opcua_tags_unresolved")
    assert warning["log_level"] == "warning" and set(warning["tags"]) == {"Missing", "Elsewhere"}
    assert "urn:x" in warning["tags"]["Elsewhere"]
    feed = [s for s in run.sink.of("FeedRate") if s.quality is Quality.GOOD]
    assert len(feed) >= 3
    assert {s.status for s in run.sink.of("Missing")} >= {BAD_NODE_ID_UNKNOWN}


async def test_read_once_and_browse(sim: SimulatedPlant, tmp_path: Path) -> None:
    samples = await read_once(source(sim.opcua_url), TAGS[:4], state_dir=tmp_path,
                              agent_id="t", password=None)  # fmt: skip
    assert [s.tag for s in samples] == [t.name for t in TAGS[:4]]
    assert all(s.quality is Quality.GOOD for s in samples)
    rows = await browse(sim.opcua_url, depth=3, state_dir=tmp_path, agent_id="t")
    by_name = {row.browse_name: row for row in rows}
    feed = by_name["FeedRateSetpoint"]
    assert (feed.depth, feed.node_class, feed.data_type, feed.access) == (
        3, "Variable", "Double", "read/write")  # fmt: skip
    assert feed.node_id == NSU + "FeedRateSetpoint"
    assert feed.path == f"nsu={NAMESPACE_URI};path=/Plant/Mill1/FeedRateSetpoint"
    assert by_name["HeartbeatEcho"].data_type == "Int32" and by_name["Mill1"].depth == 2
    assert "Server" not in by_name  # namespace 0 is skipped
    via_path = await read_once(source(sim.opcua_url), [tag("X", feed.path)],
                               state_dir=tmp_path, agent_id="t", password=None)  # fmt: skip
    assert via_path[0].quality is Quality.GOOD
    tree = render_tree(rows).splitlines()
    assert tree[0].startswith("Plant  [Object]") and tree[1].startswith("  Mill1")


async def test_a_quiet_subscription_is_kept_alive_by_keep_alives(
    tmp_path: Path, sim: SimulatedPlant
) -> None:
    quiet = [tag("RemoteEnable"), tag("Running")]  # booleans that do not change
    src = source(sim.opcua_url, watchdog_intervals=4)  # keep-alive every interval, trip at 4
    driver = OpcUaDriver(src, quiet, state_dir=tmp_path, agent_id="t", password=None,
                         clock=SystemClock())  # fmt: skip
    run = Running(driver)
    await until(lambda: driver.counters.keepalives >= 8, "keep-alives")
    assert driver.state is DriverState.CONNECTED and driver.counters.watchdog_trips == 0
    assert len(run.sink.samples) == 2  # the initial values, then silence
    await run.stop()


async def test_server_restart_resumes_within_the_backoff_without_duplicates(
    sim: SimulatedPlant, tmp_path: Path
) -> None:
    backoff = Backoff(initial_s=0.1, max_s=0.4, jitter=0.2)
    driver = OpcUaDriver(source(sim.opcua_url, timeout_s=1.0), TAGS[:2], state_dir=tmp_path,
                         agent_id="t", password=None, clock=SystemClock())  # fmt: skip
    sink = Sink()
    supervisor = Supervisor(SystemClock(), backoff=backoff, healthy_after_s=60)
    supervisor.add("opcua:mill", lambda: driver.run(sink))
    task = asyncio.create_task(supervisor.run())
    try:
        await until(lambda: len(sink.of("FeedRate")) >= 2, "first data")
        sim.mill.inject("server_down", duration_s=1e9)  # down until cleared below
        await until(lambda: not sim.opcua.serving, "server went down")
        await until(lambda: sink.of("FeedRate")[-1].status == BAD_NO_COMMUNICATION, "loss seen")
        sim.mill.clear("server_down")
        await until(lambda: sim.opcua.serving, "server came back")
        seen = len(sink.samples)
        # the next attempt within the backoff's 0.5 s (not the default's minutes), + connect,
        # resolve, subscribe and publish, which a busy machine may slow down to seconds
        await until(
            lambda: any(s.quality is Quality.GOOD for s in sink.samples[seen:]),
            "data resumes within the backoff",
            backoff.max_s * (1 + backoff.jitter) + 20.0,
        )
        # between the loss and the comeback the tags were marked, never silently stale
        assert any(s.status == BAD_NO_COMMUNICATION for s in sink.samples[:seen])
        server = sim.opcua._server
        assert server is not None
        assert len(server.iserver.subscription_service.subscriptions) == 1  # no duplicate
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    counters = driver.counters
    assert counters.reconnects >= 1 and counters.dropped == 0
    assert len(server.iserver.subscription_service.subscriptions) == 0  # ours closed on exit
