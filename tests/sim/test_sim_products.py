"""A product change of the simulated mill as a real OPC UA client and a real Modbus client see
it: ProductId and SiloId (Int32, read-only, source time = the change), the recipe's setpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient

from agent.demo.products import by_id
from agent.demo.register_map import FEEDERS_UNIT, point
from agent.demo.runner import SimulatedPlant
from tests.support.plant import REQUEST_TIMEOUT_S, read, tag_node, value, value_only, write_status
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")
I32 = ua.VariantType.Int32


@pytest_asyncio.fixture(loop_scope="module")
async def modbus(sim: SimulatedPlant) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=sim.modbus_port, timeout=REQUEST_TIMEOUT_S, retries=0
    )
    assert await client.connect()
    yield client
    client.close()


async def _modbus_ids(client: AsyncModbusTcpClient) -> tuple[int, int]:
    first = point(FEEDERS_UNIT, "ProductId")
    assert point(FEEDERS_UNIT, "SiloId").address == first.address + 1
    response = await client.read_input_registers(first.address, count=2, device_id=FEEDERS_UNIT)
    assert not response.isError(), response
    product, silo = response.registers
    return product, silo


async def test_a_product_change_is_published_over_opcua_and_modbus(
    sim: SimulatedPlant, opcua: Client, modbus: AsyncModbusTcpClient
) -> None:
    for tag in ("ProductId", "SiloId"):
        node = await tag_node(opcua, tag)
        assert await node.read_data_type_as_variant_type() == I32
        assert ua.AccessLevel.CurrentWrite not in await node.get_access_level()
    assert (await value(opcua, "ProductId"), await value(opcua, "SiloId")) == (2, 2)
    assert await _modbus_ids(modbus) == (2, 2)

    cem1 = by_id(1)
    mill = sim.mill
    mill.change_product(1, 1)
    changed_at = mill.time

    async def published() -> bool:
        return (await value(opcua, "ProductId"), await value(opcua, "SiloId")) == (1, 1)

    await eventually(published)
    for tag in ("ProductId", "SiloId"):
        dv = await read(opcua, tag)
        assert dv.SourceTimestamp is not None
        assert abs(dv.SourceTimestamp.timestamp() - sim.sim_to_wall(changed_at)) < 1e-3
    # The recipe is loaded: the PLC's setpoints jumped with the product.
    assert await value(opcua, "SeparatorSpeedSetpoint") == cem1.separator_rpm
    assert await value(opcua, "LimestoneShareSetpoint") == cem1.limestone_pct

    async def over_modbus() -> bool:
        return await _modbus_ids(modbus) == (1, 1)

    await eventually(over_modbus)
    # The agent cannot change the product: the PLC refuses the write.
    assert await write_status(opcua, "ProductId", value_only(3, I32)) == "BadNotWritable"
    assert await value(opcua, "ProductId") == 1
