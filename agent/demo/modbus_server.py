"""The simulated weigh feeders (unit 1), cement packer (unit 2) and LIMS gateway (unit 3) on a
real pymodbus TCP server.

Owns: the devices' own state (feed totalizer, packer run command, bag counters, packed
tonnes, packer setpoints), their values rebuilt from each mill snapshot (the LIMS unit: each
lab result and its sample time, as the mill publishes them, the sample time mapped from sim to
wall time by `to_wall` like OPC UA's SourceTimestamp), and the server's life. The map
itself lives in `register_map.py`, the part every device shares in `modbus_device.py`.
Must not: step the mill, invent values for Bad readings, or use the deprecated datastore
classes (pymodbus 3.16: warnings are errors in our tests).
Invariants: a read touching a point whose mill sources are Bad answers exception 0x04; a
write must cover whole points (else 0x02) and is applied only if the device or the mill
accepts it (0x03 out of range, 0x04 refused by the PLC); the device state advances only with
sim time (`publish` after each mill step), so it is deterministic for a given seed; a
sample time is mapped once, when it changes (or on `publish(force=True)`): re-anchoring the
mapping later never moves a result's published sample time (it would look like a new result).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.demo.mill import Mill, Reading
from agent.demo.modbus_device import Unit, Value, num
from agent.demo.register_map import FEEDERS_UNIT, LIMS_UNIT, PACKER_UNIT, Point
from agent.demo.tags import LAB_RESULT_TAGS

BAG_COUNT_START = 1_234_567

log = structlog.get_logger(__name__)


class _Feeders(Unit):
    def __init__(self, mill: Mill) -> None:
        super().__init__(FEEDERS_UNIT, mill)
        self._total_kg = 0.0

    def model(self, readings: Mapping[str, Reading], dt_s: float) -> None:
        v = self.values
        for name in ("FeedRateSetpoint", "LimestoneShareSetpoint", "ProductId", "SiloId"):
            if (sp := num(readings, name)) is not None:
                v[name] = sp
        feed, ls, gy = (num(readings, n) for n in ("FeedRate", "LimestoneShare", "GypsumShare"))
        running = bool(num(readings, "Running"))
        if feed is None or ls is None or gy is None:
            return  # reads of these points answer 0x04 until the sources are Good again
        rates = {
            "Clinker": feed * (100.0 - ls - gy) / 100.0,
            "Limestone": feed * ls / 100.0,
            "Gypsum": feed * gy / 100.0,
        }
        for kind, rate in rates.items():
            v[f"{kind}FeedRate"] = rate
            v[f"{kind}FeederRunning"] = running and rate > 1.0
        v["TotalFeedRate"] = v["TotalFeedRateSwapped"] = feed
        self._total_kg += feed * 1000.0 * dt_s / 3600.0
        v["FeedTotal"] = int(self._total_kg)

    def apply(self, point: Point, value: Value) -> ExcCodes | None:
        if point.name == "TotalizerReset":
            if value:
                self._total_kg = 0.0
                self.values["FeedTotal"] = 0
            return None  # self-clearing: reads back 0
        return super().apply(point, value)


_STAMPS = frozenset(f"{name}SampleTime" for name in LAB_RESULT_TAGS)


class _Lims(Unit):
    """The LIMS's Modbus gateway: every lab result and its sample-time tag, as published
    (a sample time in wall seconds, rounded to the uint32 register's whole seconds)."""

    def __init__(self, mill: Mill, to_wall: Callable[[float], float]) -> None:
        super().__init__(LIMS_UNIT, mill)
        self._to_wall = to_wall
        self._mapped: dict[str, float] = {}  # sample-time point -> the sim time it shows

    def remap(self) -> None:
        """Map every sample time again at the next update (the mapping was re-anchored)."""
        self._mapped.clear()

    def model(self, readings: Mapping[str, Reading], dt_s: float) -> None:
        for p in self.points:
            if (x := num(readings, p.sources[0])) is None:
                continue
            if p.name in _STAMPS:
                if self._mapped.get(p.name) == x:
                    continue
                self._mapped[p.name] = x
                x = round(self._to_wall(x))
            self.values[p.name] = x


class _Packer(Unit):
    def __init__(self, mill: Mill) -> None:
        super().__init__(PACKER_UNIT, mill)
        self._bags = 0.0  # bags packed since start, fractional
        self._shift_base = 0
        self._feed = 0.0
        self.values.update(
            PackerRunCommand=True,
            BagWeightSetpoint=50.0,
            PackerShare=30.0,
            BagCount=BAG_COUNT_START,
        )

    def model(self, readings: Mapping[str, Reading], dt_s: float) -> None:
        v = self.values
        if (feed := num(readings, "FeedRate")) is not None:
            self._feed = feed  # cement leaves the mill at the fresh-feed rate (steady state)
        mill_running = bool(num(readings, "Running"))
        running = bool(v["PackerRunCommand"]) and mill_running
        packing_tph = float(v["PackerShare"]) / 100.0 * self._feed if running else 0.0
        bags_per_h = packing_tph * 1000.0 / float(v["BagWeightSetpoint"])
        self._bags += bags_per_h * dt_s / 3600.0
        count = BAG_COUNT_START + int(self._bags)
        v.update(
            MillRunning=mill_running,
            PackerRunning=running,
            BagCount=count,
            ShiftBagCount=(int(self._bags) - self._shift_base) % 65536,
            PackingRate=bags_per_h,
            LastBagWeight=float(v["BagWeightSetpoint"]) + 0.25 * math.sin(0.7 * count),
            PackedTonnes=float(v.get("PackedTonnes", 0.0)) + packing_tph * dt_s / 3600.0,
        )

    def apply(self, point: Point, value: Value) -> ExcCodes | None:
        if point.name == "ShiftCounterReset":
            if value:
                self._shift_base = int(self._bags)
                self.values["ShiftBagCount"] = 0
            return None
        return super().apply(point, value)


async def _absent(*_: object) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


class MillModbusServer:
    """A pymodbus TCP server with the feeders, the packer and the LIMS. One event loop."""

    def __init__(self, mill: Mill, *, to_wall: Callable[[float], float] | None = None,
                 host: str = "127.0.0.1", port: int = 5020) -> None:  # fmt: skip
        """`to_wall`: sim -> wall unix seconds for the published sample times (None: sim
        time as it is, for a mill stepped by hand)."""
        self._mill, self._host, self._port = mill, host, port
        self._lims = _Lims(mill, to_wall or float)
        self.units: dict[int, Unit] = {
            FEEDERS_UNIT: _Feeders(mill),
            PACKER_UNIT: _Packer(mill),
            LIMS_UNIT: self._lims,
        }
        self._server: ModbusTcpServer | None = None
        self._sim_time: float | None = None

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self.publish(self._mill.snapshot(), self._mill.time)
        devices = [unit.device() for unit in self.units.values()]
        # id 0 = every other unit id: answer 0x0B like a TCP gateway with nothing behind it
        # (without it pymodbus 3.16 raises KeyError inside the server and answers 0x04).
        devices.append(
            SimDevice(
                0, simdata=[SimData(1, count=65534, datatype=DataType.REGISTERS)], action=_absent
            )
        )
        self._server = ModbusTcpServer(devices, address=(self._host, self._port))
        await self._server.serve_forever(background=True)
        sockets = getattr(self._server.transport, "sockets", None) or ()
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        log.info(
            "modbus_server_started", host=self._host, port=self._port, units=sorted(self.units)
        )

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]
            log.info("modbus_server_stopped", port=self._port)

    def publish(self, readings: Mapping[str, Reading], sim_time: float, *,
                force: bool = False) -> None:  # fmt: skip
        """Advance the devices to `sim_time` and rebuild their images from `readings`;
        `force`: map every sample time again (after the sim -> wall mapping was re-anchored)."""
        if force:
            self._lims.remap()
        dt_s = 0.0 if self._sim_time is None else max(0.0, sim_time - self._sim_time)
        self._sim_time = sim_time
        for unit in self.units.values():
            unit.update(readings, dt_s)

    def value(self, unit_id: int, name: str) -> Value:
        """The device's current engineering value of a point (for tests and the demo)."""
        return self.units[unit_id].values[name]
