"""Run the simulated plant in real time: one Mill, its OPC UA and Modbus servers, a tick task.

Owns: the wall-clock <-> sim-time mapping (wall = wall0 + (sim - sim0) / time_scale), the
tick task that steps the mill `time_scale` x 10 ticks per wall second and then publishes one
snapshot to both servers (and, with `lab_csv`, writes the LIMS export files that are due), the
`server_down` fault's effect on the OPC UA server, and the order of start-up and shut-down.
Must not: contain process physics or PLC logic (the mill), protocol details (the servers), or
block the event loop for long: stepping runs in chunks of at most ~40 ms between yields.
Invariants: sim time never runs ahead of the mapping, so every published SourceTimestamp
is at most one tick in the future of the wall clock; both servers publish the lab's
`<Tag>SampleTime` values through the same mapping (a mill read in-process keeps sim time);
fractional ticks accumulate (any time_scale > 0 works); when the loop cannot keep up for
more than a second of wall time the backlog is dropped and the mapping re-anchored (logged),
so timestamps stay fresh and monotonic; after `pause()` returns, the mill is not stepped
until `resume()`; a LIMS export file that cannot be written is retried at the next tick (first
failure WARNING, repeats DEBUG, recovery INFO), never stopping the plant.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

from agent.demo.certs import OpcUaSecurity
from agent.demo.lab_export import LabCsvExport
from agent.demo.mill import PRODUCT, START_TIME, Mill
from agent.demo.modbus_server import MillModbusServer
from agent.demo.opcua_server import MillOpcUaServer

log = structlog.get_logger(__name__)

TICK_S = 0.1
"""Wall period of the tick task, and the mill's dt (plant-model.md: 10 Hz)."""
CHUNK_BUDGET_S = 0.04
"""Longest the tick task steps the mill before yielding to the event loop."""
ITERATION_BUDGET_S = 0.09
"""Longest one tick iteration spends stepping (catching up) before it publishes."""
MAX_LAG_S = 1.0
"""Wall lag beyond which the backlog is dropped and the mapping re-anchored."""


@dataclass
class TickStats:
    """Running figures of the tick task (read by tests and benchmarks)."""

    iterations: int = 0
    ticks: int = 0
    step_s: float = 0.0
    publish_s: float = 0.0
    max_block_s: float = 0.0
    reanchors: int = 0


class SimulatedPlant:
    """`async with SimulatedPlant(...) as plant:` serves one simulated mill inside the block."""

    def __init__(
        self,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        lab_time_scale: float = 1.0,
        host: str = "127.0.0.1",
        opcua_port: int = 4840,
        modbus_port: int = 5020,
        security: OpcUaSecurity | None = None,
        wd_timeout_s: float = 15.0,
        has_online_psd: bool = True,
        strict_writes: bool = True,
        noise: bool = True,
        lab_noise: bool | None = None,
        start_time: float = START_TIME,
        product: str = PRODUCT,
        lab_csv: Path | None = None,
        lab_csv_timezone: str = "Europe/Berlin",
    ) -> None:
        if not time_scale > 0.0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self.mill = Mill(
            seed,
            lab_time_scale=lab_time_scale,
            wd_timeout_s=wd_timeout_s,
            has_online_psd=has_online_psd,
            dt=TICK_S,
            noise=noise,
            lab_noise=lab_noise,
            start_time=start_time,
            product=product,
        )
        self.lab_export = (
            None
            if lab_csv is None
            else LabCsvExport(lab_csv, start_time=start_time, timezone=lab_csv_timezone)
        )
        self._export_failing = False
        self.opcua = MillOpcUaServer(
            self.mill,
            to_wall=self.sim_to_wall,
            host=host,
            port=opcua_port,
            security=security,
            strict_writes=strict_writes,
        )
        self.modbus = MillModbusServer(
            self.mill, to_wall=self.sim_to_wall, host=host, port=modbus_port
        )
        self.stats = TickStats()
        self._wall0 = self._mono0 = 0.0
        self._sim0 = self.mill.time
        self._tick_cost_s = 2e-5
        self._paused = False
        self._busy = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._anchor()

    @property
    def opcua_url(self) -> str:
        return self.opcua.url

    @property
    def modbus_port(self) -> int:
        return self.modbus.port

    def sim_to_wall(self, sim_time: float) -> float:
        """Wall-clock unix seconds at which the mill reaches (or reached) `sim_time`."""
        return self._wall0 + (sim_time - self._sim0) / self.time_scale

    def _anchor(self) -> None:
        self._wall0, self._mono0, self._sim0 = time.time(), time.monotonic(), self.mill.time

    async def __aenter__(self) -> SimulatedPlant:
        started = time.monotonic()
        await self.opcua.start()
        try:
            await self.modbus.start()
        except BaseException:
            await self.opcua.stop()
            raise
        self._anchor()  # starting took ~2 s: map the current sim time to now, then republish
        snapshot = self.mill.snapshot()
        await self.opcua.publish(snapshot, force=True)
        self.modbus.publish(snapshot, self.mill.time, force=True)
        self._task = asyncio.create_task(self._run(), name="simulated-plant-tick")
        log.info(
            "simulated_plant_started",
            opcua_url=self.opcua_url,
            modbus_port=self.modbus_port,
            time_scale=self.time_scale,
            start_s=round(time.monotonic() - started, 3),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.modbus.stop()
        await self.opcua.stop()
        log.info("simulated_plant_stopped", sim_time=self.mill.time, ticks=self.stats.ticks)

    async def wait(self) -> None:
        """Wait for the tick task (it only ends by cancellation or by raising)."""
        if self._task is not None:
            await self._task

    async def pause(self) -> None:
        """Stop stepping the mill; returns once no step or publish is in flight."""
        self._paused = True
        async with self._busy:
            pass

    def resume(self) -> None:
        """Step again from now on; sim time does not jump over the pause. No-op if running."""
        if self._paused:
            self._anchor()
            self._paused = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wake = loop.time()
        while True:
            wake += TICK_S
            if wake < loop.time() - MAX_LAG_S:
                wake = loop.time()
            await asyncio.sleep(max(0.0, wake - loop.time()))
            if self._paused:
                continue
            async with self._busy:
                await self._advance()
                await self._publish()
            self.stats.iterations += 1

    def _due(self) -> int:
        target = (time.monotonic() - self._mono0) * self.time_scale / TICK_S
        done = round((self.mill.time - self._sim0) / TICK_S)
        return int(target) - done

    async def _advance(self) -> None:
        began = time.perf_counter()
        while (due := self._due()) > 0:
            if time.perf_counter() - began > ITERATION_BUDGET_S:
                if due * TICK_S / self.time_scale > MAX_LAG_S:
                    log.warning("sim_fell_behind", dropped_ticks=due, time_scale=self.time_scale)
                    self.stats.reanchors += 1
                    self._anchor()
                return
            chunk = max(1, min(due, int(CHUNK_BUDGET_S / self._tick_cost_s)))
            t0 = time.perf_counter()
            self.mill.step(chunk)
            spent = time.perf_counter() - t0
            self._tick_cost_s = 0.8 * self._tick_cost_s + 0.2 * max(spent / chunk, 1e-7)
            self.stats.ticks += chunk
            self.stats.step_s += spent
            self.stats.max_block_s = max(self.stats.max_block_s, spent)
            await asyncio.sleep(0)

    async def _publish(self) -> None:
        t0 = time.perf_counter()
        until = self.mill.server_down_until()
        down = until is not None and until > self.mill.time
        if down and self.opcua.serving:
            await self.opcua.go_down()
        elif not down and not self.opcua.serving:
            await self.opcua.come_back()
        snapshot = self.mill.snapshot()
        if self.opcua.serving:
            await self.opcua.publish(snapshot)
        self.modbus.publish(snapshot, self.mill.time)
        if self.lab_export is not None:
            self._export(self.lab_export)
        self.stats.publish_s += time.perf_counter() - t0

    def _export(self, export: LabCsvExport) -> None:
        try:
            files = export.export(self.mill.time, self.mill.lab_results)
        except OSError as exc:
            emit = log.debug if self._export_failing else log.warning
            emit("lab_csv_export_failed", folder=str(export.folder), error=str(exc))
            self._export_failing = True
            return
        if self._export_failing:
            log.info("lab_csv_export_recovered", folder=str(export.folder))
            self._export_failing = False
        for path in files:
            log.debug("lab_csv_exported", file=str(path))


async def run_simulator(
    *,
    opcua_port: int,
    modbus_port: int,
    seed: int,
    time_scale: float,
    lab_time_scale: float,
    host: str = "127.0.0.1",
    security: OpcUaSecurity | None = None,
    lab_csv: Path | None = None,
    lab_csv_timezone: str = "Europe/Berlin",
) -> None:
    """Serve the simulated plant until cancelled (`edge-agent simulate`)."""
    async with SimulatedPlant(
        lab_csv=lab_csv,
        lab_csv_timezone=lab_csv_timezone,
        seed=seed,
        time_scale=time_scale,
        lab_time_scale=lab_time_scale,
        host=host,
        opcua_port=opcua_port,
        modbus_port=modbus_port,
        security=security,
    ) as plant:
        await plant.wait()
