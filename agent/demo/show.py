"""`edge-agent demo`: the simulated mill, watched through its own OPC UA and Modbus servers.

Owns: the demo's process life (start the simulated plant, watch it, stop it on Ctrl-C or
after `--duration`), the live terminal view (rich) and the plain line output used when
stdout is not a terminal.
Must not: read the mill's Python objects for what it shows: every value shown comes over
the protocols, as the agent will see it (only the scenario banner reads simulator state).
Invariants: exits 0 after `--duration`; everything it started is stopped on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError
from pymodbus.client import AsyncModbusTcpClient
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from agent.demo import register_map
from agent.demo.runner import SimulatedPlant
from agent.demo.tags import BY_NAME, NAMESPACE_URI
from agent.logs import configure_logging

SHOWN = (
    "FeedRate",
    "SeparatorSpeed",
    "LimestoneShare",
    "MillPower",
    "MillDifferentialPressure",
    "Vibration",
    "MillOutletTemperature",
    "ProductFineness",
    "LabBlaine",
    "LabStrength28d",
    "SeparatorSpeedSetpointEffective",
    "Running",
    "RemoteEnable",
    "RemoteActive",
    "WatchdogFault",
    "HeartbeatEcho",
)
MODBUS_SHOWN = (
    (register_map.FEEDERS_UNIT, "TotalFeedRate"),
    (register_map.FEEDERS_UNIT, "ClinkerFeedRate"),
    (register_map.FEEDERS_UNIT, "LimestoneFeedRate"),
    (register_map.PACKER_UNIT, "BagCount"),
    (register_map.PACKER_UNIT, "PackingRate"),
    (register_map.PACKER_UNIT, "LastBagWeight"),
)
REFRESH_S = 0.5


@dataclass
class View:
    """What the demo last read over the protocols."""

    values: dict[str, ua.DataValue] = field(default_factory=dict)
    modbus: dict[str, str] = field(default_factory=dict)
    reads: int = 0
    errors: int = 0
    last_error: str = ""


def _fmt(value: ua.DataValue | None) -> tuple[str, str, str]:
    if value is None:
        return "-", "-", "-"
    status = value.StatusCode.name if value.StatusCode is not None else "Good"
    raw = value.Value.Value if value.Value is not None else None
    if isinstance(raw, bool):
        text = "yes" if raw else "no"
    elif isinstance(raw, float):
        text = "-" if math.isnan(raw) else f"{raw:,.2f}"
    else:
        text = "-" if raw is None else str(raw)
    stamp = value.SourceTimestamp
    age = f"{time.time() - stamp.timestamp():.1f} s" if stamp is not None else "-"
    return text, status, age


def _table(view: View, plant: SimulatedPlant, elapsed: float) -> Group:
    table = Table(title=f"Vertical roller mill 1 over OPC UA ({plant.opcua_url})", expand=True)
    for column in ("tag", "value", "unit", "status", "age"):
        table.add_column(column, justify="right" if column in ("value", "age") else "left")
    for name in SHOWN:
        text, status, age = _fmt(view.values.get(name))
        table.add_row(name, text, BY_NAME[name].unit, status, age)
    modbus = Table(
        title=f"Feeders and packer over Modbus (127.0.0.1:{plant.modbus_port})", expand=True
    )
    modbus.add_column("register")
    modbus.add_column("value", justify="right")
    for key, value in view.modbus.items():
        modbus.add_row(key, value)
    note = (
        f"[bold]t = {elapsed:5.1f} s[/] wall, simulated x{plant.time_scale:g} | "
        f"{view.reads} reads, {view.errors} errors {view.last_error}\n"
        "No agent is connected yet: the PLC's heartbeat watchdog latches and the mill "
        "stays in local control, as a real PLC would."
    )
    return Group(table, modbus, note)


async def _read_opcua(client: Client, view: View, nodes: list[Node]) -> None:
    values = await client.read_attributes(nodes, AttributeIds.Value)
    view.values = dict(zip(SHOWN, values, strict=True))


async def _read_modbus(client: AsyncModbusTcpClient, view: View) -> None:
    shown: dict[str, str] = {}
    for unit_id, name in MODBUS_SHOWN:
        p = register_map.point(unit_id, name)
        reply = await client.read_input_registers(p.address, count=p.width, device_id=unit_id)
        if reply.isError():
            shown[name] = f"exception {reply}"
            continue
        value = register_map.decode(p, list(reply.registers))
        shown[name] = f"{value:,.1f} {p.unit}" if isinstance(value, float) else f"{value} {p.unit}"
    view.modbus = shown


async def _watch(plant: SimulatedPlant, duration_s: float | None, plain: bool) -> None:
    view = View()
    console = Console()
    start = time.monotonic()
    async with Client(plant.opcua_url, timeout=5) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        nodes = [client.get_node(f"ns={index};s=Plant/Mill1/{name}") for name in SHOWN]
        modbus = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus_port, timeout=2)
        await modbus.connect()
        live = contextlib.nullcontext() if plain else Live(console=console, auto_refresh=False)
        last_line = -math.inf
        try:
            with live as screen:
                while duration_s is None or time.monotonic() - start < duration_s:
                    try:
                        await _read_opcua(client, view, nodes)
                        await _read_modbus(modbus, view)
                        view.reads += 1
                    except (UaError, OSError, TimeoutError) as exc:
                        view.errors += 1
                        view.last_error = f"(last: {type(exc).__name__})"
                    elapsed = time.monotonic() - start
                    if screen is not None:
                        screen.update(_table(view, plant, elapsed), refresh=True)
                    elif elapsed - last_line >= 2.0:
                        last_line = elapsed
                        print(_line(view, elapsed), flush=True)
                    await asyncio.sleep(REFRESH_S)
        finally:
            modbus.close()
    print(
        f"demo finished after {time.monotonic() - start:.1f} s: {view.reads} reads over "
        f"OPC UA and Modbus, {view.errors} errors",
        flush=True,
    )


def _line(view: View, elapsed: float) -> str:
    parts = [f"t={elapsed:6.1f}s"]
    for name in (
        "FeedRate",
        "SeparatorSpeed",
        "MillPower",
        "ProductFineness",
        "RemoteActive",
        "WatchdogFault",
    ):
        parts.append(f"{name}={_fmt(view.values.get(name))[0]}")
    parts += [f"{key}={value}" for key, value in list(view.modbus.items())[:3]]
    return " ".join(parts)


async def _demo(
    *,
    duration_s: float | None,
    seed: int,
    time_scale: float,
    opcua_port: int,
    modbus_port: int,
    plain: bool,
) -> None:
    async with SimulatedPlant(
        seed=seed,
        time_scale=time_scale,
        lab_time_scale=1440.0,
        opcua_port=opcua_port,
        modbus_port=modbus_port,
    ) as plant:
        print(
            f"simulated mill serving OPC UA at {plant.opcua_url} and Modbus TCP at "
            f"127.0.0.1:{plant.modbus_port} (Ctrl-C to stop)",
            flush=True,
        )
        await _watch(plant, duration_s, plain)


def run_demo(
    *,
    duration_s: float | None,
    seed: int,
    time_scale: float,
    opcua_port: int,
    modbus_port: int,
    plain: bool,
) -> int:
    """Run the demo in this process; return the exit code."""
    configure_logging("warning")
    try:
        asyncio.run(
            _demo(
                duration_s=duration_s,
                seed=seed,
                time_scale=time_scale,
                opcua_port=opcua_port,
                modbus_port=modbus_port,
                plain=plain,
            )
        )
    except KeyboardInterrupt:
        print("demo stopped", file=sys.stderr)
    return 0
