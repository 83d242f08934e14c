"""The simulated plant's Modbus register map, as data: feeders (unit 1), cement packer (unit 2)
and the LIMS gateway (unit 3: lab results with their sample times).

Owns: every Modbus point the simulated devices expose (unit id, table, zero-based address,
type, word order, scale, unit, range, which mill tags feed it or which mill setpoint a write
goes to), the register encoding of those values, and the Markdown rendering that
`docs/modbus-register-map.md` must equal (a test keeps the two in sync).
Must not: import pymodbus or the mill, hold runtime state, or share the driver's codec (the
simulated device and the driver are meant to be two independent implementations).
Invariants: points of one unit and table never overlap; no block starts at address 0
(pymodbus SimData limitation); multi-register values are big-endian inside each word and the
word order is ABCD (high word first) or CDAB (low word first); scaled int16 values are
`round(value * scale)`; writable points are exactly the coils and holding registers.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import StrEnum

FEEDERS_UNIT = 1
PACKER_UNIT = 2
LIMS_UNIT = 3
LIMS_RESULTS: tuple[tuple[str, str], ...] = (
    ("LabBlaine", "cm2/g"), ("LabResidue45", "%"), ("LabClinkerC3S", "%"),
    ("LabStrength2d", "MPa"), ("LabStrength7d", "MPa"), ("LabStrength28d", "MPa"),
)  # fmt: skip
"""The lab tags the LIMS gateway serves, in address order (mill tag, unit)."""


class Table(StrEnum):
    """The four Modbus tables, spelled as in the agent's `table:address` syntax."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING = "holding"
    INPUT = "input"


class PointType(StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    UINT32 = "uint32"
    FLOAT32 = "float32"


class WordOrder(StrEnum):
    ABCD = "ABCD"  # high word first ("big")
    CDAB = "CDAB"  # low word first ("little", word-swapped)


_WIDTH = {
    PointType.BOOL: 1,
    PointType.INT16: 1,
    PointType.UINT16: 1,
    PointType.UINT32: 2,
    PointType.FLOAT32: 2,
}


@dataclass(frozen=True)
class Point:
    """One value at `unit:table:address`; `sources` are the mill tags it is derived from."""

    unit_id: int
    table: Table
    address: int
    name: str
    type: PointType
    unit: str = ""
    scale: float = 1.0
    word_order: WordOrder = WordOrder.ABCD
    sources: tuple[str, ...] = ()
    writes_to: str | None = None  # mill setpoint a write is forwarded to (mill.write)
    limits: tuple[float, float] | None = None  # accepted engineering range of a write
    description: str = ""

    @property
    def width(self) -> int:
        return _WIDTH[self.type]

    @property
    def writable(self) -> bool:
        return self.table in (Table.COIL, Table.HOLDING)

    @property
    def config_address(self) -> str:
        return f"{self.table}:{self.address}"


def encode(point: Point, value: float | int | bool) -> list[int]:
    """Engineering value -> registers (one 0/1 entry for a bit point). Clamps to the type."""
    if point.type is PointType.BOOL:
        return [1 if value else 0]
    if point.type is PointType.INT16:
        raw = max(-32768, min(32767, round(float(value) * point.scale)))
        return [raw & 0xFFFF]
    if point.type is PointType.UINT16:
        return [max(0, min(0xFFFF, round(float(value) * point.scale)))]
    if point.type is PointType.UINT32:
        data = struct.pack(">I", max(0, min(0xFFFFFFFF, round(float(value) * point.scale))))
    else:
        data = struct.pack(">f", float(value) * point.scale)
    hi, lo = struct.unpack(">HH", data)
    return [hi, lo] if point.word_order is WordOrder.ABCD else [lo, hi]


def decode(point: Point, registers: list[int]) -> float | int | bool:
    """Registers -> engineering value; the inverse of `encode` (up to rounding)."""
    if len(registers) != point.width:
        raise ValueError(f"{point.name} needs {point.width} registers, got {len(registers)}")
    if point.type is PointType.BOOL:
        return bool(registers[0])
    if point.type is PointType.INT16:
        raw = registers[0] - 0x10000 if registers[0] & 0x8000 else registers[0]
        return raw / point.scale if point.scale != 1.0 else raw
    if point.type is PointType.UINT16:
        return registers[0] / point.scale if point.scale != 1.0 else registers[0]
    hi, lo = registers if point.word_order is WordOrder.ABCD else registers[::-1]
    data = struct.pack(">HH", hi, lo)
    if point.type is PointType.UINT32:
        (count,) = struct.unpack(">I", data)
        return int(count) if point.scale == 1.0 else count / point.scale
    (number,) = struct.unpack(">f", data)
    return float(number) / point.scale


def in_limits(point: Point, value: float) -> bool:
    """True if a written engineering value is finite and inside the point's accepted range."""
    if not math.isfinite(value):
        return False
    return point.limits is None or point.limits[0] <= value <= point.limits[1]


_F, _P = FEEDERS_UNIT, PACKER_UNIT
_FEED_SRC = ("FeedRate", "LimestoneShare", "GypsumShare", "Running")
_C, _D, _H, _I = Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING, Table.INPUT
_B, _I16, _U16, _U32, _F32 = (
    PointType.BOOL,
    PointType.INT16,
    PointType.UINT16,
    PointType.UINT32,
    PointType.FLOAT32,
)
_SWAP = WordOrder.CDAB

# fmt: off
POINTS: tuple[Point, ...] = (
    # --- unit 1: weigh feeders (clinker, limestone, gypsum) ---------------------------------
    Point(_F, _C, 1, "TotalizerReset", _B,
          description="Write 1 to zero FeedTotal; reads back 0 (self-clearing)"),
    Point(_F, _D, 1, "ClinkerFeederRunning", _B, sources=_FEED_SRC,
          description="Running and clinker feeder rate > 1 t/h"),
    Point(_F, _D, 2, "LimestoneFeederRunning", _B, sources=_FEED_SRC,
          description="Running and limestone feeder rate > 1 t/h"),
    Point(_F, _D, 3, "GypsumFeederRunning", _B, sources=_FEED_SRC,
          description="Running and gypsum feeder rate > 1 t/h"),
    Point(_F, _I, 1, "ClinkerFeedRate", _I16, "t/h", 10.0, sources=_FEED_SRC,
          description="FeedRate x (100 - LimestoneShare - GypsumShare) / 100"),
    Point(_F, _I, 2, "LimestoneFeedRate", _I16, "t/h", 10.0, sources=_FEED_SRC,
          description="FeedRate x LimestoneShare / 100"),
    Point(_F, _I, 3, "GypsumFeedRate", _I16, "t/h", 10.0, sources=_FEED_SRC,
          description="FeedRate x GypsumShare / 100"),
    Point(_F, _I, 10, "TotalFeedRate", _F32, "t/h", sources=("FeedRate",),
          description="Mill FeedRate, float32 high word first"),
    Point(_F, _I, 12, "TotalFeedRateSwapped", _F32, "t/h", word_order=_SWAP,
          sources=("FeedRate",), description="The same FeedRate, float32 low word first"),
    Point(_F, _I, 14, "FeedTotal", _U32, "kg",
          description="Fresh feed totalized since start or TotalizerReset; holds while "
                      "FeedRate is Bad"),
    Point(_F, _H, 1, "FeedRateSetpoint", _I16, "t/h", 10.0, sources=("FeedRateSetpoint",),
          writes_to="FeedRateSetpoint",
          description="Total feed setpoint; a write goes to the mill's FeedRateSetpoint"),
    Point(_F, _H, 2, "LimestoneShareSetpoint", _F32, "%", word_order=_SWAP,
          sources=("LimestoneShareSetpoint",), writes_to="LimestoneShareSetpoint",
          description="Limestone share setpoint; a write goes to the mill"),
    Point(_F, _I, 20, "ProductId", _U16, sources=("ProductId",),
          description="The product being ground (the recipe's id), as the mill's ProductId"),
    Point(_F, _I, 21, "SiloId", _U16, sources=("SiloId",),
          description="The silo the product is sent to, as the mill's SiloId"),
    # --- unit 2: rotary cement packer fed from the mill's output ----------------------------
    Point(_P, _C, 1, "PackerRunCommand", _B,
          description="Start (1) / stop (0) the packer; starts switched on"),
    Point(_P, _C, 2, "ShiftCounterReset", _B,
          description="Write 1 to zero ShiftBagCount; reads back 0 (self-clearing)"),
    Point(_P, _D, 1, "PackerRunning", _B, sources=("Running",),
          description="PackerRunCommand and the mill Running"),
    Point(_P, _D, 2, "MillRunning", _B, sources=("Running",),
          description="Copy of the mill's Running"),
    Point(_P, _I, 1, "BagCount", _U32, "bags",
          description="Lifetime bag counter, starts at 1,234,567, never resets"),
    Point(_P, _I, 3, "ShiftBagCount", _U16, "bags",
          description="Bags since the last ShiftCounterReset (wraps at 65536)"),
    Point(_P, _I, 4, "LastBagWeight", _F32, "kg", word_order=_SWAP,
          description="BagWeightSetpoint + 0.25 x sin(0.7 x BagCount)"),
    Point(_P, _I, 6, "PackingRate", _I16, "bags/h",
          description="PackerShare/100 x FeedRate x 1000 / BagWeightSetpoint while running"),
    Point(_P, _I, 7, "PackedTonnes", _F32, "t",
          description="Cement packed since the simulator started"),
    Point(_P, _H, 1, "BagWeightSetpoint", _I16, "kg", 10.0, limits=(20.0, 55.0),
          description="Nominal bag weight, default 50.0 kg"),
    Point(_P, _H, 2, "PackerShare", _F32, "%", limits=(0.0, 100.0),
          description="Share of the mill's output sent to the packer, default 30 %"),
)
# fmt: on


def _lims_points() -> tuple[Point, ...]:
    """Unit 3: per lab tag a float32 value and a uint32 sample time, 4 registers apart."""
    out: list[Point] = []
    for k, (tag, unit) in enumerate(LIMS_RESULTS):
        out.append(Point(LIMS_UNIT, _I, 1 + 4 * k, tag, _F32, unit, sources=(tag,),
                         description=f"The latest {tag} result"))  # fmt: skip
        stamp = f"{tag}SampleTime"
        out.append(Point(LIMS_UNIT, _I, 3 + 4 * k, stamp, _U32, "s", sources=(stamp,),
                         description=f"Its sample time: unix seconds (UTC) of the window's "
                                     f"end, updated with {tag}"))  # fmt: skip
    return tuple(out)


POINTS += _lims_points()

BY_KEY: dict[tuple[int, str], Point] = {(p.unit_id, p.name): p for p in POINTS}


def point(unit_id: int, name: str) -> Point:
    return BY_KEY[(unit_id, name)]


def render_markdown() -> str:
    """The body of docs/modbus-register-map.md (a test asserts the file is identical)."""
    lines = [
        "# Simulated plant: Modbus TCP register map",
        "",
        "Generated from `agent/demo/register_map.py` (`render_markdown()`); a test fails when",
        "this file and the data differ. Addresses are zero-based PDU addresses, written as the",
        "agent's configuration expects them (`table:address`); Modicon numbering adds 1 and the",
        "table prefix (input:1 = 30002). Multi-register values are big-endian inside each word;",
        "ABCD sends the high word first, CDAB the low word first. Scaled values are",
        "`raw / scale` (int16 x10: raw 1800 = 180.0).",
        "",
        "| unit | address | name | type | order | scale | unit | R/W | source / effect |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in POINTS:
        order = p.word_order.value if p.width > 1 else ""
        scale = f"x{p.scale:g}" if p.scale != 1.0 else ""
        rw = "R/W" if p.writable else "R"
        effect = p.description
        if p.limits is not None:
            effect += f" (accepts {p.limits[0]:g}..{p.limits[1]:g})"
        lines.append(
            f"| {p.unit_id} | `{p.config_address}` | {p.name} | {p.type} | {order} | "
            f"{scale} | {p.unit} | {rw} | {effect} |"
        )
    lines += [
        "",
        "Unit 1 is the weigh-feeder PLC (clinker, limestone, gypsum), unit 2 the cement packer,",
        "unit 3 the LIMS's gateway: each lab result (plant-model 4.2) as the mill's OPC UA tag",
        "of the same name publishes it, and beside it the sample-time tag (the end of the",
        "sample's window, whole unix seconds); a new result updates both in the same poll.",
        "Any other unit id answers exception 0x0B (gateway target failed to respond); addresses",
        "between points answer 0x02 (illegal address). Coils and discrete inputs are served",
        "in whole 16-bit words: unused bits up to the next multiple of 16 read as 0.",
        "",
        "## Quality",
        "",
        "Modbus has no quality. When any mill tag a point is derived from (its *sources*) is",
        "Bad, a read that touches that point answers **exception 0x04 (device failure)** instead",
        "of a value, so the driver records Bad rather than a stale or invented number. For the",
        "bit tables this is judged per 16-bit word: any Bad point in a word fails the read.",
        "Uncertain and GoodLocalOverride values are served as they are (Modbus cannot say so).",
        "",
        "## Writes",
        "",
        "- A write must cover whole points: half of a float32 answers 0x02 (illegal address).",
        "- Holding registers that forward to a mill setpoint return what the simulated PLC says:",
        "  BadOutOfRange / BadTypeMismatch -> 0x03 (illegal value); any other Bad status",
        "  (e.g. `plc_reject_writes`) -> 0x04 (device failure). Reads return the mill's setpoint.",
        "- Packer holding registers check their range (0x03 outside, or not finite).",
        "- Writing the input tables is refused by the protocol (read-only function codes).",
        "",
    ]
    return "\n".join(lines)
