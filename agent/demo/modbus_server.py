"""The simulated weigh feeders (unit 1) and cement packer (unit 2) on a real pymodbus TCP server.

Owns: the two devices' own state (feed totalizer, packer run command, bag counters, packed
tonnes, packer setpoints), their register images rebuilt from each mill snapshot, and the
pymodbus `SimDevice` action that serves reads from the image and turns writes into device
state or `Mill.write` calls. The map itself lives in `register_map.py`.
Must not: step the mill, invent values for Bad readings, or use the deprecated datastore
classes (pymodbus 3.16: warnings are errors in our tests).
Invariants: a read touching a point whose mill sources are Bad answers exception 0x04; a
write must cover whole points (else 0x02) and is applied only if the device or the mill
accepts it (0x03 out of range, 0x04 refused by the PLC); the device state advances only with
sim time (`publish` after each mill step), so it is deterministic for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.demo.mill import Mill, Reading
from agent.demo.register_map import (
    FEEDERS_UNIT,
    PACKER_UNIT,
    POINTS,
    Point,
    PointType,
    Table,
    decode,
    encode,
    in_limits,
)

log = structlog.get_logger(__name__)

Value = float | int | bool
_READ_FC = {1: Table.COIL, 2: Table.DISCRETE_INPUT, 3: Table.HOLDING, 4: Table.INPUT}
_WRITE_FC = {5: Table.COIL, 15: Table.COIL, 6: Table.HOLDING, 16: Table.HOLDING,
             22: Table.HOLDING, 23: Table.HOLDING}  # fmt: skip
_BAD_WRITE = {"BadOutOfRange": ExcCodes.ILLEGAL_VALUE, "BadTypeMismatch": ExcCodes.ILLEGAL_VALUE}
BAG_COUNT_START = 1_234_567


def _num(readings: Mapping[str, Reading], name: str) -> float | None:
    r = readings.get(name)
    if r is None or r.value is None or r.status.startswith("Bad"):
        return None
    return float(r.value)


class _Unit:
    """One simulated Modbus device: its points, current values, Bad points and the action."""

    def __init__(self, unit_id: int, mill: Mill) -> None:
        self.unit_id, self.mill = unit_id, mill
        self.points = [p for p in POINTS if p.unit_id == unit_id]
        self.values: dict[str, Value] = {
            p.name: False if p.type is PointType.BOOL else 0 for p in self.points
        }
        self.bad: set[str] = set()

    def device(self) -> SimDevice:
        blocks: dict[Table, list[SimData]] = {t: [] for t in Table}
        for p in self.points:
            bit = p.type is PointType.BOOL
            blocks[p.table].append(
                SimData(
                    p.address,
                    count=p.width,
                    values=False if bit else 0,
                    datatype=DataType.BITS if bit else DataType.REGISTERS,
                )
            )
        simdata = (
            blocks[Table.COIL],
            blocks[Table.DISCRETE_INPUT],
            blocks[Table.HOLDING],
            blocks[Table.INPUT],
        )  # non-shared: four separate tables, like a real device
        return SimDevice(self.unit_id, simdata=simdata, action=self.action)

    def update(self, readings: Mapping[str, Reading], dt_s: float) -> None:
        bad = {name for name, r in readings.items() if r.status.startswith("Bad")}
        self.bad = {p.name for p in self.points if bad.intersection(p.sources)}
        self.model(readings, dt_s)

    def model(self, readings: Mapping[str, Reading], dt_s: float) -> None:
        raise NotImplementedError

    def apply(self, point: Point, value: Value) -> ExcCodes | None:
        """Accept a written value (device state or a mill setpoint) or refuse it."""
        if point.writes_to is not None:
            status = self.mill.write(point.writes_to, float(value))
            log.debug("modbus_write_answered", unit=self.unit_id, point=point.name, status=status)
            if status != "Good":
                return _BAD_WRITE.get(status, ExcCodes.DEVICE_FAILURE)
        elif point.type is not PointType.BOOL and not in_limits(point, float(value)):
            return ExcCodes.ILLEGAL_VALUE
        self.values[point.name] = value
        return None

    async def action(  # noqa: PLR0917 - the signature pymodbus calls
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus SimDevice hook: refresh the block from the image, or apply a write."""
        if set_values is not None and function_code in _WRITE_FC:
            return self._write(_WRITE_FC[function_code], address, list(set_values))
        table = _READ_FC.get(function_code, _WRITE_FC.get(function_code))
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        bits = table in (Table.COIL, Table.DISCRETE_INPUT)
        lo, hi = (
            ((address // 16) * 16, (address // 16 + count) * 16)
            if bits
            else (address, address + count)
        )  # pymodbus passes bit reads as whole 16-bit words
        for p in self.points:
            if (
                p.table is table
                and p.address < hi
                and lo < p.address + p.width
                and p.name in self.bad
            ):
                return ExcCodes.DEVICE_FAILURE
        self._fill(table, start_address, registers)
        return None

    def _fill(self, table: Table, start: int, registers: list[int]) -> None:
        for p in self.points:
            if p.table is not table:
                continue
            regs = encode(p, self.values[p.name])
            if p.type is PointType.BOOL:  # bit-packed, 16 bits a word, bit 0 first
                word, bit = divmod(p.address - start * 16, 16)
                registers[word] = (
                    registers[word] | (1 << bit) if regs[0] else registers[word] & ~(1 << bit)
                )
            else:
                registers[p.address - start : p.address - start + p.width] = regs

    def _write(self, table: Table, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        end = address + len(values)
        touched = [
            p
            for p in self.points
            if p.table is table and p.address < end and address < p.address + p.width
        ]
        if not touched or any(p.address < address or p.address + p.width > end for p in touched):
            return ExcCodes.ILLEGAL_ADDRESS
        for p in touched:
            raw = [int(v) for v in values[p.address - address : p.address - address + p.width]]
            if (refused := self.apply(p, decode(p, raw))) is not None:
                log.info("modbus_write_refused", unit=self.unit_id, point=p.name, code=refused.name)
                return refused
        return None


class _Feeders(_Unit):
    def __init__(self, mill: Mill) -> None:
        super().__init__(FEEDERS_UNIT, mill)
        self._total_kg = 0.0

    def model(self, readings: Mapping[str, Reading], dt_s: float) -> None:
        v = self.values
        for name in ("FeedRateSetpoint", "LimestoneShareSetpoint"):
            if (sp := _num(readings, name)) is not None:
                v[name] = sp
        feed, ls, gy = (_num(readings, n) for n in ("FeedRate", "LimestoneShare", "GypsumShare"))
        running = bool(_num(readings, "Running"))
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


class _Packer(_Unit):
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
        if (feed := _num(readings, "FeedRate")) is not None:
            self._feed = feed  # cement leaves the mill at the fresh-feed rate (steady state)
        mill_running = bool(_num(readings, "Running"))
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
    """A pymodbus TCP server with the feeders and the packer. One event loop."""

    def __init__(self, mill: Mill, *, host: str = "127.0.0.1", port: int = 5020) -> None:
        self._mill, self._host, self._port = mill, host, port
        self.units: dict[int, _Unit] = {FEEDERS_UNIT: _Feeders(mill), PACKER_UNIT: _Packer(mill)}
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

    def publish(self, readings: Mapping[str, Reading], sim_time: float) -> None:
        """Advance the devices to `sim_time` and rebuild their images from `readings`."""
        dt_s = 0.0 if self._sim_time is None else max(0.0, sim_time - self._sim_time)
        self._sim_time = sim_time
        for unit in self.units.values():
            unit.update(readings, dt_s)

    def value(self, unit_id: int, name: str) -> Value:
        """The device's current engineering value of a point (for tests and the demo)."""
        return self.units[unit_id].values[name]
