"""The simulated plant as a peer: fixtures and OPC UA client helpers, one plant per module.

The plant (asyncua + pymodbus servers on 127.0.0.1, ephemeral ports) takes ~2 s to start,
so it is module-scoped and runs on the module's event loop; tests in those modules use
`pytestmark = pytest.mark.asyncio(loop_scope="module")`. `sim` hands a test that plant with
every fault cleared and remote mode granted, so tests do not depend on each other's order.
Also: small OPC UA client helpers (read by tag name, write and get the status name) and a
self-signed client certificate for the secure endpoint.

Must not: share a plant between test modules (module scope: each file gets its own, so
`--dist loadfile` workers never share one), or wait other than by polling (tests.support.wait).
The fixtures are registered for every test by tests/conftest.py (`pytest_plugins`).

Owns: the module-scoped plants (`sim_plant`, `secure_plant`) and what a test gets of them
(`sim`, `opcua`, `heartbeat`, `client_cert`, `pki_dir`); the OPC UA client helpers (`read`,
`value`, `tag_node`, `write_status`, `Collect`, `secure_client`).

Invariants: `sim` hands over the plant running, with no fault, not paused and remote
granted, and leaves it so; every client made here uses a REQUEST_TIMEOUT_S request timeout
(asyncua's 2 s default is short on a busy machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.demo.certs import OpcUaSecurity
from agent.demo.runner import SimulatedPlant
from agent.demo.tags import NAMESPACE_URI
from tests.support.wait import eventually

TIME_SCALE = 10.0
"""Sim seconds per wall second in these tests: the 15 s watchdog trips in 1.5 s."""
REQUEST_TIMEOUT_S = 10.0
"""asyncua's per-request timeout for the test clients (its 2 s default is short under load)."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim_plant() -> AsyncIterator[SimulatedPlant]:
    async with SimulatedPlant(seed=7, time_scale=TIME_SCALE, opcua_port=0, modbus_port=0) as plant:
        yield plant


@pytest_asyncio.fixture(loop_scope="module")
async def sim(sim_plant: SimulatedPlant) -> AsyncIterator[SimulatedPlant]:
    """The module's plant, reset: no faults, not paused, running, remote enabled."""
    mill = sim_plant.mill
    mill.clear()
    if not mill.read("Running").value:
        mill.operator("reset_trip")
    mill.operator("remote_enable", value=True)  # also acknowledges a latched watchdog
    sim_plant.resume()
    yield sim_plant
    sim_plant.resume()
    mill.clear()


@pytest_asyncio.fixture(loop_scope="module")
async def opcua(sim: SimulatedPlant) -> AsyncIterator[Client]:
    client = Client(sim.opcua_url, timeout=REQUEST_TIMEOUT_S)
    await client.connect()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def tag_node(client: Client, name: str) -> Node:
    """Resolve `nsu=<NAMESPACE_URI>;s=Plant/Mill1/<name>` the way a driver must."""
    index = await client.get_namespace_index(NAMESPACE_URI)
    return client.get_node(ua.NodeId(cast(Any, f"Plant/Mill1/{name}"), cast(Any, index)))


def value_only(value: float | int | bool, kind: ua.VariantType) -> ua.DataValue:
    """A DataValue with the value alone (no timestamps), typed like the node: PLC style."""
    return ua.DataValue(ua.Variant(value, kind))


_HEARTBEATS = itertools.count(1)


@pytest_asyncio.fixture(loop_scope="module")
async def heartbeat(opcua: Client) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Writes Heartbeat over OPC UA every 0.1 s wall (1 s sim); call the result to stop it.
    The test starts once the PLC echoed a beat (it has seen the agent alive)."""
    node = await tag_node(opcua, "Heartbeat")
    first = next(_HEARTBEATS) * 1_000_000 + 1  # above every beat an earlier test wrote

    async def beat() -> None:
        for n in itertools.count(first):
            await node.write_value(value_only(n, ua.VariantType.Int32))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(beat())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def echoed() -> bool:
        assert not task.done(), task
        return int(await value(opcua, "HeartbeatEcho") or 0) >= first

    await eventually(echoed)
    yield stop
    await stop()


async def read(client: Client, name: str) -> ua.DataValue:
    return await (await tag_node(client, name)).read_data_value(raise_on_bad_status=False)


async def value(client: Client, name: str) -> Any:
    dv = await read(client, name)
    return None if dv.Value is None else dv.Value.Value


def status_name(dv: ua.DataValue) -> str:
    assert dv.StatusCode is not None
    return str(dv.StatusCode.name)


async def write_status(client: Client, name: str, dv: ua.DataValue) -> str:
    try:
        await (await tag_node(client, name)).write_value(dv)
    except UaStatusCodeError as exc:
        return type(exc).__name__
    return "Good"


class Collect:
    """A subscription handler that keeps every DataValue it is sent."""

    def __init__(self) -> None:
        self.values: list[ua.DataValue] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.values.append(data.monitored_item.Value)


CLIENT_URI = "urn:edge-agent:test:client"


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("client-pki")
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key,
        "test client",
        {},
        [x509.UniformResourceIdentifier(CLIENT_URI)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    (folder / "cert.der").write_bytes(cert.public_bytes(Encoding.DER))
    (folder / "key.pem").write_bytes(dump_private_key_as_pem(key))
    return folder / "cert.der", folder / "key.pem"


async def secure_client(
    plant: SimulatedPlant, certs: tuple[Path, Path], policy: str, password: str
) -> Client:
    client = Client(plant.opcua_url, timeout=REQUEST_TIMEOUT_S)
    client.application_uri = CLIENT_URI
    client.set_user("operator")
    client.set_password(password)
    await client.set_security_string(f"{policy},SignAndEncrypt,{certs[0]},{certs[1]}")
    return client


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_plant(pki_dir: Path) -> AsyncIterator[SimulatedPlant]:
    security = OpcUaSecurity(pki_dir, users={"operator": "s3cret"})
    async with SimulatedPlant(
        opcua_port=0, modbus_port=0, security=security, time_scale=TIME_SCALE
    ) as plant:
        yield plant
