"""drivers.opcua_values: DataValues into Samples, values into Variants (pure, no sockets)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, cast

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from agent.domain.samples import BAD_TYPE_MISMATCH, Quality, Sample
from drivers.opcua_values import (
    SampleMaker,
    TagScaling,
    coerce_for_write,
    deadband_filter,
    is_overflow,
    status_name,
)

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 250_000, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(milliseconds=10)
NOW = 1_800_000_000.0


def notification(handle: int, value: Any, status: int = 0, **stamps: Any) -> Any:
    item = ua.MonitoredItemNotification()
    item.ClientHandle = handle
    variant = ua.Variant(value) if value is not None else ua.Variant()
    item.Value = ua.DataValue(
        variant,
        StatusCode=ua.StatusCode(cast(Any, status)),
        SourceTimestamp=stamps.get("source", T0),
        ServerTimestamp=stamps.get("server", T1),
    )
    return item


def convert(maker: SampleMaker, items: list[Any]) -> tuple[list[Sample], int, int]:
    out: list[Sample] = []
    unknown, overflows = maker.from_notifications(items, NOW, out)
    return out, unknown, overflows


def test_a_notification_keeps_status_and_both_timestamps() -> None:
    maker = SampleMaker([TagScaling("FeedRate"), TagScaling("Running")])
    out, unknown, overflows = convert(
        maker, [notification(1, 181.5), notification(2, True, 0x40900000)]
    )
    assert (unknown, overflows) == (0, 0)
    assert out == [
        Sample("FeedRate", T0.timestamp(), 181.5, 0, T1.timestamp()),
        Sample("Running", T0.timestamp(), True, 0x40900000, T1.timestamp()),
    ]
    assert out[1].quality is Quality.UNCERTAIN


def test_a_bad_status_is_never_a_zero_and_missing_timestamps_fall_back() -> None:
    maker = SampleMaker([TagScaling("MillPower")])
    out, _, _ = convert(maker, [notification(1, None, 0x808B0000, source=None)])
    assert out == [Sample("MillPower", T1.timestamp(), None, 0x808B0000, T1.timestamp())]
    out, _, _ = convert(maker, [notification(1, 2.0, source=None, server=None)])
    assert (out[0].source_time, out[0].server_time) == (NOW, None)


def test_unknown_handles_are_counted_not_converted_and_overflow_is_seen() -> None:
    maker = SampleMaker([TagScaling("A")])
    items = [notification(0, 1.0), notification(2, 1.0), notification(1, 1.0, 0x00000480)]
    out, unknown, overflows = convert(maker, items)
    assert unknown == 2 and overflows == 1 and len(out) == 1
    assert out[0].quality is Quality.GOOD and is_overflow(out[0].status)
    assert not is_overflow(0x00000080)  # the bit only counts with InfoType DataValue


def test_scale_and_offset_apply_to_numbers_only() -> None:
    maker = SampleMaker([TagScaling("T", scale=0.1, offset=-40.0), TagScaling("B", 2.0, 1.0)])
    out, _, _ = convert(maker, [notification(1, 650), notification(2, True)])
    assert out[0].value == pytest.approx(25.0) and out[1].value is True
    assert TagScaling("T", 0.1, -40.0).to_raw(25.0) == pytest.approx(650.0)
    assert TagScaling("X").to_raw(7) == 7 and type(TagScaling("X").to_raw(7)) is int


def test_values_the_agent_cannot_represent_become_bad_type_mismatch() -> None:
    maker = SampleMaker([TagScaling("Arr"), TagScaling("When"), TagScaling("Text")])
    items = [notification(1, [1.0, 2.0]), notification(2, T0), notification(3, "ok")]
    out, _, _ = convert(maker, items)
    assert (out[0].value, out[0].status) == (None, BAD_TYPE_MISMATCH)
    assert out[1].value == T0.timestamp() and out[2].value == "ok"


def test_reads_convert_in_handle_order() -> None:
    maker = SampleMaker([TagScaling("A"), TagScaling("B")])
    out: list[Sample] = []
    maker.from_reads([notification(1, 1.0).Value, notification(2, 2.0).Value], NOW, out)
    assert [(s.tag, s.value) for s in out] == [("A", 1.0), ("B", 2.0)]


@pytest.mark.parametrize(("value", "vtype", "expected"), [
    (4242.0, ua.VariantType.Int32, 4242),
    (7, ua.VariantType.Double, 7.0),
    (1, ua.VariantType.Boolean, True),
    (True, ua.VariantType.Boolean, True),
    (65535, ua.VariantType.UInt16, 65535),
    (-2.5, ua.VariantType.Float, -2.5),
    (2**40, ua.VariantType.Int64, 2**40),
])  # fmt: skip
def test_coercion_gives_exactly_the_node_type(
    value: float, vtype: ua.VariantType, expected: object
) -> None:
    variant = coerce_for_write(value, vtype)
    assert variant.VariantType is vtype
    assert variant.Value == expected and type(variant.Value) is type(expected)


@pytest.mark.parametrize(("value", "vtype", "why"), [
    (1.5, ua.VariantType.Int32, "whole number"),
    (2**31, ua.VariantType.Int32, "-2147483648..2147483647"),
    (-1, ua.VariantType.UInt32, "0..4294967295"),
    (math.nan, ua.VariantType.Double, "finite"),
    (1e39, ua.VariantType.Float, "Float"),
    (True, ua.VariantType.Double, "a number"),
    (2, ua.VariantType.Boolean, "true/false"),
    (1.0, ua.VariantType.String, "numeric or Boolean"),
])  # fmt: skip
def test_coercion_refuses_what_does_not_fit(value: float, vtype: ua.VariantType, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        coerce_for_write(value, vtype)


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_every_int32_survives_a_trip_through_float(number: int) -> None:
    assert coerce_for_write(float(number), ua.VariantType.Int32).Value == number


def test_deadband_filter_and_status_names() -> None:
    assert deadband_filter(0.0, "absolute") is None
    absolute = deadband_filter(0.5, "absolute")
    percent = deadband_filter(2.0, "percent")
    assert absolute is not None and percent is not None
    assert (absolute.DeadbandType, absolute.DeadbandValue) == (ua.DeadbandType.Absolute, 0.5)
    assert percent.DeadbandType == ua.DeadbandType.Percent
    assert absolute.Trigger == ua.DataChangeTrigger.StatusValue
    assert status_name(0x803C0000) == "BadOutOfRange"
    assert status_name(0x00000480) == "Good"  # info bits ignored
    assert status_name(0x8FFF0000) == "Bad_0x8FFF0000"
