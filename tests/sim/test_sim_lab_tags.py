"""The LIMS's tags (plant-model 4.2) over real OPC UA and Modbus: each lab result with its
`<Tag>SampleTime` companion, both set when the result is entered.

Its own plant, started one plant minute before 04:00 UTC with the lab 3600x faster, so the
first 4-hour strength composite's 2-day result arrives within seconds of wall time. The plant
runs 20x faster than the wall clock: what the servers publish as a sample time is the plant's
sample time mapped to the wall clock exactly as the SourceTimestamps are (so an agent on the
wall clock can match it with its predictions); the mill read in-process keeps plant time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient

from agent.demo.lab_record import LabRecord
from agent.demo.register_map import LIMS_UNIT, point
from agent.demo.runner import SimulatedPlant
from tests.support.plant import REQUEST_TIMEOUT_S, read, value
from tests.support.wait import eventually, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

S_END = 1_767_225_600.0 + 4 * 3600.0  # 2026-01-01 04:00 UTC: a strength window and an hour end
START = S_END - 60.0


def source_time(dv: ua.DataValue) -> float:
    assert dv.SourceTimestamp is not None
    return dv.SourceTimestamp.replace(tzinfo=dt.UTC).timestamp()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant() -> AsyncIterator[SimulatedPlant]:
    async with SimulatedPlant(
        seed=3, time_scale=20.0, lab_time_scale=3600.0, start_time=START,
        opcua_port=0, modbus_port=0,
    ) as sim:  # fmt: skip
        yield sim


def entered(plant: SimulatedPlant, test: str) -> LabRecord:
    (record,) = [r for r in plant.mill.lab_results() if r.test == test]
    assert record.sample_time == S_END
    return record


async def test_opcua_serves_each_result_with_its_sample_time(plant: SimulatedPlant) -> None:
    async with Client(plant.opcua_url, timeout=REQUEST_TIMEOUT_S) as client:
        first = await read(client, "LabStrength2dSampleTime")
        assert first.Value is not None
        start = first.Value.Value  # before any result: the start, on the wall clock
        assert start == pytest.approx(source_time(await read(client, "LabStrength2d")), abs=1e-3)
        assert start != START

        async def arrived() -> bool:
            return bool(await value(client, "LabStrength2dSampleTime") != start)

        await eventually(arrived, "the 2-day result of the 04:00 composite")
        for tag, test in (("LabStrength2d", "s2"), ("LabBlaine", "blaine")):
            record = entered(plant, test)
            result, stamp = await read(client, tag), await read(client, f"{tag}SampleTime")
            assert result.Value is not None and stamp.Value is not None
            assert result.Value.Value == record.value
            assert stamp.Value.VariantType == ua.VariantType.Double
            assert record.sample_time == S_END  # the mill keeps plant time
            wall = plant.sim_to_wall(S_END)
            assert wall != S_END
            # the sample time, as published, is the window's end on the wall clock: the
            # SourceTimestamp both tags carry
            assert stamp.Value.Value == pytest.approx(source_time(result), abs=1e-3)
            for dv in (result, stamp):
                assert source_time(dv) == pytest.approx(wall, abs=1e-3)
            assert stamp.Value.Value == pytest.approx(wall, abs=1e-3)
            assert plant.mill.read(f"{tag}SampleTime").value == S_END
        assert await value(client, "LabStrength28dSampleTime") == start  # 28 d: not yet


async def test_modbus_serves_each_result_with_its_sample_time(plant: SimulatedPlant) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus_port,
                                  timeout=REQUEST_TIMEOUT_S, retries=0)  # fmt: skip
    assert await client.connect()
    dtype = AsyncModbusTcpClient.DATATYPE
    try:

        async def sample_time() -> int:
            p = point(LIMS_UNIT, "LabStrength2dSampleTime")
            response = await client.read_input_registers(p.address, count=2, device_id=LIMS_UNIT)
            assert not response.isError(), response
            raw = client.convert_from_registers(response.registers, dtype.UINT32)
            assert isinstance(raw, int)
            return raw

        async with Client(plant.opcua_url, timeout=REQUEST_TIMEOUT_S) as opcua:
            start = source_time(await read(opcua, "LabStrength28d"))  # no result in this test

            async def arrived() -> bool:
                return source_time(await read(opcua, "LabStrength2d")) > start

            await eventually(arrived, "the 2-day result of the 04:00 composite over OPC UA")
            wall = source_time(await read(opcua, "LabStrength2d"))  # S_END on the wall clock

        async def published() -> bool:
            return await sample_time() != round(start)

        await eventually(published, "a sample time other than the start's over Modbus")
        assert await sample_time() == round(wall)  # the same mapping as OPC UA's SourceTimestamp
        assert wall == pytest.approx(plant.sim_to_wall(S_END), abs=1e-3) and round(wall) != S_END
        assert plant.mill.read("LabStrength2dSampleTime").value == S_END  # plant time in-process
        p = point(LIMS_UNIT, "LabStrength2d")
        response = await client.read_input_registers(p.address, count=2, device_id=LIMS_UNIT)
        got = client.convert_from_registers(response.registers, dtype.FLOAT32)
        assert got == pytest.approx(entered(plant, "s2").value, rel=1e-6)
        plant.mill.inject("bad", "LabStrength2d")

        async def failing() -> bool:
            answer = await client.read_input_registers(p.address, count=2, device_id=LIMS_UNIT)
            return bool(answer.isError() and answer.exception_code == 4)

        await eventually(failing, "a Bad lab value answers 0x04")
        assert await sample_time() == round(wall)  # its sample-time register still answers
        plant.mill.clear("bad", "LabStrength2d")
        gap = await client.read_coils(1, count=1, device_id=LIMS_UNIT)
        assert gap.isError() and gap.exception_code == 2  # the LIMS has no coils

        # A pause re-anchors the mapping: a sample time already published does not move
        # (it would look like a new result).
        await plant.pause()
        paused = time.time()
        await until(lambda: time.time() > paused + 2.0, "two wall seconds of pause")
        plant.resume()
        ticks = plant.stats.iterations
        await until(lambda: plant.stats.iterations > ticks + 2, "the plant publishing again")
        assert round(plant.sim_to_wall(S_END)) != round(wall)  # the mapping moved
        assert await sample_time() == round(wall)
    finally:
        client.close()
