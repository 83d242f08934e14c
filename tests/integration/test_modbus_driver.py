"""The Modbus driver against real pymodbus servers on 127.0.0.1 (and a pty pair for RTU).

Peers: the simulator's `MillModbusServer` (feeders = unit 1, packer = unit 2; stepped by hand
here, so values hold still while a test compares them), and ad-hoc pymodbus servers whose
units can be *muted* (requests dropped unanswered, like a dead device behind a gateway).
Expected values come from the simulated devices and the mill, or from a plain pymodbus
client decoding with pymodbus' own converter: never from the driver's codec.
Real time (`SystemClock`) throughout, with short poll intervals and timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import time
import tty
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from structlog.testing import capture_logs

from agent.config.settings import ModbusSource, Tag
from agent.demo.mill import Mill
from agent.demo.modbus_server import BAG_COUNT_START, MillModbusServer
from agent.demo.register_map import FEEDERS_UNIT, PACKER_UNIT, POINTS, Point, PointType, point
from agent.domain.backoff import Backoff
from agent.domain.clock import FakeClock, SystemClock
from agent.domain.errors import ConnectionLostError, DeviceTimeoutError, WriteRejectedError
from agent.domain.samples import (
    BAD,
    BAD_DEVICE_FAILURE,
    BAD_NO_COMMUNICATION,
    GOOD,
    DriverState,
    Sample,
)
from agent.service.supervisor import Supervisor
from drivers.modbus import ModbusDriver

DT = AsyncModbusTcpClient.DATATYPE
CLOCK = SystemClock()
WAIT_S = 60.0  # the limit of a wait for a condition (polled): generous for a busy machine
IN_FLIGHT_S = 10 * WAIT_S  # a request timeout no wait reaches: what ends within a wait is not it


# -- helpers ---------------------------------------------------------------------------------


class Sink:
    """The driver's emit: keeps every batch, and waits for conditions on them."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    def __call__(self, batch: Sequence[Sample]) -> None:
        self.batches.append(list(batch))

    def of(self, tag: str) -> list[Sample]:
        return [s for batch in self.batches for s in batch if s.tag == tag]

    def last(self, tag: str) -> Sample | None:
        samples = self.of(tag)
        return samples[-1] if samples else None

    def status(self, tag: str) -> int | None:
        last = self.last(tag)
        return None if last is None else last.status

    def value(self, tag: str) -> Any:
        last = self.last(tag)
        return None if last is None else last.value

    def latest(self) -> dict[str, Sample]:
        return {s.tag: s for batch in self.batches for s in batch}

    def good_values(self) -> dict[str, Any]:
        """Each tag's last Good value (the driver marks everything Bad when it stops)."""
        return {s.tag: s.value for batch in self.batches for s in batch if s.status == GOOD}

    def clear(self) -> None:
        self.batches.clear()

    async def until(self, check: Callable[[], bool], within: float = WAIT_S) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within} s; last: {self.latest()}")
            await asyncio.sleep(0.01)

    async def good(self, *tags: str, within: float = WAIT_S) -> None:
        """Until every tag's latest sample is Good."""

        def all_good() -> bool:
            latest = self.latest()
            return all(t in latest and latest[t].status == GOOD for t in tags)

        await self.until(all_good, within)


def tag(name: str, address: str, type_: str | None = None, unit: int = 1, **extra: Any) -> Tag:
    return Tag.model_validate(
        {"name": name, "source": "plc", "address": address, "type": type_, "unit_id": unit} | extra
    )


def source(port: int, **extra: Any) -> ModbusSource:
    settings = {
        "kind": "modbus",
        "name": "plc",
        "host": "127.0.0.1",
        "port": port,
        "poll_interval_s": 0.05,
        "timeout_s": 0.25,
        "retries": 0,
    }
    return ModbusSource.model_validate(settings | extra)


def driver(src: ModbusSource, tags: Sequence[Tag], **backoff: float) -> ModbusDriver:
    policy = Backoff(**({"initial_s": 0.3, "max_s": 0.6, "jitter": 0.0} | backoff))
    return ModbusDriver(src, tags, clock=CLOCK, backoff=policy, rand=lambda: 0.5)


@contextlib.asynccontextmanager
async def running(drv: ModbusDriver, sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    """Run `drv.run(sink)` for the block; cancelling it at the end must propagate."""
    task = asyncio.create_task(drv.run(sink))
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def in_flight_to(server: AdHocServer, unit: int, sink: Sink) -> None:
    """Mute `unit` and wait until a request to it has reached the server (unanswered)."""
    seen = len(server.requests)
    server.muted.add(unit)
    await sink.until(lambda: any(u == unit for u, _ in server.requests[seen:]))


class AdHocServer:
    """A pymodbus TCP server (SOCKET or RTU framing) whose units can be muted."""

    def __init__(self, devices: list[SimDevice], *, framer: FramerType = FramerType.SOCKET) -> None:
        self.devices, self.framer = devices, framer
        self.port = 0
        self.muted: set[int] = set()
        self.requests: list[tuple[int, int]] = []  # (unit, function code) as received
        self.on_answer: Callable[[], object] | None = None  # called as each answer is sent
        self._server: ModbusTcpServer | None = None

    def trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.dev_id, pdu.function_code))
            if pdu.dev_id in self.muted:
                return cast(ModbusPDU, None)  # pymodbus drops a request traced to None
        elif self.on_answer is not None:
            self.on_answer()
        return pdu

    async def start(self) -> None:
        self._server = ModbusTcpServer(
            self.devices,
            framer=self.framer,
            address=("127.0.0.1", self.port),
            trace_pdu=self.trace,
        )
        await self._server.serve_forever(background=True)
        self.port = int(self._server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]


def device(unit_id: int, *, inputs: list[int] | None = None) -> SimDevice:
    """A unit with 64 coils and discrete inputs and 200 holding registers from address 1."""
    return SimDevice(
        unit_id,
        simdata=(
            [SimData(1, count=64, values=False, datatype=DataType.BITS)],
            [SimData(1, count=64, values=False, datatype=DataType.BITS)],
            [SimData(1, count=200, values=0, datatype=DataType.REGISTERS)],
            [SimData(1, values=inputs or [0] * 16, datatype=DataType.REGISTERS)],
        ),
    )


@pytest_asyncio.fixture
async def adhoc_server() -> AsyncIterator[AdHocServer]:
    server = AdHocServer([device(1), device(3), device(5)])
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def adhoc_client(adhoc_server: AdHocServer) -> AsyncIterator[AsyncModbusTcpClient]:
    """A plain pymodbus client: sets values up and checks what the driver wrote."""
    client = AsyncModbusTcpClient("127.0.0.1", port=adhoc_server.port, timeout=1, retries=0)
    assert await client.connect()
    yield client
    client.close()


@pytest_asyncio.fixture
async def modbus_mill() -> AsyncIterator[tuple[Mill, MillModbusServer]]:
    """The simulated feeders and packer, stepped by hand (no tick task): values hold still."""
    mill = Mill(7)
    mill.step(100)
    server = MillModbusServer(mill, port=0)
    await server.start()
    mill.step(300)  # 30 s of plant: the totalizer and the bag counter move
    server.publish(mill.snapshot(), mill.time)
    yield mill, server
    await server.stop()


def mill_tag(p: Point, **extra: Any) -> Tag:
    """The configuration plant IT would write from docs/modbus-register-map.md."""
    return tag(
        f"u{p.unit_id}.{p.name}",
        p.config_address,
        None if p.type is PointType.BOOL else str(p.type),
        p.unit_id,
        byte_order=p.word_order.value,
        scale=1.0 / p.scale,
        **extra,
    )


# -- the simulated plant ----------------------------------------------------------------------


async def test_the_documented_register_map_reads_as_documented(
    modbus_mill: tuple[Mill, MillModbusServer],
) -> None:
    mill, server = modbus_mill
    tags = [mill_tag(p) for p in POINTS]
    drv, sink = driver(source(server.port), tags), Sink()
    async with running(drv, sink):
        await sink.good(*(t.name for t in tags))
        assert drv.state is DriverState.CONNECTED
    got = sink.good_values()
    assert len(got) == len(POINTS)
    for p in POINTS:  # every point against the simulated device's own value
        expected = server.value(p.unit_id, p.name)
        value = got[f"u{p.unit_id}.{p.name}"]
        if p.type is PointType.BOOL:
            assert value is expected, p.name
        elif p.type is PointType.FLOAT32:
            assert value == pytest.approx(expected, rel=1e-6), p.name
        else:
            assert value == pytest.approx(expected, abs=0.5 / p.scale + 1e-9), p.name
    # ... and the headline values against the mill itself
    feed, ls, gy = (float(mill.read(n).value or 0) for n in ("FeedRate", "LimestoneShare", "GypsumShare"))  # fmt: skip
    assert got["u1.TotalFeedRate"] == pytest.approx(feed, rel=1e-6)
    assert got["u1.TotalFeedRateSwapped"] == got["u1.TotalFeedRate"]  # CDAB == ABCD
    assert got["u1.ClinkerFeedRate"] == pytest.approx(feed * (100 - ls - gy) / 100, abs=0.051)
    assert got["u1.FeedRateSetpoint"] == pytest.approx(
        float(mill.read("FeedRateSetpoint").value or 0), abs=0.051
    )
    assert got["u1.LimestoneShareSetpoint"] == pytest.approx(
        float(mill.read("LimestoneShareSetpoint").value or 0), rel=1e-6
    )
    running_ = mill.read("Running").value is True
    assert got["u1.ClinkerFeederRunning"] is running_ and got["u2.MillRunning"] is running_
    assert got["u2.PackerRunCommand"] is True and got["u1.TotalizerReset"] is False
    count = got["u2.BagCount"]
    assert isinstance(count, int) and count > BAG_COUNT_START > 65535  # the high word counts
    assert isinstance(got["u1.FeedTotal"], int) and got["u1.FeedTotal"] > 0
    assert got["u2.BagWeightSetpoint"] == 50.0 and got["u2.PackerShare"] == 30.0


async def test_a_tag_at_an_address_the_device_lacks_is_the_only_bad_one(
    modbus_mill: tuple[Mill, MillModbusServer],
) -> None:
    _, server = modbus_mill
    good = [mill_tag(p) for p in POINTS if p.unit_id == FEEDERS_UNIT]
    missing = tag("u1.Missing", "input:5", "int16")  # between the feed rates and the totals
    drv, sink = driver(source(server.port), [*good, missing]), Sink()
    async with running(drv, sink):
        await sink.good(*(t.name for t in good))
        await sink.until(lambda: sink.last("u1.Missing") is not None)
        scans = drv.counters().scans
        await sink.until(lambda: drv.counters().scans >= scans + 3)
    bad = sink.of("u1.Missing")
    assert [(s.status, s.value) for s in bad] == [(BAD, None), (BAD_NO_COMMUNICATION, None)]
    assert all(s.status == GOOD for t in good for s in sink.of(t.name)[:-1])  # Bad at the end
    counters = drv.counters()
    # the planner's input request (1..15) was refused once and split for the session; the
    # missing register alone is then refused once a scan (it might appear after a download)
    assert counters.units[FEEDERS_UNIT].exceptions - counters.scans in (0, 1)


async def test_device_failures_mark_exactly_the_affected_tags(
    modbus_mill: tuple[Mill, MillModbusServer],
) -> None:
    mill, server = modbus_mill
    tags = [mill_tag(p) for p in POINTS]
    drv, sink = driver(source(server.port), tags), Sink()
    affected = {f"u{p.unit_id}.{p.name}" for p in POINTS if "FeedRate" in p.sources}
    assert len(affected) == 8
    async with running(drv, sink):
        await sink.good(*(t.name for t in tags))
        mill.inject("bad", "FeedRate")
        mill.step()
        server.publish(mill.snapshot(), mill.time)
        await sink.until(lambda: all(sink.status(n) != GOOD for n in affected))
        scans = drv.counters().scans
        await sink.until(lambda: drv.counters().scans >= scans + 2)
        latest = sink.latest()
        assert {n for n, s in latest.items() if s.status != GOOD} == affected
        assert {latest[n].status for n in affected} == {BAD_DEVICE_FAILURE}
        assert all(latest[n].value is None for n in affected)
        mill.clear("bad", "FeedRate")
        mill.step()
        server.publish(mill.snapshot(), mill.time)
        await sink.good(*affected)


async def test_writes_reach_the_mill_and_refusals_name_tag_and_code(
    modbus_mill: tuple[Mill, MillModbusServer],
) -> None:
    mill, server = modbus_mill
    setpoint = mill_tag(point(1, "FeedRateSetpoint"), writable=True, write_min=150, write_max=210)
    share = mill_tag(point(1, "LimestoneShareSetpoint"), writable=True, write_min=8, write_max=18)
    bag = mill_tag(point(2, "BagWeightSetpoint"), writable=True, write_min=20, write_max=60)
    run = mill_tag(point(2, "PackerRunCommand"), writable=True, write_min=0, write_max=1)
    total = mill_tag(point(1, "TotalFeedRate"))
    tags = [setpoint, share, bag, run, total]
    drv, sink = driver(source(server.port), tags), Sink()
    with pytest.raises(ConnectionLostError, match="not connected"):
        await drv.write(setpoint.name, 185.5)
    async with running(drv, sink):
        await sink.good(*(t.name for t in tags))
        result = await drv.write(setpoint.name, 185.5)
        assert (result.raw, result.status) == (1855, GOOD)
        assert result.value == pytest.approx(185.5)
        assert mill.read("FeedRateSetpoint").value == 185.5
        assert (await drv.write(share.name, 13.25)).raw == 13.25  # float32 CDAB, FC16
        assert mill.read("LimestoneShareSetpoint").value == 13.25
        await drv.write(run.name, False)  # FC5
        assert server.value(PACKER_UNIT, "PackerRunCommand") is False
        await drv.write(run.name, True)
        writes = drv.counters().units[PACKER_UNIT].writes
        with pytest.raises(WriteRejectedError, match=r"u2\.BagWeightSetpoint.*0x03"):
            await drv.write(bag.name, 58.0)  # inside our limits, outside the device's
        with pytest.raises(WriteRejectedError, match=r"u2\.BagWeightSetpoint.*write limits"):
            await drv.write(bag.name, 61.0)  # ours: refused before anything is sent
        assert drv.counters().units[PACKER_UNIT].writes == writes + 1
        with pytest.raises(WriteRejectedError, match="not writable"):
            await drv.write(total.name, 1.0)
        with pytest.raises(WriteRejectedError, match="not a tag"):
            await drv.write("Nope", 1.0)
        mill.inject("plc_reject_writes")
        with pytest.raises(WriteRejectedError, match=r"u1\.FeedRateSetpoint.*0x04"):
            await drv.write(setpoint.name, 190.0)
        assert mill.read("FeedRateSetpoint").value == 185.5
        await sink.until(lambda: sink.good_values()[setpoint.name] == pytest.approx(185.5))


# -- isolation, loss and cancellation on ad-hoc servers ----------------------------------------


def scan_gaps(samples: list[Sample]) -> list[float]:
    times = [s.source_time for s in samples if s.status == GOOD]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_a_silent_unit_goes_bad_once_and_does_not_slow_the_others(
    adhoc_server: AdHocServer,
) -> None:
    # Units are scanned in id order: 1, then the silent 3, then 5, which waits behind 3.
    interval, timeout, slack = 0.4, 0.15, 0.07
    tags = [tag("a", "holding:1", "uint16"), tag("b", "holding:5", "int32", unit=3),
            tag("c", "coil:3", unit=3), tag("d", "holding:1", "uint16", unit=5)]  # fmt: skip
    src = source(adhoc_server.port, poll_interval_s=interval, timeout_s=timeout)
    drv, sink = driver(src, tags, initial_s=0.5, max_s=0.5), Sink()
    late: list[float] = []  # how late the event loop runs a timer: the machine's load

    async def lateness() -> None:
        while True:
            due = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            late.append(time.monotonic() - due)

    with capture_logs() as logs:
        async with running(drv, sink):
            await sink.good("a", "b", "c", "d")
            watcher = asyncio.create_task(lateness())
            adhoc_server.muted.add(3)
            muted_at = time.time()
            await sink.until(lambda: sink.status("b") == BAD_NO_COMMUNICATION)
            # several backoff probes of unit 3: six scans of the others, however long they take
            await sink.until(lambda: min(len([s for s in sink.of(n) if s.source_time > muted_at])
                                         for n in "ad") >= 7)  # fmt: skip
            silent = {n: [s for s in sink.of(n) if s.source_time > muted_at] for n in "ad"}
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            adhoc_server.muted.clear()
            await sink.good("b", "c")
    # unit 3: Bad_NoCommunication exactly once per tag, no value, nothing else until it answers
    for name in ("b", "c"):
        after = [s for s in sink.of(name) if s.source_time > muted_at][:-1]  # [-1]: stopped
        assert [(s.status, s.value) for s in after if s.status != GOOD] == [
            (BAD_NO_COMMUNICATION, None)
        ]
        assert after[0].status == BAD_NO_COMMUNICATION and after[-1].status == GOOD
    # units 1 and 5: never Bad, and their scans kept their pace within one timeout (plus
    # twice the worst timer lateness measured meanwhile: a busy machine delays every scan)
    slack += 2 * max(late)
    for name in "ad":
        assert all(s.status == GOOD for s in sink.of(name)[:-1])
        gaps = scan_gaps(silent[name])
        assert len(gaps) >= 5
        assert all(interval - timeout - slack < g < interval + timeout + slack for g in gaps), gaps
    assert max(scan_gaps(silent["d"])) > interval + timeout / 2  # 5 did wait for a probe of 3
    counters = drv.counters()
    assert counters.units[1].timeouts == counters.units[5].timeouts == 0
    assert 2 <= counters.units[3].timeouts <= 5  # probes at the backoff pace, not every scan
    events = [(e["event"], e["log_level"]) for e in logs if e.get("unit") == 3]
    assert events[0] == ("modbus_unit_not_answered", "warning")
    assert set(events[1:-1]) == {("modbus_unit_not_answered", "debug")}  # repeats
    assert events[-1] == ("modbus_unit_recovered", "info")


async def test_retries_leave_a_gap_before_bad(adhoc_server: AdHocServer) -> None:
    tags = [tag("a", "holding:1", "uint16"), tag("b", "holding:1", "uint16", unit=3)]
    src = source(adhoc_server.port, poll_interval_s=0.1, timeout_s=0.1, retries=2)
    drv, sink = driver(src, tags, initial_s=30.0, max_s=30.0), Sink()
    async with running(drv, sink):
        await sink.good("a", "b")
        adhoc_server.muted.add(3)
        muted_at = time.time()
        await sink.until(lambda: sink.status("b") == BAD_NO_COMMUNICATION)
        scans = drv.counters().scans  # three more scans of unit 1, however long they take:
        await sink.until(lambda: drv.counters().scans >= scans + 3)  # none probes unit 3
        assert drv.counters().units[3].timeouts == 3  # two missed scans, then Bad, then backoff
    after = [s for s in sink.of("b") if s.source_time > muted_at]
    assert [s.status for s in after] == [BAD_NO_COMMUNICATION]  # a gap, then Bad once
    assert len([s for s in sink.of("a") if s.source_time > muted_at]) >= 4


async def test_timestamps_and_scan_times_come_from_the_clock(adhoc_server: AdHocServer) -> None:
    clock = FakeClock(monotonic=100.0, now=1_800_000_000.0)
    drv = ModbusDriver(source(adhoc_server.port, poll_interval_s=1.0), [tag("a", "holding:1", "uint16")], clock=clock)  # fmt: skip
    sink = Sink()
    task = asyncio.create_task(drv.run(sink))
    try:
        await sink.until(lambda: len(sink.batches) == 1)  # the first scan runs at once
        for n in range(2, 5):
            await clock.advance(1.0)
            await sink.until(lambda n=n: len(sink.batches) == n)  # type: ignore[misc]
        clock.jump(2.5)  # the loop was stalled 2.5 s: the scan due at +4 wakes at +5.5 ...
        await sink.until(lambda: len(sink.batches) == 5)
        await clock.advance(0.5)  # ... +5 is skipped, and the grid resumes at +6
        await sink.until(lambda: len(sink.batches) == 6)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    times = [batch[0].source_time - 1_800_000_000.0 for batch in sink.batches[:6]]
    assert times == [0.0, 1.0, 2.0, 3.0, 5.5, 6.0]  # arrival times per the injected clock
    assert drv.counters().skipped_scans == 1


async def test_a_gateway_with_nothing_behind_a_unit(
    modbus_mill: tuple[Mill, MillModbusServer],
) -> None:
    _, server = modbus_mill
    tags = [
        mill_tag(point(1, "TotalFeedRate")),
        tag("ghost", "holding:1", "uint16", unit=9),
    ]  # answers 0x0B
    drv, sink = driver(source(server.port), tags), Sink()
    async with running(drv, sink):
        await sink.good("u1.TotalFeedRate")
        await sink.until(lambda: sink.last("ghost") is not None)
    assert [(s.status, s.value) for s in sink.of("ghost")[:1]] == [(BAD_NO_COMMUNICATION, None)]
    assert drv.counters().units[9].timeouts == 0  # an answer: no time lost waiting


async def test_a_refused_register_among_many_is_isolated(
    adhoc_client: AsyncModbusTcpClient,
) -> None:
    server = AdHocServer(
        [
            SimDevice(
                5,
                simdata=[
                    SimData(10, values=[1, 2], datatype=DataType.REGISTERS),
                    SimData(14, values=[4], datatype=DataType.REGISTERS),
                ],
            )
        ]
    )
    await server.start()
    try:
        tags = [tag(n, f"holding:{a}", "uint16", unit=5) for n, a in (("r10", 10), ("r11", 11), ("r12", 12), ("r14", 14))]  # fmt: skip
        drv, sink = driver(source(server.port), tags), Sink()
        assert [(r.start, r.count) for r in drv.plan] == [(10, 5)]
        async with running(drv, sink):
            await sink.good("r10", "r11", "r14")
            await sink.until(lambda: drv.counters().scans >= 4)
            server.requests.clear()
            scans = drv.counters().scans
            await sink.until(lambda: drv.counters().scans >= scans + 2)
        values = sink.good_values()
        assert [values["r10"], values["r11"], values["r14"]] == [1, 2, 4]
        assert [(s.status, s.value) for s in sink.of("r12")] == [
            (BAD, None),
            (BAD_NO_COMMUNICATION, None),
        ]
        # split for the session: 10..11, 12 and 14 each scan, never the refused 10..14 again
        per_scan = len(server.requests) / max(1, drv.counters().scans - scans)
        assert 3 <= per_scan <= 4
    finally:
        await server.stop()


async def test_a_lost_connection_raises_and_marks_every_tag_bad(
    adhoc_server: AdHocServer,
) -> None:
    tags = [tag("a", "holding:1", "uint16"), tag("b", "coil:1", unit=3)]
    drv, sink = driver(source(adhoc_server.port, timeout_s=IN_FLIGHT_S), tags), Sink()
    task = asyncio.create_task(drv.run(sink))
    await sink.good("a", "b")
    await in_flight_to(adhoc_server, 3, sink)  # a request to unit 3, waiting for its timeout
    await adhoc_server.stop()
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(task, WAIT_S)  # failed at once: within WAIT_S, not at its timeout
    assert {(s.tag, s.status, s.value) for s in sink.batches[-1]} == {
        ("a", BAD_NO_COMMUNICATION, None),
        ("b", BAD_NO_COMMUNICATION, None),
    }
    assert drv.state is DriverState.DISCONNECTED
    with pytest.raises(ConnectionLostError, match="could not connect"):
        await drv.run(sink)  # nobody listening: the next session fails at once
    assert sum(1 for s in sink.of("a") if s.status != GOOD) == 1  # Bad once, not per attempt


async def test_under_the_supervisor_data_resumes_after_a_server_restart(
    adhoc_server: AdHocServer, adhoc_client: AsyncModbusTcpClient
) -> None:
    await adhoc_client.write_register(1, 42, device_id=1)
    drv, sink = driver(source(adhoc_server.port), [tag("a", "holding:1", "uint16")]), Sink()
    supervisor = Supervisor(CLOCK, backoff=Backoff(initial_s=0.1, max_s=0.2), healthy_after_s=1.0)
    supervisor.add("modbus:plc", lambda: drv.run(sink))
    task = asyncio.create_task(supervisor.run())
    try:
        await sink.good("a")
        await adhoc_server.stop()
        await sink.until(lambda: sink.status("a") == BAD_NO_COMMUNICATION)
        await sink.until(lambda: supervisor.snapshot()[0].restarts >= 2)  # failed reconnects
        await adhoc_server.start()  # same port; a fresh device (values back to 0)
        await sink.until(lambda: sink.status("a") == GOOD and sink.value("a") == 0)
        assert supervisor.snapshot()[0].restarts >= 2
        assert drv.counters().sessions >= 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.status("a") == BAD_NO_COMMUNICATION


async def test_cancellation_mid_request_propagates_and_marks_bad(
    adhoc_server: AdHocServer,
) -> None:
    tags = [tag("a", "holding:1", "uint16"), tag("b", "holding:1", "uint16", unit=3)]
    drv, sink = driver(source(adhoc_server.port, timeout_s=IN_FLIGHT_S), tags), Sink()
    task = asyncio.create_task(drv.run(sink))
    await sink.good("a", "b")
    await in_flight_to(adhoc_server, 3, sink)  # unit 3's request is waiting for its timeout
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)  # at once: within WAIT_S, not at its timeout
    assert {(s.tag, s.status) for s in sink.batches[-1]} == {
        ("a", BAD_NO_COMMUNICATION),
        ("b", BAD_NO_COMMUNICATION),
    }
    assert drv.state is DriverState.DISCONNECTED


async def test_a_cancellation_that_meets_an_answer_is_not_lost(
    adhoc_server: AdHocServer,
) -> None:
    """pymodbus awaits asyncio.wait_for, which before Python 3.12 drops a cancellation that
    wakes the task in the same loop iteration as the answer (CPython gh-86296): the scan loop
    then ran on, and a SIGTERM hung until the 10 s shutdown limit. Here the server, as it
    sends an answer, schedules the cancellation for the next iteration, the one in which the
    answer arrives: exactly that coincidence."""
    tags = [tag("a", "holding:1", "uint16")]
    drv, sink = driver(source(adhoc_server.port), tags), Sink()
    task = asyncio.create_task(drv.run(sink))
    await sink.good("a")
    loop = asyncio.get_running_loop()

    scans_at_cancel: list[int] = []

    def cancel_once() -> None:  # one cancellation only, as one SIGTERM
        adhoc_server.on_answer = None
        scans_at_cancel.append(len(sink.batches))
        loop.call_soon(task.cancel)

    adhoc_server.on_answer = cancel_once
    # Until it ends, or scans on: three more scans after the cancellation mean it was lost.
    await sink.until(lambda: task.done() or (
        bool(scans_at_cancel) and len(sink.batches) >= scans_at_cancel[0] + 3))  # fmt: skip
    if not task.done():
        task.cancel()  # a second cancellation stops it; the first one was lost
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pytest.fail("the driver scanned on after its cancellation")
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_write_to_a_silent_unit_times_out_naming_the_tag(
    adhoc_server: AdHocServer,
) -> None:
    limits: dict[str, Any] = {"writable": True, "write_min": 0, "write_max": 100}
    tags = [tag("a", "holding:1", "uint16"), tag("sp", "holding:2", "uint16", unit=3, **limits)]
    drv, sink = driver(source(adhoc_server.port), tags), Sink()
    async with running(drv, sink):
        await sink.good("a", "sp")
        adhoc_server.muted.add(3)
        with pytest.raises(DeviceTimeoutError, match=r"sp: no answer from unit 3"):
            await drv.write("sp", 5)
        assert drv.counters().units[3].writes == 1


# -- types, orders and write function codes through a real server --------------------------------

WIDE = ["int32", "uint32", "int64", "uint64", "float32", "float64"]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
VALUES = {"int32": -123456789, "uint32": 4_000_000_000, "int64": -(2**62) - 3,
          "uint64": 2**64 - 2, "float32": -1.5e-3, "float64": math.pi}  # fmt: skip


async def test_every_type_and_order_round_trips_through_the_device(
    adhoc_server: AdHocServer, adhoc_client: AsyncModbusTcpClient
) -> None:
    limits: dict[str, Any] = {"writable": True, "write_min": -(2.0**64), "write_max": 2.0**64}
    tags, address = [], 1
    for kind in WIDE:
        for order in ORDERS:
            tags.append(
                tag(f"{kind}.{order}", f"holding:{address}", kind, byte_order=order, **limits)
            )
            address += 4
    tags += [
        tag("i16", "holding:120", "int16", scale=0.1, offset=-40.0, **limits),
        tag("bit", "holding:121.3", "bool", writable=True, write_min=0, write_max=1),
        tag("name", "holding:122", "string", length=5),
        tag("coil", "coil:9", writable=True, write_min=0, write_max=1),
    ]
    drv, sink = driver(source(adhoc_server.port), tags), Sink()
    await adhoc_client.write_registers(122, [0x4D49, 0x4C4C, 0x3100], device_id=1)  # "MILL1"
    await adhoc_client.write_register(121, 0b1000_0000_0000_0001, device_id=1)
    async with running(drv, sink):
        await sink.good(*(t.name for t in tags))
        assert sink.value("name") == "MILL1"
        for kind in WIDE:
            for order in ORDERS:
                await drv.write(f"{kind}.{order}", VALUES[kind])
        await drv.write("i16", 21.5)  # raw (21.5 + 40) / 0.1 = 615
        await drv.write("bit", True)  # FC22: bit 3 set, bits 0 and 15 untouched
        await drv.write("coil", True)
        await sink.until(lambda: sink.value("coil") is True)
        scans = drv.counters().scans
        await sink.until(lambda: drv.counters().scans > scans)  # one full scan after the writes
        latest = sink.latest()
    for kind in WIDE:
        for order in ORDERS:
            value = latest[f"{kind}.{order}"].value
            if kind == "float32":
                assert value == pytest.approx(VALUES[kind], rel=1e-7), order
            else:
                assert value == VALUES[kind], (kind, order)
    assert latest["i16"].value == pytest.approx(21.5)  # taken before the driver stopped
    assert latest["bit"].value is True
    # the wire, decoded by pymodbus itself: ABCD is "big", CDAB is "little"
    regs = (await adhoc_client.read_holding_registers(1, count=8, device_id=1)).registers
    assert adhoc_client.convert_from_registers(regs[:2], DT.INT32) == VALUES["int32"]
    assert adhoc_client.convert_from_registers(regs[4:6], DT.INT32, "little") == VALUES["int32"]
    f32 = 1 + 4 * 4 * 4  # float32 ABCD is the 17th tag
    regs = (await adhoc_client.read_holding_registers(f32, count=2, device_id=1)).registers
    assert adhoc_client.convert_from_registers(regs, DT.FLOAT32) == pytest.approx(-1.5e-3)
    assert (await adhoc_client.read_holding_registers(120, count=2, device_id=1)).registers == [
        615,
        0b1000_0000_0000_1001,
    ]
    assert (await adhoc_client.read_coils(9, count=1, device_id=1)).bits[0] is True


async def test_write_multiple_uses_fc15_and_fc16(
    adhoc_server: AdHocServer, adhoc_client: AsyncModbusTcpClient
) -> None:
    limits: dict[str, Any] = {"writable": True, "write_min": 0, "write_max": 1000}
    tags = [tag("r", "holding:7", "uint16", **limits), tag("c", "coil:4", **limits)]
    for multiple, expected in ((False, [6, 5]), (True, [16, 15])):
        drv, sink = driver(source(adhoc_server.port, write_multiple=multiple), tags), Sink()
        async with running(drv, sink):
            await sink.good("r", "c")
            adhoc_server.requests.clear()
            await drv.write("r", 77)
            await drv.write("c", True)
            codes = [fc for _, fc in adhoc_server.requests if fc in (5, 6, 15, 16)]
        assert codes == expected
    assert (await adhoc_client.read_holding_registers(7, count=1, device_id=1)).registers == [77]


async def test_a_nan_from_the_device_is_bad_not_a_number(
    adhoc_server: AdHocServer, adhoc_client: AsyncModbusTcpClient
) -> None:
    await adhoc_client.write_registers(30, [0x7FC0, 0x0000, 0x3F80, 0x0000], device_id=1)
    tags = [tag("nan", "holding:30", "float32"), tag("one", "holding:32", "float32")]
    drv, sink = driver(source(adhoc_server.port), tags), Sink()
    async with running(drv, sink):
        await sink.good("one")
        await sink.until(lambda: sink.last("nan") is not None)
    assert [(s.status, s.value) for s in sink.of("nan")] == [
        (BAD, None),
        (BAD_NO_COMMUNICATION, None),
    ]
    assert sink.good_values()["one"] == 1.0


# -- RTU framing: over TCP, and on a (pseudo) serial line ------------------------------------------


async def test_rtu_over_tcp() -> None:
    server = AdHocServer([device(1, inputs=[0x3F80, 0, 7])], framer=FramerType.RTU)
    await server.start()
    try:
        tags = [
            tag("f", "input:1", "float32"),
            tag("n", "input:3", "uint16"),
            tag("sp", "holding:9", "int16", writable=True, write_min=-100, write_max=100),
        ]
        drv, sink = driver(source(server.port, transport="rtu_over_tcp"), tags), Sink()
        async with running(drv, sink):
            await sink.good("f", "n", "sp")
            await drv.write("sp", -42)
            await sink.until(lambda: sink.value("sp") == -42)
        values = sink.good_values()
        assert (values["f"], values["n"]) == (1.0, 7)
    finally:
        await server.stop()


@contextlib.contextmanager
def null_modem() -> Iterator[tuple[str, str]]:
    """Two pseudo-terminals joined like a null-modem cable: (client end, server end)."""
    loop = asyncio.get_running_loop()
    ends = []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(slave)
        ends.append((master, slave, os.ttyname(slave)))
    (a, a_slave, a_path), (b, b_slave, b_path) = ends

    def pump(source: int, target: int) -> Callable[[], None]:
        def forward() -> None:
            with contextlib.suppress(OSError):
                os.write(target, os.read(source, 4096))

        return forward

    loop.add_reader(a, pump(a, b))
    loop.add_reader(b, pump(b, a))
    try:
        yield a_path, b_path
    finally:
        loop.remove_reader(a)
        loop.remove_reader(b)
        for fd in (a, a_slave, b, b_slave):
            os.close(fd)


async def test_rtu_on_a_serial_line_one_request_at_a_time() -> None:
    in_flight, most = 0, 0

    async def slow(*_: object) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1

    devices = [
        SimDevice(
            unit,
            simdata=[SimData(1, values=[unit, 0, 0], datatype=DataType.REGISTERS)],
            action=slow,
        )
        for unit in (1, 2)
    ]
    muted: set[int] = set()

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        return cast(ModbusPDU, None) if not sending and pdu.dev_id in muted else pdu

    with null_modem() as (client_end, server_end):
        server = ModbusSerialServer(
            devices, port=server_end, framer=FramerType.RTU, baudrate=115200, parity="N",
            trace_pdu=trace,
        )  # fmt: skip
        await server.serve_forever(background=True)
        try:
            limits: dict[str, Any] = {"writable": True, "write_min": 0, "write_max": 1000}
            tags = [tag(f"u{u}", "holding:1", "uint16", unit=u) for u in (1, 2)]
            tags += [tag(f"sp{u}", "holding:2", "uint16", unit=u, **limits) for u in (1, 2)]
            src = ModbusSource.model_validate(
                {
                    "kind": "modbus",
                    "name": "plc",
                    "transport": "rtu",
                    "serial_port": client_end,
                    "baudrate": 115200,
                    "parity": "N",
                    "poll_interval_s": 0.05,
                    "timeout_s": 0.2,
                    "retries": 0,
                }
            )  # ptys refuse parity settings (EINVAL): "N" here, "E" on a real line
            drv, sink = driver(src, tags), Sink()
            async with running(drv, sink):
                await sink.good("u1", "u2", "sp1", "sp2")
                # writes from other tasks queue behind the scan, never interleave on the line
                await asyncio.gather(*(drv.write(f"sp{u}", 10 * n + u) for n in range(5) for u in (1, 2)))  # fmt: skip
                await sink.until(lambda: sink.value("sp2") == 42)
                muted.add(2)
                await sink.until(lambda: sink.status("u2") == BAD_NO_COMMUNICATION)
                before = len(sink.of("u1"))
                await sink.until(lambda: len(sink.of("u1")) >= before + 5)
            assert most == 1
            assert all(s.status == GOOD for s in sink.of("u1")[:-1])
            assert sink.good_values()["u1"] == 1
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]
