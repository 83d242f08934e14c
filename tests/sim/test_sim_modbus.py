"""The simulated feeders and packer over a real pymodbus server, seen by a real pymodbus client.

Values are decoded with the client's own `convert_from_registers`, not with the server's
codec, so an encoding mistake on either side shows up here.
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from agent.demo.modbus_server import BAG_COUNT_START
from agent.demo.register_map import (
    FEEDERS_UNIT as FEEDERS,
)
from agent.demo.register_map import (
    PACKER_UNIT as PACKER,
)
from agent.demo.register_map import (
    POINTS,
    Point,
    PointType,
    Table,
    WordOrder,
    point,
    render_markdown,
)
from agent.demo.runner import SimulatedPlant
from tests.support.plant import REQUEST_TIMEOUT_S
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = Path(__file__).resolve().parents[2] / "docs" / "modbus-register-map.md"
DT = AsyncModbusTcpClient.DATATYPE
_TYPES = {PointType.INT16: DT.INT16, PointType.UINT16: DT.UINT16, PointType.UINT32: DT.UINT32,
          PointType.FLOAT32: DT.FLOAT32}  # fmt: skip


@pytest_asyncio.fixture(loop_scope="module")
async def modbus(sim: SimulatedPlant) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=sim.modbus_port, timeout=REQUEST_TIMEOUT_S, retries=0
    )
    assert await client.connect()
    yield client
    client.close()


async def read_raw(client: AsyncModbusTcpClient, p: Point) -> ModbusPDU:
    call = {
        Table.COIL: client.read_coils,
        Table.DISCRETE_INPUT: client.read_discrete_inputs,
        Table.HOLDING: client.read_holding_registers,
        Table.INPUT: client.read_input_registers,
    }
    return await call[p.table](p.address, count=p.width, device_id=p.unit_id)


async def read_point(client: AsyncModbusTcpClient, p: Point) -> float | int | bool:
    """Decode with pymodbus' own converter: independent of agent.demo.register_map.decode."""
    response = await read_raw(client, p)
    assert not response.isError(), f"{p.name}: {response}"
    if p.type is PointType.BOOL:
        return bool(response.bits[0])
    order: Literal["big", "little"] = "big" if p.word_order is WordOrder.ABCD else "little"
    raw = client.convert_from_registers(response.registers, _TYPES[p.type], word_order=order)
    assert isinstance(raw, int | float)
    return raw / p.scale if p.scale != 1.0 else raw


async def test_the_documented_map_is_the_served_map() -> None:
    assert DOC.read_text() == render_markdown(), "regenerate docs/modbus-register-map.md"


async def test_every_point_decodes_to_the_documented_value(
    modbus: AsyncModbusTcpClient, sim: SimulatedPlant
) -> None:
    async def totalised() -> bool:  # the mill ran long enough to count some feed
        return bool(sim.modbus.value(FEEDERS, "FeedTotal"))

    await eventually(totalised)
    await sim.pause()  # freeze the mill so the client and mill.read see the same tick
    got = {(p.unit_id, p.name): await read_point(modbus, p) for p in POINTS}
    mill = sim.mill
    feed, ls, gy = (
        float(mill.read(n).value or 0) for n in ("FeedRate", "LimestoneShare", "GypsumShare")
    )
    running = mill.read("Running").value is True
    assert got[(FEEDERS, "ClinkerFeedRate")] == pytest.approx(
        feed * (100 - ls - gy) / 100, abs=0.051
    )
    assert got[(FEEDERS, "LimestoneFeedRate")] == pytest.approx(feed * ls / 100, abs=0.051)
    assert got[(FEEDERS, "GypsumFeedRate")] == pytest.approx(feed * gy / 100, abs=0.051)
    assert got[(FEEDERS, "TotalFeedRate")] == pytest.approx(feed, rel=1e-6)
    assert got[(FEEDERS, "TotalFeedRateSwapped")] == got[(FEEDERS, "TotalFeedRate")]
    assert 0 < got[(FEEDERS, "FeedTotal")] == sim.modbus.value(FEEDERS, "FeedTotal")
    for name in ("ClinkerFeederRunning", "LimestoneFeederRunning", "GypsumFeederRunning"):
        assert got[(FEEDERS, name)] is running
    assert got[(FEEDERS, "TotalizerReset")] is False
    assert got[(FEEDERS, "FeedRateSetpoint")] == pytest.approx(
        float(mill.read("FeedRateSetpoint").value or 0), abs=0.051
    )
    assert got[(FEEDERS, "LimestoneShareSetpoint")] == pytest.approx(
        float(mill.read("LimestoneShareSetpoint").value or 0), rel=1e-6
    )
    count = got[(PACKER, "BagCount")]
    assert isinstance(count, int) and count >= BAG_COUNT_START > 65535  # the high word matters
    assert count == sim.modbus.value(PACKER, "BagCount")
    assert got[(PACKER, "ShiftBagCount")] == sim.modbus.value(PACKER, "ShiftBagCount")
    assert got[(PACKER, "LastBagWeight")] == pytest.approx(
        50.0 + 0.25 * math.sin(0.7 * count), rel=1e-6
    )
    assert got[(PACKER, "PackingRate")] == round(0.30 * feed * 1000 / 50.0)
    assert got[(PACKER, "PackedTonnes")] > 0
    assert got[(PACKER, "PackerRunCommand")] is True and got[(PACKER, "ShiftCounterReset")] is False
    assert got[(PACKER, "PackerRunning")] is running and got[(PACKER, "MillRunning")] is running
    assert got[(PACKER, "BagWeightSetpoint")] == 50.0
    assert got[(PACKER, "PackerShare")] == 30.0


async def test_word_orders_on_the_wire(modbus: AsyncModbusTcpClient, sim: SimulatedPlant) -> None:
    await sim.pause()
    abcd = (await read_raw(modbus, point(FEEDERS, "TotalFeedRate"))).registers
    cdab = (await read_raw(modbus, point(FEEDERS, "TotalFeedRateSwapped"))).registers
    expected = list(
        struct.unpack(">HH", struct.pack(">f", float(sim.mill.read("FeedRate").value or 0)))
    )
    assert abcd == expected and cdab == expected[::-1]
    count = (await read_raw(modbus, point(PACKER, "BagCount"))).registers
    assert count[0] == (await read_point(modbus, point(PACKER, "BagCount"))) >> 16  # type: ignore[operator]


async def test_coils_are_writable(modbus: AsyncModbusTcpClient, sim: SimulatedPlant) -> None:
    run, running = point(PACKER, "PackerRunCommand"), point(PACKER, "PackerRunning")
    assert not (await modbus.write_coil(run.address, False, device_id=PACKER)).isError()
    try:
        assert await read_point(modbus, run) is False

        async def stopped() -> bool:
            return await read_point(modbus, running) is False

        await eventually(stopped)
        assert await read_point(modbus, point(PACKER, "PackingRate")) == 0
    finally:
        await modbus.write_coil(run.address, True, device_id=PACKER)

    async def running_again() -> bool:
        return await read_point(modbus, running) is True

    await eventually(running_again)
    reset, shift = point(PACKER, "ShiftCounterReset"), point(PACKER, "ShiftBagCount")

    async def bagged() -> bool:  # ~1,080 bags/h at 180 t/h: a bag every 3.3 s sim
        return bool(await read_point(modbus, shift))

    await eventually(bagged)
    assert not (await modbus.write_coil(reset.address, True, device_id=PACKER)).isError()
    assert await read_point(modbus, shift) == 0
    assert await read_point(modbus, reset) is False  # self-clearing


async def test_feed_setpoints_written_over_modbus_reach_the_mill(
    modbus: AsyncModbusTcpClient, sim: SimulatedPlant
) -> None:
    feed_sp = point(FEEDERS, "FeedRateSetpoint")
    assert not (await modbus.write_register(feed_sp.address, 1855, device_id=FEEDERS)).isError()
    assert sim.mill.read("FeedRateSetpoint").value == 185.5
    assert await read_point(modbus, feed_sp) == 185.5
    ls_sp = point(FEEDERS, "LimestoneShareSetpoint")
    regs = modbus.convert_to_registers(13.25, DT.FLOAT32, word_order="little")  # CDAB
    assert not (await modbus.write_registers(ls_sp.address, regs, device_id=FEEDERS)).isError()
    assert sim.mill.read("LimestoneShareSetpoint").value == 13.25


async def test_refused_writes_answer_modbus_exceptions(
    modbus: AsyncModbusTcpClient, sim: SimulatedPlant
) -> None:
    feed_sp = point(FEEDERS, "FeedRateSetpoint")
    before = sim.mill.read("FeedRateSetpoint").value
    assert (
        await modbus.write_register(feed_sp.address, 3100, device_id=FEEDERS)
    ).exception_code == 3
    bag = point(PACKER, "BagWeightSetpoint")
    assert (await modbus.write_register(bag.address, 600, device_id=PACKER)).exception_code == 3
    half = point(FEEDERS, "LimestoneShareSetpoint")  # one register of a float32
    assert (await modbus.write_register(half.address, 0, device_id=FEEDERS)).exception_code == 2
    sim.mill.inject("plc_reject_writes")
    assert (
        await modbus.write_register(feed_sp.address, 1800, device_id=FEEDERS)
    ).exception_code == 4
    assert sim.mill.read("FeedRateSetpoint").value == before


async def test_bad_mill_readings_answer_device_failure(
    modbus: AsyncModbusTcpClient, sim: SimulatedPlant
) -> None:
    sim.mill.inject("bad", "FeedRate")

    async def failing() -> bool:
        return bool((await read_raw(modbus, point(FEEDERS, "TotalFeedRate"))).isError())

    await eventually(failing)
    response = await read_raw(modbus, point(FEEDERS, "TotalFeedRate"))
    assert response.isError() and response.exception_code == 4
    assert not (await read_raw(modbus, point(FEEDERS, "FeedTotal"))).isError()  # holds
    assert not (await read_raw(modbus, point(PACKER, "BagCount"))).isError()  # other device
    sim.mill.clear("bad", "FeedRate")

    async def answering() -> bool:
        return not (await read_raw(modbus, point(FEEDERS, "TotalFeedRate"))).isError()

    await eventually(answering)


async def test_the_two_units_answer_independently(
    modbus: AsyncModbusTcpClient, sim: SimulatedPlant
) -> None:
    gap = await modbus.read_input_registers(5, count=1, device_id=FEEDERS)
    assert gap.isError() and gap.exception_code == 2  # a gap in the feeders' map ...
    assert not (await modbus.read_input_registers(5, count=1, device_id=PACKER)).isError()
    assert not (await modbus.write_register(1, 480, device_id=PACKER)).isError()  # 48.0 kg
    try:
        assert await read_point(modbus, point(PACKER, "BagWeightSetpoint")) == 48.0
        feeders_hr1 = await read_point(modbus, point(FEEDERS, "FeedRateSetpoint"))
        assert feeders_hr1 == pytest.approx(
            float(sim.mill.read("FeedRateSetpoint").value or 0), abs=0.051
        )
    finally:
        await modbus.write_register(1, 500, device_id=PACKER)
    absent = await modbus.read_input_registers(1, count=1, device_id=9)
    assert absent.isError() and absent.exception_code == 0x0B
