"""What the stream tells a receiver about data the buffer could not keep.

Owns: the events of the buffer's announcement block (an EVENTS block, uploaded like any
other) by which a receiver tells data that is lost from data that is late:
``buffer_blocks_evicted`` names every seq removed before it was sent, as ``[first, last]``
ranges, one event per reason; ``buffer_samples_dropped`` counts blocks that could not be
stored at all (they never got a seq, so no seq is missing for them) with the span of their
creation times. ``Losses`` is the running content of one announcement: the store rewrites its
one unsent announcement as losses accumulate, so an outage adds one block, not one per put.
Must not: do I/O, read a clock (times are arguments) or know SQL.
Invariants: ``merge_ranges`` returns sorted, disjoint, non-adjacent inclusive ranges covering
exactly the union of its inputs; ``Losses.events`` covers exactly what was added (each
evicted seq once), and a copy is independent of its original; ``carry`` never raises for a
malformed event (it skips it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.buffer.blocks import BlockKind

__all__ = [
    "ANNOUNCEMENTS",
    "DROPPED",
    "EVICTED",
    "Losses",
    "Victim",
    "merge_ranges",
    "seq_ranges",
]

EVICTED = "buffer_blocks_evicted"
DROPPED = "buffer_samples_dropped"
ANNOUNCEMENTS = frozenset({EVICTED, DROPPED})


@dataclass(frozen=True)
class Victim:
    """A block removed unsent: its seq, kind, count (samples, events or tags), size in
    bytes, whether it was quarantined, and when it was created (unix s)."""

    seq: int
    kind: int
    count: int
    size: int
    quarantined: bool
    created: float


def merge_ranges(*parts: Iterable[Sequence[int]]) -> list[list[int]]:
    """The union of inclusive ``[first, last]`` ranges, sorted and merged."""
    out: list[list[int]] = []
    for first, last in sorted((int(r[0]), int(r[1])) for part in parts for r in part):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted inclusive ``[first, last]`` ranges covering exactly ``seqs``."""
    return merge_ranges([(seq, seq) for seq in seqs])


@dataclass
class _Tally:
    ranges: list[list[int]] = field(default_factory=list)
    blocks: int = 0
    samples: int = 0
    events: int = 0
    bytes: int = 0
    created_first: float = float("inf")
    created_last: float = float("-inf")

    def add(self, kind: int, count: int, size: int, created: float) -> None:
        self.blocks += 1
        self.samples += count if kind == BlockKind.TELEMETRY else 0
        self.events += count if kind == BlockKind.EVENTS else 0
        self.bytes += size
        self.created_first = min(self.created_first, created)
        self.created_last = max(self.created_last, created)

    def absorb(self, other: _Tally) -> None:
        self.ranges = merge_ranges(self.ranges, other.ranges)
        self.blocks += other.blocks
        self.samples += other.samples
        self.events += other.events
        self.bytes += other.bytes
        self.created_first = min(self.created_first, other.created_first)
        self.created_last = max(self.created_last, other.created_last)

    def fields(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "samples": self.samples,
            "events": self.events,
            "created_first": self.created_first,
            "created_last": self.created_last,
        }


class Losses:
    """Evicted seqs and dropped blocks, by reason, not yet in a sent announcement."""

    def __init__(self) -> None:
        self._evicted: dict[str, _Tally] = {}
        self._dropped: dict[str, _Tally] = {}

    def __bool__(self) -> bool:
        return bool(self._evicted or self._dropped)

    def copy(self) -> Losses:
        return copy.deepcopy(self)

    def earliest(self) -> float | None:
        """The earliest creation time of what was lost (None when nothing was)."""
        times = [t.created_first for t in (*self._evicted.values(), *self._dropped.values())]
        return min(times, default=None)

    def evicted(self, reason: str, victims: Iterable[Victim]) -> None:
        """These blocks were removed unsent (``reason``: why)."""
        tally = self._evicted.setdefault(reason, _Tally())
        seqs = []
        for v in victims:
            tally.add(v.kind, v.count, v.size, v.created)
            seqs.append(v.seq)
        tally.ranges = merge_ranges(tally.ranges, seq_ranges(seqs))

    def dropped(self, reason: str, kind: int, count: int, size: int, created: float) -> None:
        """A block could not be stored (it has no seq)."""
        self._dropped.setdefault(reason, _Tally()).add(kind, count, size, created)

    def carry(self, events: Iterable[dict[str, Any]]) -> int:
        """Add what earlier announcement events said (their block is being evicted); an
        event without the fields an announcement has (one some other writer put in an
        EVENTS block under the same kind) is skipped: the number skipped."""
        skipped = 0
        for e in events:
            evicted = e.get("kind") == EVICTED
            try:
                ranges = [[int(r[0]), int(r[1])] for r in e.get("seqs", [])] if evicted else []
                tally = _Tally(ranges, int(e["blocks"]), int(e["samples"]),
                               int(e.get("events", 0)), int(e.get("bytes", 0)),
                               float(e["created_first"]), float(e["created_last"]))  # fmt: skip
                reason = str(e["reason"])
            except (KeyError, IndexError, TypeError, ValueError):
                skipped += 1
                continue
            table = self._evicted if evicted else self._dropped
            table.setdefault(reason, _Tally()).absorb(tally)
        return skipped

    def absorb(self, other: Losses) -> None:
        """Add everything ``other`` holds."""
        for mine, theirs in ((self._evicted, other._evicted), (self._dropped, other._dropped)):
            for reason, tally in theirs.items():
                mine.setdefault(reason, _Tally()).absorb(tally)

    def events(self, now: float) -> list[dict[str, Any]]:
        """The announcement's events: evictions first, then drops, each sorted by reason."""
        out = [
            {"kind": EVICTED, "time": now, "reason": reason, "seqs": t.ranges, **t.fields(),
             "bytes": t.bytes}
            for reason, t in sorted(self._evicted.items())
        ]  # fmt: skip
        out += [
            {"kind": DROPPED, "time": now, "reason": reason, **t.fields()}
            for reason, t in sorted(self._dropped.items())
        ]
        return out
