"""The heartbeat against real registers and nodes: it fits the tag's type and write limits
and what its echo reads back (a uint32 heartbeat register with the usual uint16 echo),
wraps inside them, and gate 1 still passes across the wrap.

Peers: a pymodbus server (unit 1: holding registers and coils from address 1) and an asyncua
server with Int16, UInt16 and Int32 heartbeat and echo nodes and a Boolean RemoteActive,
both on 127.0.0.1 and shared by the module. The test plays the PLC program: it reads the
heartbeat the agent wrote from the server and writes the echo (one count behind, as a PLC
that copies the heartbeat every scan shows it between two scans). The agent's side is real:
its drivers, a `Heartbeat`, and a `ControlLoop` whose cycle records gate 1's verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.config.checks_loops import shared_counter
from agent.config.heartbeat_counter import CounterRange
from agent.config.settings import Loop, ModbusSource, OpcUaSource, Tag
from agent.control.audit import AuditLog
from agent.control.heartbeat import Heartbeat
from agent.control.loop import ControlLoop
from agent.domain.clock import SystemClock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Driver, Quality
from agent.packages.manager import ModelManager
from drivers.modbus import ModbusDriver
from drivers.opcua import OpcUaDriver
from tests.support.wait import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLOCK = SystemClock()
NS = "urn:edge-agent:test:heartbeat"
DT = AsyncModbusTcpClient.DATATYPE
HB_REGISTER, ECHO_REGISTER, REMOTE_COIL = 10, 20, 1
OPCUA_TYPES = {
    "Int16": ua.VariantType.Int16,
    "UInt16": ua.VariantType.UInt16,
    "Int32": ua.VariantType.Int32,
}
WIDE = (-(2.0**31), 2.0**31 - 1)  # the write limits of config/example-plant.toml
MODBUS_TYPES = {  # a register type: how the PLC program converts it, and its register count
    "int16": (DT.INT16, 1),
    "uint16": (DT.UINT16, 1),
    "int32": (DT.INT32, 2),
    "uint32": (DT.UINT32, 2),
}


# -- the peers -------------------------------------------------------------------------------


@dataclass
class Peers:
    modbus_port: int
    modbus: AsyncModbusTcpClient
    opcua_url: str
    opcua: Server
    nodes: dict[str, Node]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def peers() -> AsyncIterator[Peers]:
    device = SimDevice(
        1,
        simdata=(
            [SimData(1, count=16, values=False, datatype=DataType.BITS)],
            [SimData(1, count=16, values=False, datatype=DataType.BITS)],
            [SimData(1, count=40, values=0, datatype=DataType.REGISTERS)],
            [SimData(1, count=4, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    modbus = ModbusTcpServer([device], framer=FramerType.SOCKET, address=("127.0.0.1", 0))
    await modbus.serve_forever(background=True)
    port = int(modbus.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert await client.connect()
    await client.write_coil(REMOTE_COIL, True, device_id=1)

    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS)

    def nid(name: str) -> ua.NodeId:
        return ua.NodeId(cast(Any, name), cast(Any, idx))

    folder = await server.nodes.objects.add_folder(nid("Plc"), ua.QualifiedName("Plc", idx))
    nodes: dict[str, Node] = {}
    for type_name, vtype in OPCUA_TYPES.items():
        for role in ("HB", "Echo"):
            name = f"{role}_{type_name}"
            nodes[name] = await folder.add_variable(nid(name), ua.QualifiedName(name, idx),
                                                    ua.Variant(0, vtype))  # fmt: skip
            await nodes[name].set_writable()
    nodes["Remote"] = await folder.add_variable(nid("Remote"), ua.QualifiedName("Remote", idx),
                                                ua.Variant(True, ua.VariantType.Boolean))  # fmt: skip
    async with server:
        sockname = server.bserver._server.sockets[0].getsockname()  # type: ignore[union-attr]
        url = f"opc.tcp://127.0.0.1:{sockname[1]}/"
        yield Peers(port, client, url, server, nodes)
    client.close()
    await modbus.shutdown()  # type: ignore[no-untyped-call]


# -- the agent's side ------------------------------------------------------------------------


@dataclass
class Case:
    protocol: str  # "modbus" or "opcua"
    type: str  # a Modbus register type or an OPC UA node type
    write_min: float
    write_max: float
    echo_type: str | None = None  # a Modbus echo register's type, when not `type`

    def __str__(self) -> str:
        echo = f"-echo-{self.echo_type}" if self.echo_type else ""
        return f"{self.protocol}-{self.type}{echo}-[{self.write_min:g},{self.write_max:g}]"

    @property
    def echo(self) -> str:
        return self.echo_type or self.type


@dataclass
class Agent:
    heartbeat: Heartbeat
    loop: ControlLoop
    latest: LatestValues
    read_heartbeat: Callable[[], Awaitable[int]]
    write_echo: Callable[[int], Awaitable[int]]  # the value the echo now holds


def _tags(case: Case) -> list[Tag]:
    if case.protocol == "modbus":
        kind: dict[str, Any] = {"type": case.type}
        where = {"HB": f"holding:{HB_REGISTER}", "Echo": f"holding:{ECHO_REGISTER}",
                 "Remote": f"coil:{REMOTE_COIL}"}  # fmt: skip
    else:
        kind = {}
        where = {n: f"nsu={NS};s={n}_{case.type}" for n in ("HB", "Echo")}
        where["Remote"] = f"nsu={NS};s=Remote"
    return [
        Tag(name="HB", source="plc", address=where["HB"], writable=True,
            write_min=case.write_min, write_max=case.write_max, **kind),
        Tag(name="Echo", source="plc", address=where["Echo"],
            **({"type": case.echo} if case.protocol == "modbus" else {})),
        Tag(name="Remote", source="plc", address=where["Remote"]),
    ]  # fmt: skip


def _driver(case: Case, peers: Peers, tags: list[Tag], tmp_path: Path) -> Driver:
    if case.protocol == "modbus":
        source = ModbusSource(kind="modbus", name="plc", host="127.0.0.1",
                              port=peers.modbus_port, poll_interval_s=0.05, timeout_s=1.0)  # fmt: skip
        return ModbusDriver(source, tags, clock=CLOCK)
    source_ = OpcUaSource(kind="opcua", name="plc", endpoint=peers.opcua_url,
                          security_policy="None", security_mode="None",
                          publishing_interval_s=0.05, sampling_interval_s=0.0,
                          timeout_s=2.0)  # fmt: skip
    return OpcUaDriver(source_, tags, state_dir=tmp_path, agent_id="hb-test", password=None,
                       clock=CLOCK)  # fmt: skip


def _plc(case: Case, peers: Peers) -> tuple[Callable[[], Awaitable[int]], Callable[[int], Awaitable[int]]]:  # fmt: skip
    """How the test, as the PLC program, reads the heartbeat and writes the echo."""
    if case.protocol == "modbus":
        hb_type, count = MODBUS_TYPES[case.type]
        echo_type, bits = MODBUS_TYPES[case.echo][0], 16 * MODBUS_TYPES[case.echo][1]
        signed = case.echo.startswith("int")
        client = peers.modbus

        async def read_modbus() -> int:
            regs = (
                await client.read_holding_registers(HB_REGISTER, count=count, device_id=1)
            ).registers
            return int(cast(int, client.convert_from_registers(regs, hb_type)))

        async def write_modbus(value: int) -> int:
            # A PLC copying the heartbeat into the echo register keeps what fits: its low bits.
            value &= (1 << bits) - 1
            if signed and value >= 1 << (bits - 1):
                value -= 1 << bits
            regs = client.convert_to_registers(value, echo_type)
            await client.write_registers(ECHO_REGISTER, regs, device_id=1)
            return value

        return read_modbus, write_modbus
    hb, echo = peers.nodes[f"HB_{case.type}"], peers.nodes[f"Echo_{case.type}"]

    async def read_opcua() -> int:
        return int(await hb.read_value())

    async def write_opcua(value: int) -> int:
        variant = ua.Variant(value, OPCUA_TYPES[case.type])
        stamp = cast(ua.DateTime, datetime.now(UTC))
        await peers.opcua.write_attribute_value(
            echo.nodeid, ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
        )
        return value

    return read_opcua, write_opcua


@contextlib.asynccontextmanager
async def agent(case: Case, peers: Peers, tmp_path: Path) -> AsyncIterator[Agent]:
    """A driver running against the peer, a heartbeat on HB, a closed loop reading the echo."""
    tags = _tags(case)
    driver = _driver(case, peers, tags, tmp_path)
    latest = LatestValues({t.name: "plc" for t in tags})
    task = asyncio.create_task(driver.run(latest.update))
    audit = await asyncio.to_thread(AuditLog, tmp_path / "audit.db", agent_id="t", clock=CLOCK)

    async def no_audit(*_: object) -> None:
        return None

    try:

        def ready() -> bool:
            samples = [latest.get(name) for name in ("Echo", "Remote")]
            return all(s is not None and s.quality is Quality.GOOD for s in samples)

        await until(ready, "the driver's first Good samples")
        loop = Loop(name="hb", mode="closed_loop", model="absent", strategy="direct",
                    output="y", target_tag="HB", enable_tag="Remote", heartbeat_tag="HB",
                    heartbeat_echo_tag="Echo", envelope_min=case.write_min + 1,
                    envelope_max=case.write_max - 1, max_step=1.0)  # fmt: skip
        # The range agent.control.setup gives the heartbeat (and `check` accepted).
        counter = shared_counter([loop], "HB", {t.name: t for t in tags})
        assert isinstance(counter, CounterRange), counter
        health = Health()
        heartbeat = Heartbeat("HB", driver, counter, clock=CLOCK, health=health)
        control = ControlLoop(
            loop, tags={t.name: t for t in tags}, drivers=dict.fromkeys(("HB", "Echo"), driver),
            latest=latest, models=ModelManager(tmp_path / "models", None, {}, audit=no_audit, clock=CLOCK),
            audit=audit, heartbeat=heartbeat, health=health, clock=CLOCK,
        )  # fmt: skip
        read, write = _plc(case, peers)
        yield Agent(heartbeat, control, latest, read, write)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        audit.close()


# -- the tests -------------------------------------------------------------------------------

FITS = [
    Case("modbus", "uint16", 0, 65535),  # the issue: a uint16 register, its own limits
    Case("modbus", "uint16", *WIDE),
    Case("modbus", "int16", -32768, 32767),
    Case("modbus", "int16", *WIDE),
    Case("opcua", "Int16", *WIDE),
    Case("opcua", "UInt16", *WIDE),
    Case("opcua", "Int32", *WIDE),
    Case("modbus", "uint32", *WIDE, echo_type="uint16"),  # counts 0..65535, as the echo does
]


@pytest.mark.parametrize("case", FITS, ids=str)
async def test_every_beat_fits_the_register_or_node(
    case: Case, peers: Peers, tmp_path: Path
) -> None:
    async with agent(case, peers, tmp_path) as a:
        counter = a.heartbeat.counter
        for _ in range(5):
            assert await a.heartbeat.beat(), f"beat refused: failures {a.heartbeat.failures}"
            sent = a.heartbeat.sent
            assert sent is not None
            assert await a.read_heartbeat() == sent  # what the PLC holds is what we sent
            assert case.write_min <= sent <= case.write_max
            assert counter.low <= sent <= counter.high
        assert a.heartbeat.failures == 0


WRAPS = [
    Case("modbus", "uint16", 65520, 65535),  # the top of the register
    Case("modbus", "int16", -10, 9),  # through zero and negative
    Case("opcua", "Int16", 32752, 32767),  # the top of an Int16 node
    Case("opcua", "UInt16", 65520, 65535),  # limits outside 0..32767: the node's own range
    Case("opcua", "Int32", -20, -1),
    # A 32-bit heartbeat read back through the usual 16-bit echo register: the counter wraps
    # at the top of what the echo holds (65535), not of what the heartbeat holds.
    Case("modbus", "uint32", 65520, 2.0**32 - 1, echo_type="uint16"),
]
COUNTS = {str(WRAPS[-1]): (65520, 65535)}  # where it is not the write limits


@pytest.mark.parametrize("case", WRAPS, ids=str)
async def test_the_counter_wraps_inside_the_limits_and_gate_1_follows_across(
    case: Case, peers: Peers, tmp_path: Path
) -> None:
    async with agent(case, peers, tmp_path) as a:
        counter = a.heartbeat.counter
        assert (counter.low, counter.high) == COUNTS.get(
            str(case), (case.write_min, case.write_max)
        )
        sent: list[int] = []
        for _ in range(counter.size + 2):  # at least one wrap, from any random start
            assert await a.heartbeat.beat(), f"beat refused: failures {a.heartbeat.failures}"
            assert a.heartbeat.sent is not None
            sent.append(a.heartbeat.sent)
            assert await a.read_heartbeat() == sent[-1]
            if len(sent) < 2:
                continue
            # The PLC has not copied the newest beat yet: lag 1 (what its echo can hold of it).
            held = await a.write_echo(sent[-2])

            def echoed(value: int = held) -> bool:
                s = a.latest.get("Echo")
                return s is not None and s.quality is Quality.GOOD and s.value == value

            await until(echoed, f"the echo {held}")
            record = await a.loop.cycle()
            handshake = record["verdicts"][0]
            assert handshake == {"gate": "handshake", "ok": True, "reason": "ok"}, (sent, record)
        assert all(counter.low <= v <= counter.high for v in sent)
        assert all(case.write_min <= v <= case.write_max for v in sent)
        wraps = [(a_, b) for a_, b in itertools.pairwise(sent) if b < a_]
        assert wraps == [(counter.high, counter.low)] * len(wraps)
        assert len(wraps) >= 1
        steps = [b - a_ for a_, b in itertools.pairwise(sent) if b >= a_]
        assert set(steps) == {1}
