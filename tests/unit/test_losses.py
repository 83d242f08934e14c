"""The announcement of lost data (agent.buffer.losses), the seq re-stamp (agent.buffer.blocks) and
the disk's room (agent.buffer.retention): pure functions, property-tested where it pays."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.buffer.blocks import (
    Catalog,
    CatalogEntry,
    decode_telemetry,
    encode_telemetry,
    read_header,
    restamp,
)
from agent.buffer.losses import DROPPED, EVICTED, Losses, Victim, merge_ranges, seq_ranges
from agent.buffer.retention import (
    DISK_HEADROOM_MIN,
    SLACK_PAGES,
    disk_cap_bytes,
    disk_headroom_bytes,
)
from agent.domain.samples import Sample

EPOCH = "0123456789abcdef0123456789abcdef"
PAGE = 4096


def expand(ranges: list[list[int]]) -> list[int]:
    return [s for first, last in ranges for s in range(first, last + 1)]


@given(st.sets(st.integers(1, 300)))
def test_seq_ranges_cover_exactly_the_seqs_sorted_and_merged(seqs: set[int]) -> None:
    ranges = seq_ranges(seqs)
    assert expand(ranges) == sorted(seqs)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))


@given(st.sets(st.integers(1, 300)), st.sets(st.integers(1, 300)))
def test_merge_ranges_is_the_union(a: set[int], b: set[int]) -> None:
    assert expand(merge_ranges(seq_ranges(a), seq_ranges(b))) == sorted(a | b)


def victim(seq: int, kind: int = 1, count: int = 10) -> Victim:
    return Victim(seq, kind, count, 100, False, 1000.0 + seq)


def test_losses_announce_every_seq_once_with_counts_by_reason() -> None:
    losses = Losses()
    assert not losses and losses.events(5.0) == []
    losses.evicted("telemetry", [victim(3), victim(4)])
    later = Losses()
    later.evicted("telemetry", [victim(5), victim(9)])
    later.evicted("events", [victim(7, kind=2, count=2)])
    later.dropped("disk_full", 1, 250, 9000, 2000.0)
    copy = losses.copy()
    losses.absorb(later)
    assert copy.events(5.0)[0]["seqs"] == [[3, 4]]  # the copy did not move
    evicted, events_, dropped = losses.events(5.0)
    assert (evicted["kind"], evicted["reason"]) == (EVICTED, "events")  # sorted by reason
    assert events_["seqs"] == [[3, 5], [9, 9]] and events_["blocks"] == 4
    assert events_["samples"] == 40 and events_["created_first"] == 1003.0
    assert evicted["events"] == 2 and evicted["samples"] == 0
    assert (dropped["kind"], dropped["reason"], dropped["samples"]) == (DROPPED, "disk_full", 250)
    assert "seqs" not in dropped  # a dropped block never had a seq


@given(st.integers(0, 2**64 - 1))
def test_restamp_changes_the_seq_and_nothing_the_decoder_reads_else(seq: int) -> None:
    catalog = Catalog((CatalogEntry("t", "", "plc"),))
    rng = random.Random(seq % 1000)
    samples = [Sample("t", 1.0 + i, rng.random()) for i in range(20)]
    block = encode_telemetry(epoch=EPOCH, seq=7, created=1.0, samples=samples, catalog=catalog)
    stamped = restamp(block, seq)
    assert read_header(stamped).seq == seq  # the CRC was recomputed: it reads as intact
    assert decode_telemetry(stamped, catalog) == decode_telemetry(block, catalog)
    assert stamped[18:] == block[18:]  # only the seq (10..17) and the CRC (6..9) differ
    assert restamp(block, 7) is block


def test_the_disk_lets_the_file_grow_only_into_room_left_after_wal_and_headroom() -> None:
    fs = 100 * 2**20
    head = disk_headroom_bytes(fs)
    assert head == 2 * 2**20 and disk_headroom_bytes(10**6) == DISK_HEADROOM_MIN
    roomy = disk_cap_bytes(logical_db=10 * PAGE, db_file=10 * PAGE, wal_file=0, free=50 * 2**20,
                           wal_peak=2**20, fs_bytes=fs, page_size=PAGE)  # fmt: skip
    assert roomy == 10 * PAGE - SLACK_PAGES * PAGE + 50 * 2**20 - 2**20 - head
    # a disk filled by others: no growth at all, only the file's own pages less a slack
    full = disk_cap_bytes(logical_db=10 * PAGE, db_file=10 * PAGE, wal_file=PAGE, free=0,
                          wal_peak=2**20, fs_bytes=fs, page_size=PAGE)  # fmt: skip
    assert full == (10 - SLACK_PAGES) * PAGE
    # growth still waiting in the WAL is set aside before any new growth
    pending = disk_cap_bytes(logical_db=20 * PAGE, db_file=10 * PAGE, wal_file=2**20,
                             free=head + 10 * PAGE, wal_peak=2**20, fs_bytes=fs,
                             page_size=PAGE)  # fmt: skip
    assert pending == (20 - SLACK_PAGES) * PAGE


def test_carrying_skips_malformed_announcement_events_and_keeps_the_good_ones() -> None:
    good = Losses()
    good.evicted("telemetry", [victim(3), victim(4)])
    good.dropped("disk_full", 1, 250, 9000, 2000.0)
    malformed: list[dict[str, Any]] = [
        {"kind": EVICTED, "reason": "telemetry", "seqs": [[8, 9]]},  # no blocks, samples...
        {"kind": DROPPED, "reason": "disk_full", "blocks": 1, "samples": 5},  # no created_*
        {
            "kind": EVICTED,
            "reason": "telemetry",
            "seqs": [[8]],
            "blocks": 1,
            "samples": 1,
            "created_first": 1.0,
            "created_last": 1.0,
        },  # a range without its end
        {
            "kind": DROPPED,
            "reason": "x",
            "blocks": "many",
            "samples": 1,
            "created_first": 1.0,
            "created_last": 1.0,
        },
    ]
    carried = Losses()
    assert carried.carry([*malformed[:2], *good.events(5.0), *malformed[2:]]) == 4
    assert carried.events(6.0) == good.events(6.0)
