"""The Modbus read planner against a brute-force search, and the scan policy beside it.

The brute force knows only the rules (a request is a window of at most `limit` addresses,
every unasked run inside it at most `max_gap`, every span wholly inside some request) and
tries every combination of windows; the planner must match its request count exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.addresses import Table
from agent.domain.backoff import Backoff
from agent.domain.samples import BAD, BAD_DEVICE_FAILURE, BAD_NO_COMMUNICATION, GOOD
from drivers.modbus_plan import Limits, PlannedRead, Span, plan_reads, requests_per_tag
from drivers.modbus_scan import (
    MissKind,
    StatusMemory,
    UnitHealth,
    exception_name,
    exception_status,
    is_gateway_miss,
    next_deadline,
    re_read_per_tag,
    split_for_session,
)

TABLES = list(Table)


# -- the reference -----------------------------------------------------------------------------


def unasked_runs(asked: set[int], start: int, end: int) -> list[int]:
    """Lengths of the runs of addresses in [start, end] that nobody asked for."""
    runs, run = [], 0
    for address in range(start, end + 1):
        if address in asked:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return [*runs, run] if run else runs


def brute_force_count(spans: Sequence[Span], limit: int, max_gap: int) -> int:
    """The fewest windows covering every span, by trying every combination."""
    asked = {a for s in spans for a in range(s.start, s.end + 1)}
    windows = [
        (lo, hi)
        for lo in {s.start for s in spans}
        for hi in {s.end for s in spans}
        if lo <= hi < lo + limit and all(run <= max_gap for run in unasked_runs(asked, lo, hi))
    ]
    for k in range(1, len(spans) + 1):
        for combo in itertools.combinations(windows, k):
            if all(any(lo <= s.start and s.end <= hi for lo, hi in combo) for s in spans):
                return k
    raise AssertionError("every span alone is a valid window; unreachable")


def check_rules(spans: Sequence[Span], plan: Sequence[PlannedRead], limits: Limits) -> None:
    """Every span in exactly one request and inside it; limits and gaps respected."""
    members = sorted(i for read in plan for i in read.members)
    assert members == list(range(len(spans))), "every span is planned exactly once"
    for read in plan:
        assert 1 <= read.count <= limits.size(read.table)
        group = [s for s in spans if (s.unit_id, s.table) == (read.unit_id, read.table)]
        asked = {a for s in group for a in range(s.start, s.end + 1)}
        assert all(
            run <= limits.gap(read.table) for run in unasked_runs(asked, read.start, read.end)
        )
        for i in read.members:
            span = spans[i]
            assert (span.unit_id, span.table) == (read.unit_id, read.table)
            assert read.start <= span.start and span.end <= read.end, "never split a value"
        assert read.start == min(spans[i].start for i in read.members)
        assert read.end == max(spans[i].end for i in read.members), "no unasked tail"
    keys = [(r.unit_id, TABLES.index(r.table), r.start) for r in plan]
    assert keys == sorted(keys)


# -- strategies --------------------------------------------------------------------------------


@st.composite
def small_spans(draw: st.DrawFn) -> list[Span]:
    out = []
    for _ in range(draw(st.integers(1, 7))):
        table = draw(st.sampled_from(TABLES))
        count = 1 if table.is_bit else draw(st.integers(1, 4))
        out.append(Span(draw(st.integers(1, 2)), table, draw(st.integers(0, 30)), count))
    return out


@st.composite
def tag_spans(draw: st.DrawFn) -> list[Span]:
    out = []
    for _ in range(draw(st.integers(1, 300))):
        table = draw(st.sampled_from(TABLES))
        count = 1 if table.is_bit else draw(st.sampled_from([1, 1, 2, 2, 4, 10, 123]))
        start = draw(st.integers(0, 65536 - count))
        out.append(Span(draw(st.integers(0, 3)), table, start, count))
    return out


# -- the planner ---------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    spans=small_spans(),
    size=st.integers(4, 12),
    bits=st.integers(1, 12),
    gap=st.integers(0, 4),
    gap_bits=st.integers(0, 4),
)
def test_the_planner_needs_no_more_requests_than_brute_force(
    spans: list[Span], size: int, bits: int, gap: int, gap_bits: int
) -> None:
    limits = Limits(max_registers=size, max_bits=bits, max_gap_registers=gap, max_gap_bits=gap_bits)
    plan = plan_reads(spans, limits)
    check_rules(spans, plan, limits)
    for unit_id, table in {(s.unit_id, s.table) for s in spans}:
        group = [s for s in spans if (s.unit_id, s.table) == (unit_id, table)]
        planned = [r for r in plan if (r.unit_id, r.table) == (unit_id, table)]
        assert len(planned) == brute_force_count(group, limits.size(table), limits.gap(table))


@settings(max_examples=60, deadline=None)
@given(spans=tag_spans(), gap=st.integers(0, 124), gap_bits=st.integers(0, 1999))
def test_protocol_limits_hold_at_scale(spans: list[Span], gap: int, gap_bits: int) -> None:
    limits = Limits(max_gap_registers=gap, max_gap_bits=gap_bits)
    check_rules(spans, plan_reads(spans, limits), limits)


def test_a_contiguous_block_is_cut_at_125_registers() -> None:
    spans = [Span(1, Table.HOLDING, a, 1) for a in range(1, 131)]
    plan = plan_reads(spans)
    assert [(r.start, r.count) for r in plan] == [(1, 125), (126, 5)]


def test_bits_go_2000_to_a_request() -> None:
    spans = [Span(1, Table.COIL, a, 1) for a in range(2001)]
    assert [(r.start, r.count) for r in plan_reads(spans)] == [(0, 2000), (2000, 1)]


def test_a_gap_longer_than_allowed_splits_the_request() -> None:
    # 3..10 is a gap of 8 (allowed), 13..29 one of 17 (not)
    spans = [Span(1, Table.INPUT, 1, 2), Span(1, Table.INPUT, 11, 2), Span(1, Table.INPUT, 30, 1)]
    plan = plan_reads(spans, Limits(max_gap_registers=8))
    assert [(r.start, r.count, r.members) for r in plan] == [(1, 12, (0, 1)), (30, 1, (2,))]
    plan = plan_reads(spans, Limits(max_gap_registers=7))
    assert [(r.start, r.count) for r in plan] == [(1, 2), (11, 2), (30, 1)]


def test_a_long_value_bridges_what_would_be_a_gap() -> None:
    # 2 and 12 are 9 apart, but the uint64 at 5..8 and the string at 9..11 fill it in.
    spans = [
        Span(1, Table.HOLDING, 2, 1),
        Span(1, Table.HOLDING, 5, 4),
        Span(1, Table.HOLDING, 9, 3),
        Span(1, Table.HOLDING, 12, 1),
    ]
    plan = plan_reads(spans, Limits(max_gap_registers=2))
    assert [(r.start, r.count) for r in plan] == [(2, 11)]


def test_values_are_never_split_across_requests() -> None:
    spans = [Span(1, Table.HOLDING, a, 2) for a in range(0, 200, 2)]  # 100 float32s
    plan = plan_reads(spans)
    assert [(r.start, r.count) for r in plan] == [(0, 124), (124, 76)]  # not 125: 62.5 floats


def test_units_and_tables_are_planned_apart() -> None:
    spans = [
        Span(2, Table.INPUT, 1, 1),
        Span(1, Table.INPUT, 2, 1),
        Span(1, Table.HOLDING, 1, 1),
        Span(1, Table.COIL, 1, 1),
    ]
    plan = plan_reads(spans)
    assert [(r.unit_id, r.table) for r in plan] == [
        (1, Table.COIL),
        (1, Table.HOLDING),
        (1, Table.INPUT),
        (2, Table.INPUT),
    ]


def test_tags_sharing_a_register_share_the_request() -> None:
    spans = [
        Span(1, Table.HOLDING, 7, 1),
        Span(1, Table.HOLDING, 7, 1),
        Span(1, Table.HOLDING, 8, 2),
    ]
    assert [(r.start, r.count, r.members) for r in plan_reads(spans)] == [(7, 3, (0, 1, 2))]
    singles = requests_per_tag(spans)
    assert [(r.start, r.count, r.members) for r in singles] == [(7, 1, (0, 1)), (8, 2, (2,))]


def test_oversized_and_empty_spans_are_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.125"):
        plan_reads([Span(1, Table.HOLDING, 0, 126)])
    with pytest.raises(ValueError, match=r"1\.\.2000"):
        plan_reads([Span(1, Table.COIL, 0, 0)])
    assert plan_reads([]) == []


# -- the scan policy ---------------------------------------------------------------------------


def test_exception_codes_map_to_statuses() -> None:
    assert exception_status(0x04) == BAD_DEVICE_FAILURE
    assert exception_status(0x02) == BAD
    assert exception_status(0x0B) == exception_status(0x0A) == BAD_NO_COMMUNICATION
    assert is_gateway_miss(0x0B) and not is_gateway_miss(0x04)
    assert re_read_per_tag(0x02) and re_read_per_tag(0x04) and not re_read_per_tag(0x06)
    assert split_for_session(0x02) and not split_for_session(0x04)
    assert exception_name(2) == "0x02 (illegal data address)"
    assert exception_name(0x42) == "0x42 (unknown exception code)"


def test_a_unit_gets_its_retries_then_goes_down_and_backs_off() -> None:
    health = UnitHealth(retries=1, backoff=Backoff(initial_s=1.0, max_s=8.0, jitter=0.0))
    assert health.due(0.0)
    assert health.missed(0.0, 0.5).kind is MissKind.RETRY  # a gap, no backoff yet
    assert health.due(0.0)
    down = health.missed(1.0, 0.5)
    assert (down.kind, down.retry_in_s) == (MissKind.WENT_DOWN, 1.0)
    assert not health.due(1.9) and health.due(2.0)
    assert health.missed(2.0, 0.5) == health.missed(2.0, 0.5).__class__(MissKind.STILL_DOWN, 3, 2.0)
    assert health.retry_at == 2.0 + 4.0  # the next step doubled again (attempt 2)
    for _ in range(50):
        health.missed(10.0, 0.5)
    assert health.retry_at == 18.0  # saturates at max_s, never gives up
    assert health.answered() == 54 and health.due(10.0) and not health.down
    assert health.answered() == 0


def test_without_retries_the_first_miss_marks_bad() -> None:
    health = UnitHealth(retries=0, backoff=Backoff(jitter=0.0))
    assert health.missed(5.0, 0.0).kind is MissKind.WENT_DOWN


@pytest.mark.parametrize(
    ("deadline", "now", "expected"),
    [
        (10.0, 10.2, (11.0, 0)),  # on time
        (10.0, 11.0, (11.0, 0)),  # exactly at the next one
        (10.0, 11.3, (12.0, 1)),  # 11.0 missed: skipped, stay on the grid
        (10.0, 13.5, (14.0, 3)),
    ],
)
def test_scan_deadlines_stay_on_the_grid(
    deadline: float, now: float, expected: tuple[float, int]
) -> None:
    assert next_deadline(deadline, 1.0, now) == expected


@given(start=st.floats(0, 1e6), interval=st.floats(0.01, 100), late=st.floats(0, 1e4))
def test_scan_deadlines_never_drift(start: float, interval: float, late: float) -> None:
    now = start + late
    deadline, skipped = next_deadline(start, interval, now)
    assert deadline >= now
    assert math.isclose(deadline, start + (skipped + 1) * interval, rel_tol=1e-9)
    assert deadline - interval < now + 1e-9 * max(1.0, now) or skipped == 0


def test_bad_is_emitted_once_good_every_time() -> None:
    memory = StatusMemory()
    assert memory.worth_emitting("a", GOOD) and memory.worth_emitting("a", GOOD)
    assert memory.worth_emitting("a", BAD_NO_COMMUNICATION)
    assert not memory.worth_emitting("a", BAD_NO_COMMUNICATION)
    assert memory.worth_emitting("a", BAD_DEVICE_FAILURE)  # a different Bad is news
    assert memory.worth_emitting("a", GOOD)
    assert memory.worth_emitting("a", BAD_NO_COMMUNICATION)
    assert memory.last("a") == BAD_NO_COMMUNICATION and memory.last("b") is None
