"""The Modbus register codec: known vectors, pymodbus as an independent reference, round trips.

Pure: no sockets. pymodbus' `convert_to_registers`/`convert_from_registers` (class methods,
no client instance, no I/O) serve as a second implementation for ABCD and CDAB.
"""

from __future__ import annotations

import math
import struct
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from agent.config.addresses import ModbusType
from drivers.modbus_codec import ByteOrder, RawValue, TagCodec, WriteValueError

ORDERS: tuple[ByteOrder, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
T = ModbusType
DT = AsyncModbusTcpClient.DATATYPE
INT_RANGES = {
    T.INT16: (-(2**15), 2**15 - 1),
    T.UINT16: (0, 2**16 - 1),
    T.INT32: (-(2**31), 2**31 - 1),
    T.UINT32: (0, 2**32 - 1),
    T.INT64: (-(2**63), 2**63 - 1),
    T.UINT64: (0, 2**64 - 1),
}
PYMODBUS_TYPES = {
    T.INT16: DT.INT16, T.UINT16: DT.UINT16, T.INT32: DT.INT32, T.UINT32: DT.UINT32,
    T.INT64: DT.INT64, T.UINT64: DT.UINT64, T.FLOAT32: DT.FLOAT32, T.FLOAT64: DT.FLOAT64,
}  # fmt: skip


# -- known vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x3F80, 0x0000]),
        ("CDAB", [0x0000, 0x3F80]),
        ("BADC", [0x803F, 0x0000]),
        ("DCBA", [0x0000, 0x803F]),
    ],
)
def test_float32_one_in_every_order(order: ByteOrder, registers: list[int]) -> None:
    codec = TagCodec(T.FLOAT32, order)
    assert codec.encode_raw(1.0) == registers
    assert codec.decode_raw(registers) == 1.0


@pytest.mark.parametrize(
    ("kind", "value", "order", "registers"),
    [
        (T.INT32, 0x01020304, "ABCD", [0x0102, 0x0304]),
        (T.INT32, 0x01020304, "CDAB", [0x0304, 0x0102]),
        (T.INT32, 0x01020304, "BADC", [0x0201, 0x0403]),
        (T.INT32, 0x01020304, "DCBA", [0x0403, 0x0201]),
        (T.UINT32, 1_234_567, "ABCD", [0x0012, 0xD687]),
        (T.INT32, -2, "ABCD", [0xFFFF, 0xFFFE]),
        (T.UINT64, 0x0102030405060708, "ABCD", [0x0102, 0x0304, 0x0506, 0x0708]),
        (T.UINT64, 0x0102030405060708, "CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),
        (T.UINT64, 0x0102030405060708, "BADC", [0x0201, 0x0403, 0x0605, 0x0807]),
        (T.UINT64, 0x0102030405060708, "DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
        (T.INT64, -1, "CDAB", [0xFFFF] * 4),
        (T.FLOAT64, 1.0, "ABCD", [0x3FF0, 0, 0, 0]),
        (T.FLOAT64, 1.0, "CDAB", [0, 0, 0, 0x3FF0]),
        (T.FLOAT64, 1.0, "BADC", [0xF03F, 0, 0, 0]),
        (T.FLOAT64, 1.0, "DCBA", [0, 0, 0, 0xF03F]),
        (T.INT16, -1, "ABCD", [0xFFFF]),
        (T.INT16, -32768, "DCBA", [0x8000]),  # 16-bit values ignore byte_order
        (T.UINT16, 0x1234, "BADC", [0x1234]),
    ],
)
def test_known_vectors(
    kind: ModbusType, value: int | float, order: ByteOrder, registers: list[int]
) -> None:
    codec = TagCodec(kind, order)
    assert codec.count == len(registers)
    assert codec.encode_raw(value) == registers
    assert codec.decode_raw(registers) == value


def test_strings_pack_two_characters_a_register() -> None:
    assert TagCodec(T.STRING, length=3).encode_raw("ABC") == [0x4142, 0x4300]
    assert TagCodec(T.STRING, "BADC", length=3).encode_raw("ABC") == [0x4241, 0x0043]
    assert TagCodec(T.STRING, length=6).decode_raw([0x4D49, 0x4C4C, 0x0000]) == "MILL"
    assert TagCodec(T.STRING, length=3).decode_raw([0x4142, 0x4344]) == "ABC"  # cut at length
    assert TagCodec(T.STRING, length=4).decode_raw([0xE96C, 0x0000]) == "\u00e9l"  # Latin-1


def test_bits_in_registers_and_bit_tables() -> None:
    assert TagCodec(T.BOOL, bit=3).decode_raw([0b1000]) is True
    assert TagCodec(T.BOOL, bit=2).decode_raw([0b1000]) is False
    assert TagCodec(T.BOOL, bit=15).decode_raw([0x8000]) is True
    assert TagCodec(T.BOOL).decode([False, True], 1) is True  # a coil: one bit per entry
    assert TagCodec(T.BOOL, bit=3).encode_raw(True) == [1]


def test_decoding_at_an_offset_leaves_the_response_untouched() -> None:
    response = [0xAAAA, 0x0000, 0x3F80, 0xBBBB]
    assert TagCodec(T.FLOAT32, "CDAB").decode(response, 1) == 1.0
    assert response == [0xAAAA, 0x0000, 0x3F80, 0xBBBB]


# -- pymodbus as a second implementation (ABCD = "big", CDAB = "little") -----------------------


def raw_values(kind: ModbusType) -> st.SearchStrategy[int | float]:
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.integers(low, high)
    width: Literal[32, 64] = 32 if kind is T.FLOAT32 else 64
    return st.floats(width=width, allow_nan=False)


@given(
    data=st.data(),
    kind=st.sampled_from(list(PYMODBUS_TYPES)),
    order=st.sampled_from(["ABCD", "CDAB"]),
)
def test_agrees_with_pymodbus(data: st.DataObject, kind: ModbusType, order: ByteOrder) -> None:
    value = data.draw(raw_values(kind))
    word_order: Literal["big", "little"] = "big" if order == "ABCD" else "little"
    codec = TagCodec(kind, order)
    ours = codec.encode_raw(value)
    assert ours == AsyncModbusTcpClient.convert_to_registers(
        value, PYMODBUS_TYPES[kind], word_order
    )
    assert (
        AsyncModbusTcpClient.convert_from_registers(ours, PYMODBUS_TYPES[kind], word_order) == value
    )


# -- round trips for every type and order ----------------------------------------------------


def same(a: RawValue, b: RawValue) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)  # NaN payloads and -0.0 included
    return type(a) is type(b) and a == b


@given(
    data=st.data(),
    kind=st.sampled_from([*INT_RANGES, T.FLOAT32, T.FLOAT64]),
    order=st.sampled_from(ORDERS),
)
def test_numbers_round_trip(data: st.DataObject, kind: ModbusType, order: ByteOrder) -> None:
    codec = TagCodec(kind, order)
    if kind in INT_RANGES:
        value: int | float = data.draw(raw_values(kind))
    else:  # every bit pattern: NaN payloads, infinities and -0.0 included
        width = 4 if kind is T.FLOAT32 else 8
        pattern = data.draw(st.binary(min_size=width, max_size=width))
        value = struct.unpack(">f" if width == 4 else ">d", pattern)[0]
    registers = codec.encode_raw(value)
    assert len(registers) == codec.count and all(0 <= r <= 0xFFFF for r in registers)
    assert same(codec.decode_raw(registers), value)


@given(
    registers=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
    kind=st.sampled_from(list(PYMODBUS_TYPES)),
    order=st.sampled_from(ORDERS),
)
def test_every_register_pattern_decodes_and_re_encodes(
    registers: list[int], kind: ModbusType, order: ByteOrder
) -> None:
    codec = TagCodec(kind, order)
    words = registers[: codec.count]
    assert codec.encode_raw(codec.decode_raw(words)) == words  # NaN payloads survive too


@given(
    text=st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=20),
    order=st.sampled_from(ORDERS),
    spare=st.integers(0, 3),
)
def test_strings_round_trip(text: str, order: ByteOrder, spare: int) -> None:
    codec = TagCodec(T.STRING, order, length=max(1, len(text) + spare))
    registers = codec.encode_raw(text)
    assert len(registers) == codec.count
    assert codec.decode_raw(registers) == text


@given(bit=st.integers(0, 15), others=st.integers(0, 0xFFFF), on=st.booleans())
def test_bits_round_trip(bit: int, others: int, on: bool) -> None:
    codec = TagCodec(T.BOOL, bit=bit)
    word = (others & ~(1 << bit)) | (int(on) << bit)
    assert codec.decode_raw([word]) is on
    assert codec.encode_raw(on) == [int(on)]


@given(
    raw=st.integers(-(2**15), 2**15 - 1),
    scale=st.sampled_from([0.1, 0.01, 0.5, 2.0, 10.0, -1.0]),
    offset=st.sampled_from([0.0, -40.0, 273.15, 1000.0]),
    order=st.sampled_from(ORDERS),
)
def test_scaled_integers_round_trip_through_engineering_units(
    raw: int, scale: float, offset: float, order: ByteOrder
) -> None:
    codec = TagCodec(T.INT16, order, scale=scale, offset=offset)
    engineering = codec.decode([raw & 0xFFFF])
    assert engineering == pytest.approx(raw * scale + offset)
    assert codec.to_raw(engineering) == raw


@given(value=st.floats(-1e6, 1e6), order=st.sampled_from(ORDERS))
def test_scaled_floats_round_trip(value: float, order: ByteOrder) -> None:
    codec = TagCodec(T.FLOAT64, order, scale=0.001, offset=5.0)
    assert codec.decode(codec.encode_raw(codec.to_raw(value))) == pytest.approx(value, abs=1e-6)


def test_unscaled_integers_stay_exact_integers() -> None:
    codec = TagCodec(T.UINT64)
    assert codec.decode(codec.encode_raw(2**64 - 1)) == 2**64 - 1
    assert codec.to_raw(2**63 + 1) == 2**63 + 1  # no detour through float
    assert isinstance(TagCodec(T.INT16).decode([5]), int)
    assert isinstance(TagCodec(T.INT16, scale=0.1).decode([5]), float)


# -- writes: checked before anything is sent ---------------------------------------------------


def test_a_write_inverts_scale_and_offset() -> None:
    codec = TagCodec(T.INT16, scale=0.1)
    prepared = codec.prepare_write(185.5, 150.0, 210.0)
    assert prepared.raw == 1855 and prepared.registers == (1855,)
    assert prepared.landed == pytest.approx(185.5)
    celsius = TagCodec(T.INT16, scale=0.1, offset=-40.0).prepare_write(20.0, -40.0, 100.0)
    assert celsius.raw == 600


@pytest.mark.parametrize(
    ("codec", "value", "limits", "expected"),
    [
        (TagCodec(T.INT16, scale=0.1), 210.5, (150.0, 210.0), "within write limits"),
        (TagCodec(T.INT16, scale=0.1), 149.9, (150.0, 210.0), "within write limits"),
        # asked for 209.96, lands on 210.0 (0.1 steps): above write_max 209.97
        (TagCodec(T.INT16, scale=0.1), 209.96, (150.0, 209.97), "after rounding"),
        (TagCodec(T.INT16), 40000, (None, None), "-32768..32767"),
        (TagCodec(T.UINT16), -1, (None, None), "0..65535"),
        (TagCodec(T.FLOAT32), 1e39, (None, None), "a float32 can hold"),
        (TagCodec(T.FLOAT32), math.nan, (None, None), "finite"),
        (TagCodec(T.FLOAT64), math.inf, (None, None), "finite"),
        (TagCodec(T.INT32), True, (None, None), "a number"),
        (TagCodec(T.BOOL, bit=1), 2, (None, None), "true/false"),
        (TagCodec(T.BOOL, bit=1), 2, (0.0, 1.0), "within write limits"),
        (TagCodec(T.STRING, length=4), 1, (None, None), "read-only"),
    ],
)
def test_refused_writes_say_why(
    codec: TagCodec, value: float, limits: tuple[float | None, float | None], expected: str
) -> None:
    with pytest.raises(WriteValueError, match=expected):
        codec.prepare_write(value, *limits)


def test_limits_allow_float_noise_but_not_rounding_steps() -> None:
    # 210.0 / 0.1 * 0.1 is 210.00000000000003 in floats: still inside [150, 210]
    assert TagCodec(T.INT16, scale=0.1).prepare_write(210.0, 150.0, 210.0).raw == 2100
    # float32 cannot hold 13.3 exactly; the nearest float32 is a hair above it
    assert TagCodec(T.FLOAT32, "CDAB").prepare_write(13.3, 8.0, 13.3).registers != ()
    assert TagCodec(T.BOOL).prepare_write(True, 0.0, 1.0).registers == (1,)
    assert TagCodec(T.BOOL, bit=4).prepare_write(0, 0.0, 1.0).raw is False


@given(
    value=st.floats(-1000, 1000),
    scale=st.sampled_from([0.1, 0.5, 1.0, 2.0]),
    kind=st.sampled_from([T.INT16, T.INT32, T.FLOAT32, T.FLOAT64]),
    order=st.sampled_from(ORDERS),
)
def test_a_prepared_write_decodes_to_what_lands(
    value: float, scale: float, kind: ModbusType, order: ByteOrder
) -> None:
    codec = TagCodec(kind, order, scale=scale)
    prepared = codec.prepare_write(value, None, None)
    assert codec.decode(list(prepared.registers)) == prepared.landed
    step = scale if kind in (T.INT16, T.INT32) else abs(value) * 1e-6 + 1e-30
    assert abs(float(prepared.landed) - value) <= step / 2 + 1e-9


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        TagCodec(T.INT16, scale=0.0)
    with pytest.raises(ValueError, match="bit"):
        TagCodec(T.INT16, bit=3)
    with pytest.raises(ValueError, match="length"):
        TagCodec(T.STRING)
    with pytest.raises(ValueError, match="expected 2 registers"):
        TagCodec(T.FLOAT32).decode_raw([1])


# -- what the configuration refuses because the codec cannot honour it -------------------------


def test_the_configuration_refuses_scaled_bools_and_writable_strings() -> None:
    from agent.config.checks import check_tags
    from agent.config.settings import ModbusSource, Tag

    plc = ModbusSource(kind="modbus", name="plc", host="10.0.0.1")
    tags = [
        Tag(name="run", source="plc", address="coil:1", scale=2.0),
        Tag(name="bit", source="plc", address="holding:7.3", type=T.BOOL, offset=1.0),
        Tag(
            name="label",
            source="plc",
            address="holding:10",
            type=T.STRING,
            length=8,
            writable=True,
            write_min=0,
            write_max=1,
        ),
        Tag(name="ok", source="plc", address="holding:20", type=T.INT16, scale=0.1),
    ]
    problems = check_tags(list(enumerate(tags)), [plc], "agent.toml")
    assert [p.key for p in problems] == ["tags[0].scale", "tags[1].offset", "tags[2].writable"]
    assert "numbers only" in problems[0].expected and "read-only" in problems[2].expected
