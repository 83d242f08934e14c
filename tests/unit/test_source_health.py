"""A source's tags by latest status, and its verdict: ok, degraded or down."""

from __future__ import annotations

from agent.api.source_status import source_health
from agent.domain.samples import (
    BAD_DEVICE_FAILURE,
    BAD_NO_COMMUNICATION,
    GOOD,
    UNCERTAIN_LAST_USABLE_VALUE,
    DriverFigures,
    Sample,
    TagHealth,
    TagStatuses,
)


def test_the_latest_status_of_each_tag_counts_in_tag_order() -> None:
    statuses = TagStatuses(["a", "b", "c", "d", "e"])
    statuses.note([Sample("c", 1.0, None, BAD_DEVICE_FAILURE), Sample("a", 1.0, 1.0)])
    statuses.note([Sample("b", 2.0, 2.0, UNCERTAIN_LAST_USABLE_VALUE), Sample("a", 2.0, None,
                   BAD_NO_COMMUNICATION)])  # fmt: skip
    health = statuses.health(shown=2)
    assert (health.total, health.good, health.uncertain, health.bad, health.waiting) == (
        5, 0, 1, 2, 2)  # fmt: skip
    assert health.not_good == (("a", BAD_NO_COMMUNICATION), ("b", UNCERTAIN_LAST_USABLE_VALUE))
    statuses.note([Sample("a", 3.0, 3.0, GOOD), Sample("c", 3.0, 4.0, GOOD)])
    assert statuses.health().not_good == (("b", UNCERTAIN_LAST_USABLE_VALUE),)


def figures(state: str, bad: int = 0, uncertain: int = 0) -> DriverFigures:
    tags = TagHealth(4, 4 - bad - uncertain, uncertain, bad, 0, ())
    units = {1: {"requests": 60, "exceptions": 60, "timeouts": 0, "garbled": 0}}
    return DriverFigures("plc", "modbus", state, 10, 0, {}, tags, units)


def test_connected_with_a_bad_tag_is_degraded_and_says_why() -> None:
    assert source_health(figures("connected")) == ("ok", [])
    assert source_health(figures("connected", bad=3, uncertain=1)) == (
        "degraded", ["3 of 4 tags Bad", "1 of 4 tags Uncertain"])  # fmt: skip
    assert source_health(figures("disconnected", bad=4)) == (
        "down", ["not connected (disconnected)", "4 of 4 tags Bad"])  # fmt: skip
