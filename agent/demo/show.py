"""`edge-agent demo`: the simulated mill and the agent reading it, together in one process.

Owns: the demo's process life (start the simulated plant, start the agent on a copy of
config/demo.toml pointed at the plant's ports, watch, stop on Ctrl-C or after `--duration`),
the live terminal view (rich) and the plain line output used when stdout is not a terminal.
Must not: show the mill's Python state as if the agent saw it: every value in the tables is
the agent's latest sample, as it arrived over OPC UA or Modbus.
Invariants: exits 0 after `--duration`; everything it started is stopped on exit (the
agent first, then the plant); the demo's state lives in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from agent.app import App
from agent.configfile import load_config
from agent.demo.cloud import CloudReceiver
from agent.demo.runner import SimulatedPlant
from agent.logs import configure_logging
from drivers.base import Sample

MILL_SHOWN = (
    "FeedRate", "SeparatorSpeed", "LimestoneShare", "MillPower", "MillDifferentialPressure",
    "Vibration", "MillOutletTemperature", "ProductFineness", "LabBlaine", "LabStrength28d",
    "SeparatorSpeedSetpointEffective", "Running", "RemoteEnable", "RemoteActive",
    "WatchdogFault", "HeartbeatEcho",
)  # fmt: skip
MODBUS_SHOWN = (
    "TotalFeedRate", "ClinkerFeedRate", "LimestoneFeedRate", "BagCount", "PackingRate",
    "LastBagWeight",
)  # fmt: skip
LINE_TAGS = ("FeedRate", "SeparatorSpeed", "MillPower", "ProductFineness", "RemoteActive",
             "WatchdogFault", "TotalFeedRate", "BagCount")  # fmt: skip
REFRESH_S = 0.5


def demo_config_text() -> str:
    """config/demo.toml from the source tree, or the copy packaged inside the wheel."""
    for candidate in (Path(__file__).parents[2] / "config" / "demo.toml",
                      Path(__file__).with_name("demo.toml")):  # fmt: skip
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError("config/demo.toml is missing from this installation")


def write_demo_config(folder: Path, opcua_url: str, modbus_port: int, cloud_url: str) -> Path:
    """The demo config with the plant's real ports and a private state directory."""
    text = demo_config_text()
    text = re.sub(r'endpoint = "opc\.tcp://[^"]*"', f'endpoint = "{opcua_url}"', text)
    text = re.sub(r"\nport = 5020\n", f"\nport = {modbus_port}\n", text)
    text = re.sub(r'state_dir = "[^"]*"', 'state_dir = "state"', text)
    text = re.sub(r'\nurl = "http://127\.0\.0\.1:8800"', f'\nurl = "{cloud_url}"', text)
    path = folder / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _fmt(sample: Sample | None) -> tuple[str, str, str]:
    if sample is None:
        return "-", "no data yet", "-"
    raw = sample.value
    if isinstance(raw, bool):
        text = "yes" if raw else "no"
    elif isinstance(raw, float):
        text = "-" if math.isnan(raw) else f"{raw:,.2f}"
    else:
        text = "-" if raw is None else str(raw)
    return text, sample.quality.name.lower(), f"{time.time() - sample.source_time:.1f} s"


def _view(app: App, plant: SimulatedPlant, cloud: CloudReceiver, elapsed: float) -> Group:
    units = {tag.name: tag.unit for tag in app.loaded.settings.tags}
    tables = []
    for title, names in (
        (f"Mill 1, as the agent reads it over OPC UA ({plant.opcua_url})", MILL_SHOWN),
        (f"Feeders and packer over Modbus TCP (127.0.0.1:{plant.modbus_port})", MODBUS_SHOWN),
    ):
        table = Table(title=title, expand=True)
        for column in ("tag", "value", "unit", "quality", "age"):
            table.add_column(column, justify="right" if column in ("value", "age") else "left")
        for name in names:
            text, quality, age = _fmt(app.latest.get(name))
            table.add_row(name, text, units.get(name, ""), quality, age)
        tables.append(table)
    drivers = ", ".join(f"{d.name} {d.state}" for d in app.drivers)
    sync = _sync_line(app, cloud)
    received = ", ".join(f"{k} {v:,}" for k, v in sorted(app.latest.received.items()))
    note = (
        f"[bold]t = {elapsed:5.1f} s[/] wall, mill simulated x{plant.time_scale:g} | "
        f"sources: {drivers} | samples received: {received}\n{sync}\n"
        "The control loop is not running yet, so nobody writes the PLC heartbeat: the "
        "simulated PLC latches its watchdog and keeps the mill in local control."
    )
    return Group(*tables, note)


def _sync_line(app: App, cloud: CloudReceiver) -> str:
    """Buffer and sync state: the outage budget and what the receiver holds."""
    if app.buffer is None:
        return "buffer: opening"
    budget = app.buffer.budget()
    oldest = "-" if budget.oldest_unsent_age_s is None else f"{budget.oldest_unsent_age_s:.0f} s"
    hours = "-" if budget.hours_left is None else f"{budget.hours_left:,.0f} h"
    acked = app.uploader.stats().acks if app.uploader is not None else 0
    held = cloud.store.counts(app.loaded.settings.agent.id).get("samples", 0)
    return (
        f"buffer: {budget.bytes_used / 1e6:.2f} MB, {budget.blocks_pending} blocks pending, "
        f"oldest unsent {oldest}, {hours} left at this rate | sync: {acked} blocks "
        f"acknowledged, the cloud holds {held:,} samples"
    )


def _line(app: App, elapsed: float) -> str:
    parts = [f"t={elapsed:6.1f}s"]
    units = {tag.name: tag.unit for tag in app.loaded.settings.tags}
    for name in LINE_TAGS:
        text = _fmt(app.latest.get(name))[0]
        parts.append(f"{name}={text}{' ' + units[name] if units.get(name) else ''}")
    return " ".join(parts)


async def _watch(
    app: App, plant: SimulatedPlant, cloud: CloudReceiver, duration_s: float | None, plain: bool
) -> None:
    start = time.monotonic()
    live = contextlib.nullcontext() if plain else Live(console=Console(), auto_refresh=False)
    last_line = -math.inf
    with live as screen:
        while duration_s is None or time.monotonic() - start < duration_s:
            elapsed = time.monotonic() - start
            if screen is not None:
                screen.update(_view(app, plant, cloud, elapsed), refresh=True)
            elif elapsed - last_line >= 2.0:
                last_line = elapsed
                print(_line(app, elapsed), "|", _sync_line(app, cloud), flush=True)
            await asyncio.sleep(REFRESH_S)
    received = ", ".join(f"{k} {v}" for k, v in sorted(app.latest.received.items()))
    print(
        f"demo finished after {time.monotonic() - start:.1f} s: the agent received samples "
        f"over OPC UA and Modbus: {received}",
        flush=True,
    )


async def _demo(
    *,
    duration_s: float | None,
    seed: int,
    time_scale: float,
    opcua_port: int,
    modbus_port: int,
    plain: bool,
) -> None:
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as folder:
        async with (
            SimulatedPlant(seed=seed, time_scale=time_scale, lab_time_scale=1440.0,
                           opcua_port=opcua_port, modbus_port=modbus_port) as plant,
            CloudReceiver(Path(folder) / "cloud") as cloud,
        ):  # fmt: skip
            loaded = load_config(
                write_demo_config(Path(folder), plant.opcua_url, plant.modbus_port, cloud.url)
            )
            state_dir = loaded.settings.agent.state_dir
            state_dir.mkdir(mode=0o750)
            app = App(loaded, state_dir)
            print(
                f"simulated mill serving OPC UA at {plant.opcua_url} and Modbus TCP at "
                f"127.0.0.1:{plant.modbus_port}; the agent reads "
                f"{len(loaded.settings.tags)} tags from it (Ctrl-C to stop)",
                flush=True,
            )
            agent = asyncio.create_task(app.run(), name="agent")
            try:
                await _watch(app, plant, cloud, duration_s, plain)
            finally:
                agent.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await agent


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
