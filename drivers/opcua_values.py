"""OPC UA values in and out: notifications and reads into Samples, Python values into Variants.

Owns: turning asyncua `DataValue`s (from data-change notifications and reads) into `Sample`s
in one tight loop per batch (status code kept, source and server timestamps as unix
seconds, scale/offset applied); the server-side loss signal in a status code (the Overflow
info bit); coercing a value to write into the node's variant type; status-code names; the
deadband filter of a tag.
Must not: touch a socket, a clock or a logger (pure: the caller passes `now` and logs), or
invent a value: a value the agent cannot represent becomes `None` with Bad_TypeMismatch,
a missing value is `None`, never 0.
Invariants: one input DataValue gives exactly one Sample (so counts reconcile: received ==
converted + unknown handles); the Sample's status is the server's status, bit for bit,
except a Good status with an unrepresentable value (Bad_TypeMismatch); `coerce_for_write`
either returns a Variant of exactly the requested type or raises `ValueError` saying why.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from asyncua import ua
from asyncua.ua.status_codes import code_to_name_doc

from agent.domain import samples
from agent.domain.samples import BAD_TYPE_MISMATCH, Sample, Value

__all__ = [
    "SampleMaker",
    "TagScaling",
    "coerce_for_write",
    "deadband_filter",
    "is_overflow",
    "status_name",
]

_SCALARS: frozenset[type] = frozenset({float, int, bool, str})
_OVERFLOW_INFO = 0x0480  # InfoType = DataValue (bit 10) and the Overflow bit (bit 7)
_INFO_MASK = 0x0C80


def status_name(status: int) -> str:
    """The symbolic name of a status code (info bits ignored), from asyncua's full table; any
    other is named by the domain's rule (agent.domain.samples.status_name: 'Bad_0x...')."""
    code = status & 0xFFFF0000
    if code in code_to_name_doc:
        return str(code_to_name_doc[code][0])
    return samples.status_name(code)


def is_overflow(status: int) -> bool:
    """True when the server says it discarded values of this monitored item (queue full)."""
    return (status & _INFO_MASK) == _OVERFLOW_INFO


@dataclass(frozen=True, slots=True)
class TagScaling:
    """How a tag's raw value becomes its engineering value: raw * scale + offset."""

    name: str
    scale: float = 1.0
    offset: float = 0.0

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    def to_raw(self, value: float | int | bool) -> float | int | bool:
        """The raw value to send for an engineering value (identity keeps the type)."""
        if self.identity or isinstance(value, bool):
            return value
        return (value - self.offset) / self.scale


def _plain(value: object) -> tuple[Value, bool]:
    """A Sample value for a variant's Python value; False when it cannot be represented."""
    if value is None or value.__class__ in _SCALARS:
        return cast(Value, value), True
    if isinstance(value, dt.datetime):
        return value.timestamp(), True
    for plain in (bool, int, float, str):  # subclasses (IntEnum, ...): their plain value
        if isinstance(value, plain):
            return plain(value), True
    return None, False


class SampleMaker:
    """Per-session conversion of DataValues into Samples, by client handle or by position.

    `tags[i]` is the tag of client handle `i + 1` (handle 0 is never used): handles are
    assigned by the session, so a lookup is a list index.
    """

    def __init__(self, tags: Sequence[TagScaling]) -> None:
        self._tags: list[TagScaling | None] = [None, *tags]
        self._count = len(self._tags)

    @property
    def tags(self) -> list[TagScaling]:
        return [tag for tag in self._tags if tag is not None]

    def from_notifications(
        self, items: Iterable[Any], now: float, out: list[Sample]
    ) -> tuple[int, int]:
        """Append one Sample per `MonitoredItemNotification`; return (unknown, overflows).

        `unknown` counts notifications for a client handle this session never assigned
        (they are not converted); `overflows` those whose status carries the Overflow bit.
        """
        tags, count, append = self._tags, self._count, out.append
        unknown = overflows = 0
        for item in items:
            handle = item.ClientHandle
            tag = tags[handle] if 0 < handle < count else None
            if tag is None:
                unknown += 1
                continue
            sample = _sample(tag, item.Value, now)
            if sample.status & _INFO_MASK == _OVERFLOW_INFO:
                overflows += 1
            append(sample)
        return unknown, overflows

    def from_reads(self, values: Sequence[Any], now: float, out: list[Sample]) -> None:
        """Append one Sample per DataValue of a Read, `values[i]` for handle `i + 1`."""
        tags, append = self._tags, out.append
        for position, datavalue in enumerate(values, start=1):
            tag = tags[position]
            assert tag is not None
            append(_sample(tag, datavalue, now))


def _sample(tag: TagScaling, datavalue: Any, now: float) -> Sample:
    """The Sample of one DataValue (the hot path: keep it flat)."""
    if datavalue is None:
        return Sample(tag.name, now, None, BAD_TYPE_MISMATCH, None)
    code = datavalue.StatusCode
    status = 0 if code is None else code.value
    source = datavalue.SourceTimestamp
    server = datavalue.ServerTimestamp
    server_time = None if server is None else server.timestamp()
    source_time = (
        source.timestamp() if source is not None else (now if server_time is None else server_time)
    )
    variant = datavalue.Value
    raw = None if variant is None else variant.Value
    if raw is None or raw.__class__ in _SCALARS:
        value = raw
    else:
        value, ok = _plain(raw)
        if not ok:
            return Sample(
                tag.name,
                source_time,
                None,
                BAD_TYPE_MISMATCH if status < 0x40000000 else status,
                server_time,
            )
    if (
        (tag.scale != 1.0 or tag.offset != 0.0)
        and value is not None
        and value.__class__ is not bool
        and value.__class__ is not str
    ):
        value = cast(float, value) * tag.scale + tag.offset
    return Sample(tag.name, source_time, cast(Value, value), status, server_time)


_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def _integral(value: float | int, vtype: ua.VariantType) -> int:
    if isinstance(value, float):
        if not math.isfinite(value) or value != round(value):
            raise ValueError(f"a whole number for a {vtype.name} node, got {value!r}")
        value = round(value)
    low, high = _INT_RANGES[vtype]
    if not low <= value <= high:
        raise ValueError(f"a value in {low}..{high} for a {vtype.name} node, got {value}")
    return value


def coerce_for_write(value: float | int | bool, vtype: ua.VariantType) -> ua.Variant:
    """A Variant of exactly `vtype` holding `value`; ValueError (saying why) if impossible."""
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool):
            return ua.Variant(value, vtype)
        if value in (0, 1):
            return ua.Variant(bool(value), vtype)
        raise ValueError(f"true/false (or 0/1) for a Boolean node, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"a number for a {vtype.name} node, got {value!r}")
    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"a finite number for a {vtype.name} node, got {number!r}")
        if vtype is ua.VariantType.Float and abs(number) > _FLOAT32_MAX:
            raise ValueError(f"a value within +-{_FLOAT32_MAX:.4g} for a Float node")
        return ua.Variant(number, vtype)
    if vtype in _INT_RANGES:
        return ua.Variant(_integral(value, vtype), vtype)
    raise ValueError(f"a node of a numeric or Boolean type; this one is {vtype.name}")


def deadband_filter(deadband: float, kind: str) -> ua.DataChangeFilter | None:
    """The DataChangeFilter for a tag's deadband (None: the server's default, no deadband)."""
    if deadband <= 0:
        return None
    flt = ua.DataChangeFilter()
    flt.Trigger = ua.DataChangeTrigger.StatusValue
    flt.DeadbandType = cast(
        Any, ua.DeadbandType.Percent if kind == "percent" else ua.DeadbandType.Absolute
    )
    flt.DeadbandValue = deadband
    return flt
