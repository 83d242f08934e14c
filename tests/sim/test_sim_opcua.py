"""The simulated mill over a real asyncua server, seen by a real asyncua client.

One plant per module (tests.support.plant); the server_down test restarts the listener and runs
last; the secure server is a second plant in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from agent.demo.certs import CERT_FILE
from agent.demo.runner import MAX_LAG_S, TICK_S, SimulatedPlant
from agent.demo.tags import ALL_TAGS, BY_NAME, Kind
from tests.support.plant import (
    REQUEST_TIMEOUT_S,
    TIME_SCALE,
    Collect,
    read,
    secure_client,
    status_name,
    tag_node,
    value,
    value_only,
    write_status,
)
from tests.support.wait import WAIT_S, eventually, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

D, I32, B = ua.VariantType.Double, ua.VariantType.Int32, ua.VariantType.Boolean
EXPECTED_TYPE = {Kind.DOUBLE: D, Kind.INT32: I32, Kind.BOOLEAN: B}


async def test_address_space_has_every_tag_with_type_unit_and_range(opcua: Client) -> None:
    index = await opcua.get_namespace_index("urn:edge-agent:demo:cement-mill")
    mill1 = await opcua.nodes.objects.get_child([f"{index}:Plant", f"{index}:Mill1"])
    children = {str((await c.read_browse_name()).Name): c for c in await mill1.get_children()}
    assert set(children) == {t.name for t in ALL_TAGS}
    assert children["FeedRate"].nodeid.to_string() == f"ns={index};s=Plant/Mill1/FeedRate"
    for spec in ALL_TAGS:
        node = await tag_node(opcua, spec.name)
        assert await node.read_data_type_as_variant_type() == EXPECTED_TYPE[spec.kind], spec.name
        dv = await node.read_data_value()
        assert dv.Value is not None and dv.Value.VariantType == EXPECTED_TYPE[spec.kind]
    feed = await tag_node(opcua, "FeedRate")
    units = await (await feed.get_child("0:EngineeringUnits")).read_value()
    assert units.DisplayName.Text == "t/h" and units.UnitId == int.from_bytes(b"E18", "big")
    setpoint = await tag_node(opcua, "FeedRateSetpoint")
    eu_range = await (await setpoint.get_child("0:EURange")).read_value()
    assert (eu_range.Low, eu_range.High) == BY_NAME["FeedRateSetpoint"].normal
    hard = await (await setpoint.get_child("0:InstrumentRange")).read_value()
    assert (hard.Low, hard.High) == (0.0, 300.0)
    assert ua.AccessLevel.CurrentWrite in await setpoint.get_access_level()
    assert ua.AccessLevel.CurrentWrite not in await feed.get_access_level()


async def test_values_are_fresh_and_equal_to_the_mill(opcua: Client, sim: SimulatedPlant) -> None:
    first = await read(opcua, "FeedRate")
    assert first.SourceTimestamp is not None and first.ServerTimestamp is not None
    # Fresh: the served value is the mill's latest tick (sim time on the wall clock), and
    # a later read serves a later one.
    latest = sim.sim_to_wall(sim.mill.read("FeedRate").source_time)
    assert first.SourceTimestamp.timestamp() <= latest + 1e-3

    async def newer() -> bool:
        second = await read(opcua, "FeedRate")
        assert second.SourceTimestamp is not None and first.SourceTimestamp is not None
        return second.SourceTimestamp > first.SourceTimestamp

    await eventually(newer)
    await sim.pause()
    dv = await read(opcua, "FeedRate")
    truth = sim.mill.read("FeedRate")
    assert dv.Value is not None and dv.Value.Value == truth.value
    assert dv.SourceTimestamp is not None
    assert dv.SourceTimestamp.timestamp() == pytest.approx(
        sim.sim_to_wall(truth.source_time), abs=1e-3
    )


async def test_the_tick_task_keeps_the_time_scale_and_pauses(sim: SimulatedPlant) -> None:
    # Sim time follows the wall clock at TIME_SCALE: never ahead of it (its wall-clock
    # equivalent is never in the future), and behind it only by how late the tick task runs
    # (MAX_LAG_S at most, else the runner re-anchors). A busy machine may make it late, never
    # fast: every check is an order between two clocks or a polled condition, no duration.
    await until_sim(sim, sim.mill.time + 3 * TIME_SCALE)
    assert sim.sim_to_wall(sim.mill.time) < time.time() + 0.05  # never ahead
    await until(lambda: time.time() - sim.sim_to_wall(sim.mill.time) < MAX_LAG_S, "fresh")
    await sim.pause()
    paused_at = sim.mill.time
    # Paused: nothing moves while the wall clock passes three ticks' worth (polled).
    await until(lambda: time.time() > sim.sim_to_wall(paused_at) + 3 * TICK_S, "3 ticks due")
    assert sim.mill.time == paused_at
    asked = time.time()
    sim.resume()
    # Resumed from now: the mapping starts at the pause's sim time, on the wall clock of the
    # resume, so sim time does not jump over the pause (3 s of sim time) ...
    assert sim.sim_to_wall(paused_at) >= asked
    await until_sim(sim, paused_at + TICK_S)
    # ... and stays behind the wall clock from there.
    assert sim.sim_to_wall(sim.mill.time) < time.time() + 0.05


async def until_sim(sim: SimulatedPlant, sim_time: float) -> None:
    """Until the mill's clock reaches `sim_time` (polled; fails after WAIT_S)."""

    async def reached() -> bool:
        return sim.mill.time >= sim_time

    await eventually(reached)


async def test_a_subscription_receives_fresh_changes(opcua: Client, sim: SimulatedPlant) -> None:
    collect = Collect()
    subscription = await opcua.create_subscription(50, collect)
    await subscription.subscribe_data_change(await tag_node(opcua, "FeedRate"))

    async def five() -> bool:
        return len(collect.values) >= 5

    await eventually(five)
    await subscription.delete()
    stamps = [dv.SourceTimestamp for dv in collect.values if dv.SourceTimestamp is not None]
    assert len(stamps) >= 5 and stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1].timestamp() <= time.time()  # fresh changes: sim time on the wall clock
    current_time = opcua.get_node("i=2258")  # ServerStatus.CurrentTime: a clock, not stuck
    first = await current_time.read_value()

    async def ticking() -> bool:
        later = await current_time.read_value()
        assert later.timestamp() <= time.time()  # the wall clock at a publish, never ahead
        return bool(later > first)

    await eventually(ticking, "ServerStatus.CurrentTime advances")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("FeedRate", D), ("RemoteEnable", B), ("HeartbeatEcho", I32), ("RemoteActive", B)],
)
async def test_read_only_nodes_refuse_writes(
    opcua: Client, sim: SimulatedPlant, name: str, kind: ua.VariantType
) -> None:
    before = sim.mill.read(name).value
    zero = {D: 0.0, B: False, I32: 0}[kind]
    status = await write_status(opcua, name, value_only(zero, kind))
    assert status in {"BadNotWritable", "BadUserAccessDenied"}
    assert sim.mill.read(name).value == before or name == "FeedRate"


async def test_setpoint_write_reaches_the_mill_and_the_effective_setpoint_follows(
    opcua: Client, sim: SimulatedPlant, heartbeat: Callable[[], Awaitable[None]]
) -> None:
    assert (await value(opcua, "RemoteActive")) is True
    target = float(sim.mill.read("SeparatorSpeedSetpointEffective").value or 0.0) + 10.0
    assert await write_status(opcua, "SeparatorSpeedSetpoint", value_only(target, D)) == "Good"
    assert sim.mill.read("SeparatorSpeedSetpoint").value == target
    assert (await value(opcua, "SeparatorSpeedSetpoint")) == target

    async def effective_reached() -> bool:
        dv = await read(opcua, "SeparatorSpeedSetpointEffective")
        return dv.Value is not None and abs(dv.Value.Value - target) < 1e-6

    await eventually(effective_reached)  # 2 rpm/s sim ramp: 5 s sim = 0.5 s


async def test_writes_are_checked_like_a_plc(opcua: Client, sim: SimulatedPlant) -> None:
    before = sim.mill.read("FeedRateSetpoint").value
    assert await write_status(opcua, "FeedRateSetpoint", value_only(400.0, D)) == "BadOutOfRange"
    now = cast(ua.DateTime, dt.datetime.now(dt.UTC))
    stamped = ua.DataValue(ua.Variant(190.0, D), SourceTimestamp=now)
    assert await write_status(opcua, "FeedRateSetpoint", stamped) == "BadWriteNotSupported"
    as_int64 = value_only(190, ua.VariantType.Int64)
    assert await write_status(opcua, "FeedRateSetpoint", as_int64) == "BadTypeMismatch"
    assert sim.mill.read("FeedRateSetpoint").value == before
    assert await write_status(opcua, "Heartbeat", value_only(4242, I32)) == "Good"

    async def echoed() -> bool:
        return bool(await value(opcua, "HeartbeatEcho") == 4242)

    await eventually(echoed)


@pytest.mark.parametrize("code", ["BadUserAccessDenied", "BadOutOfRange"])
async def test_plc_reject_writes_reaches_the_client(
    opcua: Client, sim: SimulatedPlant, code: str
) -> None:
    sim.mill.inject("plc_reject_writes", code=code)
    assert await write_status(opcua, "FeedRateSetpoint", value_only(181.0, D)) == code


@pytest.mark.parametrize(("kind", "tag", "params", "expected"), [
    ("bad", "MillPower", {}, "BadSensorFailure"),
    ("bad", "Vibration", {"code": "BadNoCommunication"}, "BadNoCommunication"),
    ("uncertain", "Vibration", {"code": "UncertainLastUsableValue"}, "UncertainLastUsableValue"),
    ("uncertain", "MillPower", {}, "UncertainSensorNotAccurate"),
    ("local_override", "FeedRate", {}, "GoodLocalOverride"),
])  # fmt: skip
async def test_status_faults_show_in_the_status_code(
    opcua: Client, sim: SimulatedPlant, kind: str, tag: str, params: dict[str, str], expected: str
) -> None:
    sim.mill.inject(kind, tag, **params)

    async def shows() -> bool:
        return status_name(await read(opcua, tag)) == expected

    await eventually(shows)
    dv = await read(opcua, tag)
    assert (dv.Value is None or dv.Value.Value is None) == expected.startswith("Bad")
    sim.mill.clear(kind, tag)
    await eventually(lambda: _is_good(opcua, tag))


async def _is_good(client: Client, tag: str) -> bool:
    return status_name(await read(client, tag)) == "Good"


async def test_freeze_stops_value_and_source_timestamp(opcua: Client, sim: SimulatedPlant) -> None:
    sim.mill.inject("freeze", "FeedRate")
    await until_sim(sim, sim.mill.time + 2 * TICK_S)  # the freeze applied, published
    first = await read(opcua, "FeedRate")
    await until_sim(sim, sim.mill.time + 5.0)  # FeedRate would have been resampled 50 times
    second = await read(opcua, "FeedRate")
    assert status_name(second) == "Good"
    assert (second.SourceTimestamp, second.Value) == (first.SourceTimestamp, first.Value)
    assert second.SourceTimestamp is not None
    assert sim.sim_to_wall(sim.mill.time) - second.SourceTimestamp.timestamp() >= 5.0 / TIME_SCALE


async def test_clock_skew_offsets_source_timestamps(opcua: Client, sim: SimulatedPlant) -> None:
    sim.mill.inject("clock_skew", offset_s=600.0)
    await until_sim(sim, sim.mill.time + 2 * TICK_S)  # the skew applied, published
    await sim.pause()  # compare with the mill's own tick, not with a moving wall clock
    dv = await read(opcua, "FeedRate")
    assert dv.SourceTimestamp is not None
    offset = dv.SourceTimestamp.timestamp() - sim.sim_to_wall(sim.mill.time)
    assert offset == pytest.approx(600.0 / TIME_SCALE, abs=1.0 / TIME_SCALE)  # one sim second


async def test_remote_disable_drops_remote_enable_and_active(
    opcua: Client, sim: SimulatedPlant
) -> None:
    sim.mill.inject("remote_disable")

    async def dropped() -> bool:
        enable, active = await value(opcua, "RemoteEnable"), await value(opcua, "RemoteActive")
        return enable is False and active is False

    await eventually(dropped)


async def test_trip_stops_the_mill(opcua: Client, sim: SimulatedPlant) -> None:
    sim.mill.inject("trip")

    async def tripped() -> bool:
        running, active = await value(opcua, "Running"), await value(opcua, "RemoteActive")
        return running is False and active is False

    await eventually(tripped)


async def test_watchdog_latches_when_the_heartbeat_stops(
    opcua: Client, sim: SimulatedPlant, heartbeat: Callable[[], Awaitable[None]]
) -> None:
    assert (await value(opcua, "WatchdogFault")) is False  # the fixture saw a beat echoed
    assert (await value(opcua, "RemoteActive")) is True
    await heartbeat()  # the agent "dies": 15 s sim watchdog = 1.5 s wall

    async def latched() -> bool:
        return (await value(opcua, "WatchdogFault")) is True

    await eventually(latched)
    assert (await value(opcua, "RemoteActive")) is False
    node = await tag_node(opcua, "Heartbeat")
    await node.write_value(value_only(99_999, I32))  # beating again does not unlatch
    await until_sim(sim, sim.mill.time + 1.0)  # ten PLC scans saw it
    assert (await value(opcua, "WatchdogFault")) is True


async def test_watchdog_stall_stops_the_echo(
    opcua: Client, sim: SimulatedPlant, heartbeat: Callable[[], Awaitable[None]]
) -> None:
    sim.mill.inject("watchdog_stall")
    await until_sim(sim, sim.mill.time + 2 * TICK_S)  # the stall applied, published
    first = await value(opcua, "HeartbeatEcho")

    async def beats_go_on() -> bool:  # a few more beats written, however long they take
        return int(sim.mill.read("Heartbeat").value or 0) > int(first) + 3

    await eventually(beats_go_on)
    await until_sim(sim, sim.mill.time + 2 * TICK_S)  # ... and seen by the PLC
    assert await value(opcua, "HeartbeatEcho") == first
    assert sim.mill.read("Heartbeat").value != first


async def test_server_down_drops_the_session_and_comes_back_on_the_same_port(
    sim: SimulatedPlant, tmp_path: Path
) -> None:
    state = tmp_path / "session.json"  # asyncua 2.1 clients can resume a session (Part 4 6.7)
    first = Client(sim.opcua_url, timeout=REQUEST_TIMEOUT_S)
    first.session_state_path = state
    await first.connect()
    subscription = await first.create_subscription(100, Collect())  # keeps the session alive
    await subscription.subscribe_data_change(await tag_node(first, "FeedRate"))
    token = first.uaclient.session.authentication_token
    saved = state.read_text()
    sim.mill.inject("server_down", duration_s=1e9)  # down until cleared below, however slow

    async def down() -> bool:
        return not sim.opcua.serving

    await eventually(down)
    with pytest.raises((ConnectionError, OSError, TimeoutError, UaError)):
        await read(first, "FeedRate")
    with contextlib.suppress(Exception):
        await first.disconnect()  # this also deletes the state file ...
    state.write_text(saved)  # ... which a crashed agent would have kept
    with pytest.raises(OSError):
        await Client(sim.opcua_url, timeout=1).connect()
    sim.mill.clear("server_down")  # the PLC is back
    began = time.monotonic()
    while True:
        client = Client(sim.opcua_url, timeout=REQUEST_TIMEOUT_S)
        client.session_state_path = state
        try:
            await client.connect()
            break
        except OSError:
            assert time.monotonic() - began < WAIT_S, "server did not come back"
            await asyncio.sleep(0.1)
    try:
        assert client.uaclient.session.authentication_token != token  # the old one is gone
        assert status_name(await read(client, "FeedRate")) == "Good"
    finally:
        await client.disconnect()


# --- SignAndEncrypt + username ----------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256Sha256RsaPss"])
async def test_sign_and_encrypt_with_password_reads_and_writes(
    secure_plant: SimulatedPlant, client_cert: tuple[Path, Path], policy: str, pki_dir: Path
) -> None:
    client = await secure_client(secure_plant, client_cert, policy, "s3cret")
    async with client:
        assert status_name(await read(client, "FeedRate")) == "Good"
        assert await write_status(client, "FanSpeedSetpoint", value_only(86.0, D)) == "Good"
    assert secure_plant.mill.read("FanSpeedSetpoint").value == 86.0
    assert (pki_dir / CERT_FILE).is_file()


async def test_wrong_password_and_anonymous_are_refused(
    secure_plant: SimulatedPlant, client_cert: tuple[Path, Path]
) -> None:
    client = await secure_client(secure_plant, client_cert, "Basic256Sha256", "wrong")
    with pytest.raises(UaStatusCodeError):
        await client.connect()
    with contextlib.suppress(Exception):
        await client.disconnect()
    anonymous = Client(secure_plant.opcua_url, timeout=REQUEST_TIMEOUT_S)
    with pytest.raises((UaError, OSError, TimeoutError)):
        await anonymous.connect()
