"""Retention: eviction choices, the cap's split, footprints and the outage-budget arithmetic."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.buffer.retention import (
    EVICTION_ORDER,
    FIXED_RESERVE_BYTES,
    Candidate,
    RateMeter,
    db_cap_bytes,
    footprint,
    hours_left,
    plan_eviction,
    wal_limit_bytes,
)


def test_eviction_order_is_quarantined_then_telemetry_then_catalogs_then_events() -> None:
    assert EVICTION_ORDER == ("quarantined", "telemetry", "catalog", "events")


candidates = st.lists(st.integers(1, 50_000), max_size=30).map(
    lambda sizes: [Candidate(seq, size) for seq, size in enumerate(sizes)]
)


@given(candidates, st.integers(0, 10**6), st.integers(0, 50_000), st.integers(0, 10**6))
def test_plan_is_the_shortest_prefix_that_makes_room(
    cands: list[Candidate], used: int, incoming: int, cap: int
) -> None:
    victims = plan_eviction(used, incoming, cap, cands)
    assert victims == cands[: len(victims)]  # oldest first, in the given order
    freed = sum(v.footprint for v in victims)
    if len(victims) < len(cands):
        assert used - freed + incoming <= cap  # enough...
    if victims:
        assert used - freed + victims[-1].footprint + incoming > cap  # ...and not one too many


def test_nothing_is_evicted_when_it_fits() -> None:
    assert plan_eviction(100, 50, 150, [Candidate(1, 10)]) == []
    assert plan_eviction(100, 51, 150, [Candidate(1, 10), Candidate(2, 10)]) == [Candidate(1, 10)]


@given(st.integers(0, 10**7), st.sampled_from([1024, 4096, 65536]))
def test_footprint_covers_the_block_and_grows_with_it(size: int, page: int) -> None:
    assert footprint(size, page) > size
    assert footprint(size + page, page) > footprint(size, page)


def test_a_large_block_costs_whole_overflow_pages() -> None:
    assert footprint(100, 4096) < 200
    assert footprint(40_000, 4096) % 4096 != 0  # the local part sits in a shared leaf page
    assert 40_000 < footprint(40_000, 4096) <= 40_000 + 2 * 4096


@given(st.integers(10**6, 10**12), st.sampled_from([1024, 4096, 65536]))
def test_the_cap_keeps_room_for_the_wal(max_bytes: int, page: int) -> None:
    wal = wal_limit_bytes(max_bytes, page)
    assert wal % page == 0 and wal >= 16 * page
    assert wal <= max(max_bytes // 16, 16 * page)
    # the WAL, the reserve file for a full disk (the WAL's share, at most 1 MiB), the fixed
    # reserve: together with the database's share, exactly the cap
    reserve = min(wal, 1024 * 1024)
    assert db_cap_bytes(max_bytes, page) == max(0, max_bytes - wal - reserve - FIXED_RESERVE_BYTES)


def test_a_large_cap_sets_aside_the_wal_once_and_the_reserve_file_as_it_is() -> None:
    """2 GB (the default): a 4 MiB WAL, a 1 MiB reserve file, 64 KiB: not the WAL twice."""
    mib = 1024 * 1024
    assert db_cap_bytes(2_000_000_000, 4096) == 2_000_000_000 - 4 * mib - 1 * mib - 64 * 1024


def test_hours_left() -> None:
    assert hours_left(1_000, 500.0) == 2.0
    assert hours_left(-5, 500.0) == 0.0
    assert hours_left(1_000, 0.0) is None


def test_rate_meter_measures_the_recent_rate() -> None:
    meter = RateMeter(width_s=10.0, buckets=6)  # a one-minute window
    assert meter.bytes_per_hour(0.0) == 0.0
    for second in range(120):
        meter.add(float(second), 100)  # 100 B/s
    assert meter.bytes_per_hour(119.5) == pytest.approx(360_000, rel=0.1)
    assert meter.bytes_per_hour(1000.0) == 0.0  # nothing recent


def test_rate_meter_extrapolates_from_the_first_second() -> None:
    meter = RateMeter()
    meter.add(5.0, 1000)
    assert meter.bytes_per_hour(5.0) == 3_600_000.0  # 1000 B over at least one second


def test_rate_meter_memory_is_flat() -> None:
    meter = RateMeter(width_s=1.0, buckets=10)
    meter.add(0.0, 1)
    before = sys.getsizeof(meter._ids) + sys.getsizeof(meter._bytes)
    for t in range(100_000):
        meter.add(float(t), 1)
    assert sys.getsizeof(meter._ids) + sys.getsizeof(meter._bytes) == before
    with pytest.raises(ValueError):
        RateMeter(width_s=0.0)
