"""One simulated Modbus device on the pymodbus simulator: the part every device shares.

Owns: `Unit` (a device's points from register_map, its current engineering values, which
points are Bad, the pymodbus `SimDevice` built from them, and the action that serves reads from
the values and turns writes into device state or `Mill.write` calls) and `num` (a reading's
number, None when Bad or absent). Devices (feeders, packer, LIMS) subclass Unit in
modbus_server.py and fill `values` in `model`.
Must not: step the mill, invent values for Bad readings, or use the deprecated datastore
classes (pymodbus 3.16: warnings are errors in our tests).
Invariants: a read touching no point answers 0x02 (illegal address), one touching a point
whose mill sources are Bad answers exception 0x04; a
write must cover whole points (else 0x02) and is applied only if the device or the mill
accepts it (0x03 out of range, 0x04 refused by the PLC).
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.demo.mill import Mill, Reading
from agent.demo.register_map import POINTS, Point, PointType, Table, decode, encode, in_limits

__all__ = ["Unit", "Value", "num"]

log = structlog.get_logger("agent.demo.modbus_server")
PLACEHOLDER_ADDRESS = 65520
"""Where a device with no point in a table serves an empty block (pymodbus needs one in every
table); a read there answers 0x02 like any address without a point."""

Value = float | int | bool
_READ_FC = {1: Table.COIL, 2: Table.DISCRETE_INPUT, 3: Table.HOLDING, 4: Table.INPUT}
_WRITE_FC = {5: Table.COIL, 15: Table.COIL, 6: Table.HOLDING, 16: Table.HOLDING,
             22: Table.HOLDING, 23: Table.HOLDING}  # fmt: skip
_BAD_WRITE = {"BadOutOfRange": ExcCodes.ILLEGAL_VALUE, "BadTypeMismatch": ExcCodes.ILLEGAL_VALUE}


def num(readings: Mapping[str, Reading], name: str) -> float | None:
    r = readings.get(name)
    if r is None or r.value is None or r.status.startswith("Bad"):
        return None
    return float(r.value)


class Unit:
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
        for table, block in blocks.items():  # pymodbus needs a block in every table
            if not block:
                bit = table in (Table.COIL, Table.DISCRETE_INPUT)
                block.append(
                    SimData(
                        PLACEHOLDER_ADDRESS,
                        count=1,
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
        touched = [p for p in self.points if p.table is table and p.address < hi
                   and lo < p.address + p.width]  # fmt: skip
        if not touched:  # only a table's placeholder block: no such point
            return ExcCodes.ILLEGAL_ADDRESS
        for p in touched:
            if p.name in self.bad:
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
