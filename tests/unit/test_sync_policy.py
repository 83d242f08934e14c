"""The uploader's decisions: response classification, Retry-After, ordering, bandwidth, streaks."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.buffer.blocks import BlockKind
from agent.sync.policy import (
    Drain,
    Streak,
    TokenBucket,
    Verdict,
    classify,
    eta_s,
    in_flight_limit,
    is_backlog,
    live_window_s,
    parse_retry_after,
    pick_next,
    quarantine_alert,
)

NOW = 1_700_000_000.0


# -- classification -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_an_ack(status: int) -> None:
    assert classify(status, None, NOW).verdict is Verdict.ACK


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retried(status: int) -> None:
    assert classify(status, None, NOW).verdict is Verdict.RETRY


@pytest.mark.parametrize("status", [401, 403, 404, 407])
def test_refusals_of_the_agent_are_retried_not_quarantined(status: int) -> None:
    outcome = classify(status, None, NOW)
    assert outcome.verdict is Verdict.RETRY
    assert "check" in outcome.reason  # tells plant IT what to look at


@pytest.mark.parametrize("status", [400, 405, 409, 410, 411, 413, 415, 422, 499])
def test_other_4xx_quarantine_the_block(status: int) -> None:
    assert classify(status, None, NOW).verdict is Verdict.QUARANTINE


@pytest.mark.parametrize("status", [100, 301, 302, 307, 308, 600, 999])
def test_odd_statuses_are_retried(status: int) -> None:
    assert classify(status, None, NOW).verdict is Verdict.RETRY


@given(st.integers(min_value=100, max_value=599))
def test_only_2xx_acks_and_only_4xx_quarantines(status: int) -> None:
    verdict = classify(status, None, NOW).verdict
    assert (verdict is Verdict.ACK) == (200 <= status < 300)
    if verdict is Verdict.QUARANTINE:
        assert 400 <= status < 500


def test_retry_after_seconds_is_passed_on() -> None:
    assert classify(429, "7", NOW).retry_after_s == 7.0
    assert classify(503, " 120 ", NOW).retry_after_s == 120.0
    assert classify(500, None, NOW).retry_after_s is None


def test_retry_after_http_date() -> None:
    future = email.utils.formatdate(NOW + 90, usegmt=True)
    past = email.utils.formatdate(NOW - 90, usegmt=True)
    assert parse_retry_after(future, NOW) == pytest.approx(90.0)
    assert parse_retry_after(past, NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024 00:00:00 GMT"])
def test_unusable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_is_never_negative(value: str) -> None:
    hint = parse_retry_after(value, NOW)
    assert hint is None or hint >= 0


def test_quarantine_alert_carries_the_facts() -> None:
    alert = quarantine_alert(seq=7, status=400, reason="HTTP 400", detail="x" * 900, now=NOW)
    assert alert["kind"] == "sync_block_quarantined"
    assert (alert["seq"], alert["status"], alert["time"]) == (7, 400, NOW)
    assert len(alert["detail"]) == 500


# -- scheduling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Blk:
    seq: int
    kind: BlockKind
    created: float


WINDOW = live_window_s(1.0)


def test_catalog_then_live_then_backlog_oldest_first() -> None:
    old1 = Blk(1, BlockKind.TELEMETRY, NOW - 3600)
    old2 = Blk(2, BlockKind.TELEMETRY, NOW - 3599)
    live1 = Blk(900, BlockKind.TELEMETRY, NOW - 2)
    live2 = Blk(901, BlockKind.EVENTS, NOW - 1)
    catalog = Blk(950, BlockKind.CATALOG, NOW - 7200)
    pool = [live2, old2, live1, catalog, old1]
    order = []
    busy: set[int] = set()
    while (block := pick_next(pool, busy, NOW, WINDOW)) is not None:
        order.append(block.seq)
        busy.add(block.seq)
    assert order == [950, 900, 901, 1, 2]


def test_a_block_that_keeps_failing_goes_behind_the_others_of_its_class() -> None:
    poison = Blk(1, BlockKind.TELEMETRY, NOW - 3600)
    other = Blk(2, BlockKind.TELEMETRY, NOW - 3599)
    live = Blk(3, BlockKind.TELEMETRY, NOW)
    assert pick_next([poison, other], set(), NOW, WINDOW, {1: 3}) == other
    assert pick_next([poison, other], {2}, NOW, WINDOW, {1: 3}) == poison  # not dropped
    assert pick_next([poison, live], set(), NOW, WINDOW, {3: 5}) == live  # class first


def test_busy_blocks_are_never_picked() -> None:
    pool = [Blk(1, BlockKind.TELEMETRY, NOW), Blk(2, BlockKind.TELEMETRY, NOW - 9999)]
    assert pick_next(pool, {1, 2}, NOW, WINDOW) is None
    assert pick_next(pool, {1}, NOW, WINDOW) == pool[1]
    assert pick_next([], set(), NOW, WINDOW) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.sampled_from(list(BlockKind)), st.floats(NOW - 100, NOW)),
        max_size=20,
    ),
    st.sets(st.integers(0, 50)),
)
def test_pick_is_the_minimum_by_class_then_seq(
    raw: list[tuple[int, BlockKind, float]], busy: set[int]
) -> None:
    pool = [Blk(*r) for r in raw]
    picked = pick_next(pool, busy, NOW, WINDOW)
    free = [b for b in pool if b.seq not in busy]
    assert (picked is None) == (not free)
    if picked is not None:
        assert picked.seq not in busy

        def key(b: Blk) -> tuple[int, int]:
            cls = 0 if b.kind is BlockKind.CATALOG else (2 if is_backlog(b, NOW, WINDOW) else 1)
            return (cls, b.seq)

        assert key(picked) == min(key(b) for b in free)


def test_live_window_follows_the_flush_interval() -> None:
    assert live_window_s(1.0) == 10.0
    assert live_window_s(5.0) == 25.0


def test_one_probe_while_failing() -> None:
    assert in_flight_limit(4, 0) == 4
    assert in_flight_limit(4, 3) == 1
    assert in_flight_limit(0, 0) == 1


def test_eta() -> None:
    assert eta_s(100, 10.0) == 10.0
    assert eta_s(100, None) is None
    assert eta_s(100, 0.0) is None
    assert eta_s(-5, 10.0) == 0.0


# -- bandwidth ------------------------------------------------------------------------------


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket.start(0, NOW)
    assert bucket.unlimited
    assert bucket.wait_s(10**9, NOW) == 0.0
    assert bucket.took(10**9, NOW) == bucket


def test_bucket_waits_for_the_debt() -> None:
    bucket = TokenBucket.start(1000, 0.0)  # 1000 B/s, 1000 B burst
    assert bucket.wait_s(5000, 0.0) == 0.0  # a full bucket lets a large block overdraw
    bucket = bucket.took(5000, 0.0)  # tokens -4000
    assert bucket.wait_s(500, 0.0) == pytest.approx(4.5)
    assert bucket.wait_s(500, 4.5) == 0.0
    assert bucket.refilled(100.0).tokens == 1000  # never above capacity


def test_bucket_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket.start(-1, 0.0)


@given(
    st.floats(100, 1e6),
    st.lists(st.integers(1, 200_000), min_size=1, max_size=40),
)
def test_bytes_sent_stay_under_the_cap(rate: float, sizes: list[int]) -> None:
    bucket = TokenBucket.start(rate, 0.0)
    now, sent = 0.0, 0
    for size in sizes:
        now += bucket.wait_s(size, now)
        bucket = bucket.took(size, now)
        sent += size
        # everything sent by `now`, the last block included
        assert sent <= bucket.capacity + rate * now + max(sizes) + 1e-6 * sent


# -- streaks and drains ---------------------------------------------------------------------


def test_a_streak_counts_each_outage_once() -> None:
    start = Streak()
    first = start.failed(sent_in=0, kind="HTTP 503", delay_s=2.0, now=10.0)
    assert first is not None
    assert (first.failures, first.gate, first.since) == (1, 12.0, 10.0)
    assert first.is_news(start)
    # another request sent before that failure was counted: not one more failure
    assert first.failed(sent_in=0, kind="HTTP 503", delay_s=4.0, now=10.1) is None
    second = first.failed(sent_in=first.generation, kind="HTTP 503", delay_s=4.0, now=12.5)
    assert second is not None
    assert (second.failures, second.gate, second.since) == (2, 16.5, 10.0)
    assert not second.is_news(first)
    third = second.failed(sent_in=second.generation, kind="ConnectError", delay_s=1, now=17)
    assert third is not None and third.is_news(second)
    assert third.hold(third.gate + 30).gate == third.gate + 30
    assert third.hold(0).gate == third.gate
    # a request sent before the last failure succeeds: the gate (Retry-After) stands
    assert third.succeeded(sent_in=second.generation) == third
    healed = third.succeeded(sent_in=third.generation)
    assert healed.failures == 0 and healed.generation > third.generation
    assert healed.succeeded(sent_in=0) == healed


def test_drain_reports_start_progress_and_end() -> None:
    drain = Drain()
    drain, event = drain.picked(backlog=False, idle=True, now=0.0, every_s=30)
    assert event is None
    drain, event = drain.picked(backlog=True, idle=False, now=1.0, every_s=30)
    assert event == "sync_backlog_draining"
    drain = drain.acked_one().acked_one()
    drain, event = drain.picked(backlog=True, idle=False, now=2.0, every_s=30)
    assert event is None
    assert drain.blocks_per_s(3.0) == 1.0
    drain, event = drain.picked(backlog=True, idle=False, now=31.0, every_s=30)
    assert event == "sync_backlog_progress"
    drain, event = drain.picked(backlog=False, idle=True, now=40.0, every_s=30)
    assert event == "sync_backlog_drained"
    assert drain.acked == 2 and not drain.active
    assert drain.blocks_per_s(41.0) is None
