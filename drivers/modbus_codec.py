"""The Modbus register codec: registers <-> raw values <-> engineering values, and back.

Owns: how one tag's value is laid out in 16-bit registers (or one bit), for every
`ModbusType` and every `byte_order`; scale and offset (engineering = raw * scale + offset);
and the checks a write must pass before anything is sent (type, range of the raw type,
`write_min`/`write_max` on the value asked for *and* on the value that will land).
Must not: import pymodbus or touch a socket, a clock or a logger (pure: the driver and the
tests call it with plain lists of ints).

Layouts (bytes A B C D [E F G H] are the value big-endian, A the most significant):
- 32/64-bit numbers: ABCD = high word first, big-endian words (the Modbus default);
  CDAB = words in reverse order (low word first), bytes in a word big-endian;
  BADC = words in order, the two bytes of every word swapped (libmodbus 3.1.6's float helper);
  DCBA = fully little-endian (words reversed *and* bytes swapped).
  For 64-bit values "word order reversed" reverses all four words: CDAB of A..H is
  [GH, EF, CD, AB], the same convention as pymodbus' `word_order="little"`.
- 16-bit numbers and bits ignore `byte_order`: a register is big-endian on the wire by the
  Modbus specification, and devices that lay floats out oddly still send plain registers.
- Strings: two characters a register, Latin-1 (every byte maps to one character, so a read
  never fails). ABCD/CDAB put the first character in the high byte, BADC/DCBA in the low byte
  (the word part of the order is ignored). A read stops at the first NUL; a write pads with
  NULs to `length` characters (rounded up to whole registers).
- bool: a coil/discrete input bit, or bit `n` (0 = least significant) of a register.

Invariants (property-tested): for every type and order, `decode(encode(x)) == x` for every
raw value the type can hold (floats: the same bits, NaN payloads and infinities included;
strings: without NULs, up to `length`); `encode` returns exactly `count` registers, each
0..0xFFFF; `prepare_write` never lets a non-finite value or one outside the limits through;
every refusal is a `WriteValueError` (a `ValueError`) saying what was expected and found.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from agent.config.addresses import INT_RANGES, ModbusType, register_count

__all__ = [
    "ByteOrder",
    "PreparedWrite",
    "RawValue",
    "TagCodec",
    "WriteValueError",
]

ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
RawValue = int | float | bool | str
"""What the device holds, before scale and offset."""

_WIDE_FORMATS: dict[ModbusType, str] = {
    ModbusType.INT32: "i",
    ModbusType.UINT32: "I",
    ModbusType.INT64: "q",
    ModbusType.UINT64: "Q",
    ModbusType.FLOAT32: "f",
    ModbusType.FLOAT64: "d",
}
_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
_SLACK = 1e-9
"""Relative slack of the landed-value check: float arithmetic noise, not a rounding step."""


class WriteValueError(ValueError):
    """A value cannot be written to this tag (wrong kind, out of the type or the limits)."""


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A checked write: the raw value the device will hold and the registers (or bit) to send."""

    raw: RawValue
    registers: tuple[int, ...]
    landed: int | float | bool
    """The engineering value the device will hold (after rounding to the raw type)."""


@dataclass(frozen=True, slots=True)
class TagCodec:
    """How one tag is decoded and encoded. Build it once per tag; calls are cheap."""

    type: ModbusType
    order: ByteOrder = "ABCD"
    bit: int | None = None
    length: int | None = None
    scale: float = 1.0
    offset: float = 0.0
    count: int = field(init=False)
    """Registers (or bits, for a coil/discrete input) the value occupies."""
    _words: struct.Struct | None = field(init=False, repr=False, compare=False)
    _value: struct.Struct | None = field(init=False, repr=False, compare=False)
    _reverse: bool = field(init=False, repr=False, compare=False)
    _identity: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.bit is not None and not 0 <= self.bit <= 15:
            raise ValueError(f"expected a bit number 0..15, found {self.bit}")
        if self.bit is not None and self.type is not ModbusType.BOOL:
            raise ValueError(f"expected type bool for a bit in a register, found {self.type}")
        if not math.isfinite(self.scale) or self.scale == 0 or not math.isfinite(self.offset):
            raise ValueError(
                f"expected a finite, non-zero scale and a finite offset, "
                f"found scale {self.scale} and offset {self.offset}"
            )
        count = register_count(self.type, self.length)
        swap = self.order in ("BADC", "DCBA")
        words = values = None
        if self.type in _WIDE_FORMATS:
            words = struct.Struct(f"{'<' if swap else '>'}{count}H")
            values = struct.Struct(f">{_WIDE_FORMATS[self.type]}")
        elif self.type is ModbusType.STRING:
            words = struct.Struct(f"{'<' if swap else '>'}{count}H")
        set_ = object.__setattr__  # frozen dataclass: derived fields are set once, here
        set_(self, "count", count)
        set_(self, "_words", words)
        set_(self, "_value", values)
        set_(self, "_reverse", self.type in _WIDE_FORMATS and self.order in ("CDAB", "DCBA"))
        set_(self, "_identity", self.scale == 1.0 and self.offset == 0.0)

    @property
    def numeric(self) -> bool:
        """True for the types scale and offset apply to."""
        return self.type not in (ModbusType.BOOL, ModbusType.STRING)

    # -- registers <-> raw ---------------------------------------------------------------------

    def decode_raw(self, registers: Sequence[int], at: int = 0) -> RawValue:
        """The raw value held in `registers[at : at + count]` (for a bit tag: its register)."""
        kind = self.type
        if kind is ModbusType.UINT16:
            return registers[at]
        if kind is ModbusType.INT16:
            word = registers[at]
            return word - 0x10000 if word & 0x8000 else word
        if kind is ModbusType.BOOL:
            return bool((registers[at] >> (self.bit or 0)) & 1)
        words = registers[at : at + self.count]
        if len(words) != self.count:
            raise ValueError(f"expected {self.count} registers, found {len(words)}")
        if self._reverse:
            words = words[::-1]
        assert self._words is not None
        data = self._words.pack(*words)
        if self._value is not None:
            value: int | float = self._value.unpack(data)[0]
            return value
        return data.split(b"\x00", 1)[0].decode("latin-1")[: self.length]

    def encode_raw(self, raw: RawValue) -> list[int]:
        """Registers holding `raw` (the inverse of `decode_raw`); a bit tag gives [0] or [1]."""
        kind = self.type
        if kind is ModbusType.BOOL:
            if not isinstance(raw, bool):
                raise WriteValueError(f"expected a bool, found {raw!r}")
            return [int(raw)]
        if kind is ModbusType.STRING:
            return self._encode_string(raw)
        if isinstance(raw, bool | str):
            raise WriteValueError(f"expected a number for a {kind} tag, found {raw!r}")
        if kind in INT_RANGES:
            if not isinstance(raw, int):
                raise WriteValueError(f"expected an integer for a {kind} tag, found {raw!r}")
            low, high = INT_RANGES[kind]
            if not low <= raw <= high:
                raise WriteValueError(
                    f"expected a raw {kind} value {low}..{high}, found {raw} "
                    "(after scale and offset)"
                )
            if kind is ModbusType.UINT16:
                return [raw]
            if kind is ModbusType.INT16:
                return [raw & 0xFFFF]
        elif kind is ModbusType.FLOAT32 and math.isfinite(raw) and abs(raw) > _FLOAT32_MAX:
            raise WriteValueError(f"expected a value a float32 can hold, found {raw!r}")
        assert self._words is not None and self._value is not None
        words = list(self._words.unpack(self._value.pack(raw)))
        if self._reverse:
            words.reverse()
        return words

    def _encode_string(self, raw: RawValue) -> list[int]:
        if not isinstance(raw, str):
            raise WriteValueError(f"expected a string, found {raw!r}")
        try:
            data = raw.encode("latin-1")
        except UnicodeEncodeError:
            raise WriteValueError(f"expected Latin-1 characters, found {raw!r}") from None
        if len(data) > (self.length or 0) or b"\x00" in data:
            raise WriteValueError(
                f"expected at most {self.length} characters without NUL, found {raw!r}"
            )
        assert self._words is not None
        return list(self._words.unpack(data.ljust(2 * self.count, b"\x00")))

    # -- raw <-> engineering -------------------------------------------------------------------

    def decode(self, registers: Sequence[int], at: int = 0) -> RawValue:
        """The engineering value in `registers[at : at + count]`: raw * scale + offset.

        An integer stays an int when scale is 1 and offset 0; bools and strings are never
        scaled.
        """
        raw = self.decode_raw(registers, at)
        if self._identity or isinstance(raw, bool | str):
            return raw
        return raw * self.scale + self.offset

    def to_raw(self, value: float | int | bool | str) -> RawValue:
        """Invert scale and offset and round to the raw type (no limit checks)."""
        kind = self.type
        if kind is ModbusType.BOOL:
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            raise WriteValueError(f"expected true/false (or 0/1) for a bool tag, found {value!r}")
        if kind is ModbusType.STRING:
            return value if isinstance(value, str) else self._reject_kind(value)
        if isinstance(value, bool | str):
            return self._reject_kind(value)
        if not math.isfinite(value):
            raise WriteValueError(f"expected a finite number, found {value!r}")
        if kind in INT_RANGES:
            if self._identity and isinstance(value, int):
                return value  # exact, also beyond 2**53
            raw = (value - self.offset) / self.scale
            if not math.isfinite(raw):
                raise WriteValueError(f"expected a number the {kind} tag can hold, found {value}")
            return round(raw)
        return float(value) if self._identity else (value - self.offset) / self.scale

    def _reject_kind(self, value: object) -> NoReturn:
        raise WriteValueError(f"expected a number for a {self.type} tag, found {value!r}")

    def prepare_write(
        self, value: float | int | bool, write_min: float | None, write_max: float | None
    ) -> PreparedWrite:
        """Check `value` against the limits, convert it, and check where it will land.

        Both the value asked for and the value the device will hold (after rounding to the
        raw type, e.g. 0.1 steps for an int16 with scale 0.1) must lie in
        [write_min, write_max]; a missing limit is no limit. Strings are not writable.
        """
        if self.type is ModbusType.STRING or isinstance(value, str):
            raise WriteValueError("expected a numeric or bool tag: string tags are read-only")
        try:
            number = float(value)
        except OverflowError:
            raise WriteValueError(f"expected a number a register can hold, found {value}") from None
        if not math.isfinite(number):
            raise WriteValueError(f"expected a finite value, found {value!r}")
        _check_limits("value", number, write_min, write_max, 0.0)
        raw = self.to_raw(value)
        registers = self.encode_raw(raw)
        landed = self.decode(list(registers))
        assert not isinstance(landed, str)
        if isinstance(landed, float) and not math.isfinite(landed):
            raise WriteValueError(f"expected a value the tag can hold, found {value!r}")
        slack = _SLACK * max(1.0, abs(write_min or 0.0), abs(write_max or 0.0))
        if self.type is ModbusType.FLOAT32:
            slack += abs(float(landed)) * 2.0**-23  # float32 keeps 24 significant bits
        _check_limits("value after rounding to the register", float(landed), write_min,
                      write_max, slack)  # fmt: skip
        return PreparedWrite(raw=raw, registers=tuple(registers), landed=landed)


def _check_limits(
    what: str, number: float, low: float | None, high: float | None, slack: float
) -> None:
    if (low is not None and number < low - slack) or (high is not None and number > high + slack):
        bounds = (
            f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
        )
        raise WriteValueError(f"expected a {what} within write limits {bounds}, found {number:g}")
