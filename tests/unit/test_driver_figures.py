"""What a driver reports about itself (agent.domain.samples.DriverFigures) and the status
names the agent's own table gives: the same names asyncua gives, so a Modbus source's
/status reads as it did when the API named its statuses with asyncua."""

from __future__ import annotations

from asyncua.ua.status_codes import code_to_name_doc

import agent.domain.samples as samples
from agent.domain.samples import (
    BAD_DEVICE_FAILURE,
    GOOD,
    STATUS_NAMES,
    UNCERTAIN_LAST_USABLE_VALUE,
    DriverFigures,
    TagHealth,
    TagProblem,
    status_name,
    tag_problems,
)
from drivers.opcua_values import status_name as asyncua_name


def test_every_status_code_the_drivers_synthesise_is_named_as_asyncua_names_it() -> None:
    codes = {
        value
        for key, value in vars(samples).items()
        if key.isupper()
        and isinstance(value, int)
        and key.startswith(("GOOD", "UNCERTAIN_", "BAD"))
    }
    assert codes == set(STATUS_NAMES)  # a new code needs its name
    for code, name in STATUS_NAMES.items():
        assert name == code_to_name_doc[code][0], hex(code)


def test_unlisted_codes_and_info_bits_are_named_like_asyncua_names_unknown_ones() -> None:
    for code in (0x00000480, BAD_DEVICE_FAILURE | 0x0480, 0x8FFF0000, 0x4FFF0000, 0x0FFF0000):
        assert status_name(code) == asyncua_name(code), hex(code)
    assert status_name(0x8FFF0000) == "Bad_0x8FFF0000"
    assert status_name(0x808C0000) == "Bad_0x808C0000"  # not ours: OPC UA names it itself


def test_errors_are_the_unit_counters_summed_and_none_without_units() -> None:
    units = {
        1: {"requests": 10, "exceptions": 1, "timeouts": 2, "garbled": 0},
        7: {"requests": 5, "exceptions": 0, "timeouts": 1, "garbled": 3},
    }
    modbus = DriverFigures("plc", "modbus", "connected", 0, 0, {}, None, units)
    assert modbus.errors == {"requests": 15, "exceptions": 1, "timeouts": 3, "garbled": 3}
    assert DriverFigures("mill", "opcua", "connected", 0, 0, {}).errors is None


def test_tag_problems_name_each_status_with_the_drivers_naming() -> None:
    health = TagHealth(
        3, 1, 1, 1, 0, (("a", BAD_DEVICE_FAILURE), ("b", UNCERTAIN_LAST_USABLE_VALUE))
    )
    assert tag_problems(health, status_name) == (
        TagProblem("a", BAD_DEVICE_FAILURE, "BadDeviceFailure"),
        TagProblem("b", UNCERTAIN_LAST_USABLE_VALUE, "UncertainLastUsableValue"),
    )
    assert tag_problems(TagHealth(1, 1, 0, 0, 0, ()), status_name) == ()
    assert status_name(GOOD) == "Good"
