"""The heartbeat counter's range: the whole numbers a heartbeat tag and its echo tags hold.

Owns: `counter_range(tag)`, the range a heartbeat tag alone can count in: the tag's value
type intersected with its write limits (a Modbus tag's type is in the configuration; an OPC
UA node's type is known only once connected, so its counter stays inside 0..32767, which
every numeric node type from Int16 up holds, where the write limits leave enough values
there; else a missing limit is taken from Int16's range and given limits name the node's
type), or the reason the tag cannot count (bool, string, scaled, or fewer than `MIN_VALUES`
values); `heartbeat_range(tag, echoes, lag_max=...)`, that range narrowed to what every echo
tag can read back (so the counter wraps where the echo wraps too: gate 1 takes the lag
modulo its size), or a `Refusal` naming the key at fault; and `CounterRange.after`, the
next value with the wrap from the top back to the bottom.
Must not: do I/O, draw the random start (agent.control.heartbeat does) or know about loops.
Invariants: pure and total (never raises on a well-typed Tag); a returned range holds at
least `min_values` whole numbers, every one of them writable to the tag (inside its write
limits and exactly representable in its type) and, for `heartbeat_range`, readable back
through every echo tag of a known type; `after(v)` stays inside the range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agent.config.addresses import INT_RANGES, ModbusType, parse_modbus_address
from agent.config.settings import Tag

__all__ = [
    "ECHO_EXPECTED",
    "EXPECTED",
    "MIN_VALUES",
    "OPCUA_INT16",
    "OPCUA_PORTABLE",
    "CounterRange",
    "Refusal",
    "counter_range",
    "heartbeat_range",
    "least_values",
    "value_kind",
]

MIN_VALUES = 16
"""Fewer values than this and a previous run's echo too often passes for ours."""
OPCUA_PORTABLE = (0, 2**15 - 1)
"""Whole numbers every numeric OPC UA node type from Int16 up can hold."""
OPCUA_INT16 = (-(2**15), 2**15 - 1)
"""An OPC UA heartbeat's fallback when 0..32767 leaves too few values (a negative range)."""
EXPECTED = (
    "a heartbeat tag that can count: a whole-number or float type (not bool or string), "
    "scale 1 and offset 0, and write limits spanning at least {n} whole numbers the type holds"
)
ECHO_EXPECTED = (
    "an echo tag that can read back at least {n} of the heartbeat's values {low}..{high} "
    "(the counter wraps where both the heartbeat and its echo hold it)"
)

_TYPE_RANGES: dict[ModbusType, tuple[int, int]] = {
    **INT_RANGES,
    ModbusType.FLOAT32: (-(2**24), 2**24),  # every whole number in between is exact
    ModbusType.FLOAT64: (-(2**53), 2**53),
}


@dataclass(frozen=True)
class CounterRange:
    """The whole numbers low..high (inclusive) a heartbeat counts through, then wraps."""

    low: int
    high: int

    @property
    def size(self) -> int:
        """How many values: the modulus gate 1 takes the echo's lag in."""
        return self.high - self.low + 1

    def at(self, offset: int) -> int:
        """The value `offset` steps above the bottom, wrapped."""
        return self.low + offset % self.size

    def after(self, value: int) -> int:
        """The next counter value: +1, and from the top (or outside) back to the bottom."""
        return value + 1 if self.low <= value < self.high else self.low


def _bound(limit: float | None, rounding: str) -> int | None:
    """A write limit as a whole number (ceil for a minimum, floor for a maximum); None when
    there is none (or it is not finite: the driver's limit check lets every value pass)."""
    if limit is None or not math.isfinite(limit):
        return None
    return math.ceil(limit) if rounding == "ceil" else math.floor(limit)


def value_kind(tag: Tag) -> ModbusType | Literal["opcua"] | None:
    """A Modbus tag's value type (bool for a bit; None for a register tag without one), or
    "opcua" for an OPC UA tag (its node's type is known only once connected)."""
    try:
        where = parse_modbus_address(tag.address)
    except ValueError:
        return "opcua"
    if where.table.is_bit or where.bit is not None:
        return ModbusType.BOOL
    return tag.type


def counter_range(tag: Tag, *, min_values: int = MIN_VALUES) -> CounterRange | str:
    """The range the heartbeat written to `tag` counts in, or what stops it counting (the
    `found` of a configuration problem whose `expected` is EXPECTED)."""
    name = repr(tag.name)
    kind = value_kind(tag)
    if kind in (ModbusType.BOOL, ModbusType.STRING):
        return f"{name}, a {kind} tag"
    if kind is None:
        return f"{name}, a register tag without a type"
    if (tag.scale, tag.offset) != (1.0, 0.0):
        return f"{name} with scale {tag.scale:g} and offset {tag.offset:g}"
    low, high = _bound(tag.write_min, "ceil"), _bound(tag.write_max, "floor")
    if kind == "opcua":  # the node's type is unknown until connected
        p_low = OPCUA_PORTABLE[0] if low is None else max(OPCUA_PORTABLE[0], low)
        p_high = OPCUA_PORTABLE[1] if high is None else min(OPCUA_PORTABLE[1], high)
        if p_high - p_low + 1 >= min_values:
            low, high = p_low, p_high
        elif low is None or high is None:  # e.g. only write_max = -5: count below it
            low = OPCUA_INT16[0] if low is None else max(OPCUA_INT16[0], low)
            high = OPCUA_INT16[1] if high is None else min(OPCUA_INT16[1], high)
        # else: both limits given and (mostly) outside 0..32767: they name the node's type
    else:
        type_low, type_high = _TYPE_RANGES[ModbusType(kind)]
        low = type_low if low is None else max(low, type_low)
        high = type_high if high is None else min(high, type_high)
    count = max(0, high - low + 1)
    if count < min_values:
        limits = f"[{_limit(tag.write_min)}, {_limit(tag.write_max)}]"
        within = f" in its {kind} type" if kind != "opcua" else ""
        plural = "s" * (count != 1)
        return f"{name} with write limits {limits}: {count} whole number{plural}{within}"
    return CounterRange(low, high)


def _limit(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def least_values(lag_max: int) -> int:
    """The fewest values a counter needs: MIN_VALUES, and twice the echo lag gate 1 allows
    (+1), so a lag modulo the counter's size is never ambiguous."""
    return max(MIN_VALUES, 2 * (lag_max + 1))


@dataclass(frozen=True)
class Refusal:
    """Why a heartbeat cannot count: the loop key at fault and the problem's two halves."""

    key: Literal["heartbeat_tag", "heartbeat_echo_tag"]
    expected: str
    found: str


def heartbeat_range(
    heartbeat: Tag, echoes: Sequence[Tag] = (), *, lag_max: int = 0
) -> CounterRange | Refusal:
    """The range the heartbeat written to `heartbeat` counts in, read back through `echoes`
    (every echo tag of the loops that share it) with echo lags up to `lag_max`: what the
    heartbeat tag holds (`counter_range`) narrowed to what each echo can read back. The
    one computation behind both `check` and the running heartbeat and its gate 1."""
    least = least_values(lag_max)
    own = counter_range(heartbeat, min_values=least)
    if isinstance(own, str):
        expected = EXPECTED.format(n=least)
        if least > MIN_VALUES:
            expected += f" (twice heartbeat_echo_lag_max + 1 = {least})"
        return Refusal("heartbeat_tag", expected, own)
    low, high = own.low, own.high
    for echo in echoes:
        held = _echo_holds(echo, opcua_heartbeat=value_kind(heartbeat) == "opcua")
        if held is None:
            continue
        what, (e_low, e_high) = held
        n_low, n_high = max(low, e_low), min(high, e_high)
        count = max(0, n_high - n_low + 1)
        if count < least:
            expected = ECHO_EXPECTED.format(n=least, low=own.low, high=own.high)
            found = f"{echo.name!r}, {what} ({e_low}..{e_high}): {count} of them"
            return Refusal("heartbeat_echo_tag", expected, found)
        low, high = n_low, n_high
    return CounterRange(low, high)


def _echo_holds(echo: Tag, *, opcua_heartbeat: bool) -> tuple[str, tuple[int, int]] | None:
    """The whole numbers `echo` reads back exactly, described; None when nothing is known
    (an OPC UA echo of an OPC UA heartbeat is taken to share its node type; a bool, string
    or untyped echo is refused by `check` on its own)."""
    kind = value_kind(echo)
    if kind == "opcua":
        return None if opcua_heartbeat else ("an OPC UA node of unknown type", OPCUA_PORTABLE)
    if kind is None or kind in (ModbusType.BOOL, ModbusType.STRING):
        return None
    return f"a {kind} tag", _TYPE_RANGES[ModbusType(kind)]
