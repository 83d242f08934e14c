"""The heartbeat counter's range: the tag's type and write limits, the wrap, the refusals."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config.heartbeat_counter import (
    EXPECTED,
    MIN_VALUES,
    CounterRange,
    Refusal,
    counter_range,
    heartbeat_range,
    least_values,
)
from agent.config.settings import Tag

WIDE: dict[str, Any] = {"write_min": -(2.0**31), "write_max": 2.0**31 - 1}


def tag(address: str, type_: str | None = None, **extra: Any) -> Tag:
    fields = {"name": "HB", "source": "plc", "address": address, "type": type_, "writable": True}
    return Tag.model_validate(fields | extra)


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [
        # Modbus: the register's type bounds the write limits, whichever is narrower.
        (tag("holding:10", "uint16", **WIDE), 0, 65535),
        (tag("holding:10", "int16", **WIDE), -32768, 32767),
        (tag("holding:10", "uint16", write_min=0, write_max=65535), 0, 65535),
        (tag("holding:10", "int32", write_min=-5.5, write_max=20.9), -5, 20),
        (tag("holding:10", "float32", write_min=-1e30, write_max=1e30), -(2**24), 2**24),
        (tag("holding:10", "uint64", write_min=0, write_max=1e30), 0, 2**64 - 1),
        # OPC UA: 0..32767 (every numeric node type from Int16 up) inside the write limits...
        (tag("nsu=urn:x;s=HB", **WIDE), 0, 32767),
        (tag("nsu=urn:x;s=HB", write_min=100, write_max=199), 100, 199),
        (tag("nsu=urn:x;s=HB", write_min=-1e9, write_max=1e9), 0, 32767),
        # ... unless the limits lie outside it: then they name the node's type themselves.
        (tag("nsu=urn:x;s=HB", write_min=65520, write_max=65535), 65520, 65535),
        (tag("nsu=urn:x;s=HB", write_min=-20, write_max=-1), -20, -1),
        (tag("nsu=urn:x;s=HB", write_min=-8, write_max=11), -8, 11),
    ],
)
def test_the_counter_lives_inside_the_type_and_the_write_limits(
    spec: Tag, low: int, high: int
) -> None:
    assert counter_range(spec) == CounterRange(low, high)


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        (tag("coil:3"), "'HB', a bool tag"),
        (tag("holding:3.4", "bool"), "'HB', a bool tag"),
        (tag("holding:3", "string", length=4), "'HB', a string tag"),
        (tag("holding:3"), "'HB', a register tag without a type"),
        (tag("holding:3", "int16", write_min=0, write_max=9),
         "'HB' with write limits [0, 9]: 10 whole numbers in its int16 type"),
        (tag("holding:3", "uint16", write_min=-100, write_max=5),
         "'HB' with write limits [-100, 5]: 6 whole numbers in its uint16 type"),
        (tag("nsu=urn:x;s=HB", write_min=0.5, write_max=1.5),
         "'HB' with write limits [0.5, 1.5]: 1 whole number"),
        (tag("nsu=urn:x;s=HB", scale=0.1, **WIDE), "'HB' with scale 0.1 and offset 0"),
    ],
)  # fmt: skip
def test_a_tag_that_cannot_count_is_named_with_the_reason(spec: Tag, found: str) -> None:
    assert counter_range(spec) == found


def test_the_minimum_follows_the_caller() -> None:
    spec = tag("holding:3", "uint16", write_min=0, write_max=19)
    assert counter_range(spec) == CounterRange(0, 19)
    assert isinstance(counter_range(spec, min_values=24), str)
    assert MIN_VALUES == 16


def test_after_counts_up_and_wraps_from_the_top_to_the_bottom() -> None:
    counter = CounterRange(-3, 2)
    seen = [counter.at(4)]
    for _ in range(8):
        seen.append(counter.after(seen[-1]))
    assert seen == [1, 2, -3, -2, -1, 0, 1, 2, -3]
    assert counter.size == 6
    assert counter.after(99) == -3  # a value from outside (never ours) restarts at the bottom


# -- with the echo: the counter wraps where the heartbeat and its echo both hold it ----------

HB_UINT32 = tag("holding:10", "uint32", write_min=0, write_max=2.0**32 - 1)


def echo(address: str, type_: str | None = None) -> Tag:
    return Tag.model_validate({"name": "Echo", "source": "plc", "address": address,
                               "type": type_})  # fmt: skip


@pytest.mark.parametrize(
    ("heartbeat", "echoes", "low", "high"),
    [
        (HB_UINT32, [], 0, 2**32 - 1),  # no echo known: the tag alone
        (HB_UINT32, [echo("holding:20", "uint16")], 0, 65535),  # the usual 16-bit echo
        (HB_UINT32, [echo("holding:20", "int16")], 0, 32767),
        (tag("holding:10", "int32", **WIDE), [echo("holding:20", "int16")], -32768, 32767),
        (HB_UINT32, [echo("holding:20", "uint16"), echo("holding:30", "int16")], 0, 32767),
        (HB_UINT32, [echo("holding:20", "float32")], 0, 2**24),
        (HB_UINT32, [echo("nsu=urn:x;s=Echo")], 0, 32767),  # an OPC UA echo: 0..32767
        # an OPC UA echo of an OPC UA heartbeat shares its node's type (the limits name it)
        (tag("nsu=urn:x;s=HB", write_min=65520, write_max=65535), [echo("nsu=urn:x;s=Echo")],
         65520, 65535),
        (tag("holding:10", "uint16", **WIDE), [echo("holding:20", "uint32")], 0, 65535),
    ],
)  # fmt: skip
def test_the_counter_fits_the_heartbeat_and_every_echo(
    heartbeat: Tag, echoes: list[Tag], low: int, high: int
) -> None:
    assert heartbeat_range(heartbeat, echoes) == CounterRange(low, high)


def test_an_echo_that_shares_too_few_values_is_refused_on_its_own_key() -> None:
    heartbeat = tag("holding:10", "uint32", write_min=100_000, write_max=200_000)
    found = heartbeat_range(heartbeat, [echo("holding:20", "uint16")])
    assert found == Refusal(
        "heartbeat_echo_tag",
        "an echo tag that can read back at least 16 of the heartbeat's values 100000..200000 "
        "(the counter wraps where both the heartbeat and its echo hold it)",
        "'Echo', a uint16 tag (0..65535): 0 of them",
    )
    edge = tag("holding:10", "uint32", write_min=65530, write_max=70_000)  # 6 in common
    refused = heartbeat_range(edge, [echo("holding:20", "uint16")])
    assert isinstance(refused, Refusal)
    assert refused.found == "'Echo', a uint16 tag (0..65535): 6 of them"
    assert heartbeat_range(edge, [echo("holding:20", "uint32")]) == CounterRange(65530, 70_000)


def test_the_heartbeat_is_refused_first_and_the_echo_lag_sets_the_minimum() -> None:
    refused = heartbeat_range(tag("coil:3"), [echo("holding:20", "uint16")])
    assert refused == Refusal("heartbeat_tag", EXPECTED.format(n=16), "'HB', a bool tag")
    narrow = tag("holding:10", "uint32", write_min=65500, write_max=2.0**32 - 1)
    uint16 = [echo("holding:20", "uint16")]
    assert heartbeat_range(narrow, uint16, lag_max=10) == CounterRange(65500, 65535)  # 36 >= 22
    refused = heartbeat_range(narrow, uint16, lag_max=20)  # 36 < 42
    assert isinstance(refused, Refusal)
    assert refused.key == "heartbeat_echo_tag"
    assert "at least 42 of" in refused.expected
    assert least_values(0) == MIN_VALUES
    assert least_values(20) == 42


# -- an OPC UA heartbeat whose write limits lie below 0..32767 (issue 12, review) ------------


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [
        # only a negative maximum: Int16's range below it, not nothing
        (tag("nsu=urn:x;s=HB", write_max=-5), -32768, -5),
        (tag("nsu=urn:x;s=HB", write_max=10), -32768, 10),  # 0..10 is too few: below it too
        (tag("nsu=urn:x;s=HB", write_max=15), 0, 15),  # 0..15 is enough: the portable clamp
        (tag("nsu=urn:x;s=HB", write_min=-5), 0, 32767),
    ],
)
def test_an_opcua_heartbeat_with_one_limit_falls_back_to_int16_when_0_32767_is_too_few(
    spec: Tag, low: int, high: int
) -> None:
    assert counter_range(spec) == CounterRange(low, high)
    assert heartbeat_range(spec) == CounterRange(low, high)


def test_an_opcua_heartbeat_with_one_limit_outside_int16_is_still_refused() -> None:
    assert counter_range(tag("nsu=urn:x;s=HB", write_max=-40_000)) == (
        "'HB' with write limits [none, -40000]: 0 whole numbers"
    )
