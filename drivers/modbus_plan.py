"""The Modbus read planner: which requests read a set of tags with the fewest round trips.

Owns: turning the spans tags occupy (unit id, table, first address, registers or bits) into
read requests, per unit and table, under the protocol's size limits (125 registers, 2000
bits a request) and the configured maximum gap.
Must not: import pymodbus, know about tag types, values or time, or do I/O (pure: the
driver plans once per session, the tests compare it with a brute-force search).

The gap rule: a register (or bit) counts as *asked for* when any span of the same unit and
table covers it, even one read by another request. A request may contain runs of registers
nobody asked for of at most `max_gap` each (they are read and thrown away); a longer run
never sits inside a request. Reading what some other tag occupies is never a gap: that
address exists on the device, so reading it is free and safe.

The algorithm (greedy, optimal): the asked-for addresses are cut into *zones* at every run
of more than `max_gap` unasked addresses. Take the not-yet-planned span with the smallest
start `s`; the request starts at `s` and takes every unplanned span of the same zone that
ends by `s + limit - 1`; its end is the largest end it took. Why that is optimal: any
request containing that span starts at or before `s`, lies in one zone and ends by
`s + limit - 1`, so the unplanned spans it can hold (all start at or after `s`) are a subset
of what the greedy request holds; swapping it for the greedy one never costs a request.

Invariants (property-tested against a brute force): every span is a member of exactly one
request and lies wholly inside it (a value spanning N registers is never split); no request
exceeds the limit; every unasked run inside a request is at most `max_gap` long; the number
of requests per unit and table is the minimum possible; output order is unit id, table
(coil, discrete input, holding, input), start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.config.addresses import MAX_READ_BITS, MAX_READ_REGISTERS, Table

__all__ = ["Limits", "PlannedRead", "Span", "plan_reads", "requests_per_tag"]

_TABLE_ORDER = {Table.COIL: 0, Table.DISCRETE_INPUT: 1, Table.HOLDING: 2, Table.INPUT: 3}


@dataclass(frozen=True, slots=True)
class Span:
    """What one tag occupies: `count` registers (or bits) from `start` in one unit's table."""

    unit_id: int
    table: Table
    start: int
    count: int

    @property
    def end(self) -> int:
        """The last address the span occupies."""
        return self.start + self.count - 1


@dataclass(frozen=True, slots=True)
class PlannedRead:
    """One read request and the spans (by index into the planner's input) it answers."""

    unit_id: int
    table: Table
    start: int
    count: int
    members: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.start + self.count - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of one request and the longest unasked run it may contain."""

    max_registers: int = MAX_READ_REGISTERS
    max_bits: int = MAX_READ_BITS
    max_gap_registers: int = 8
    max_gap_bits: int = 64

    def __post_init__(self) -> None:
        if self.max_registers < 1 or self.max_bits < 1:
            raise ValueError("expected request limits of at least 1")
        if self.max_gap_registers < 0 or self.max_gap_bits < 0:
            raise ValueError("expected gaps of at least 0")

    def size(self, table: Table) -> int:
        return self.max_bits if table.is_bit else self.max_registers

    def gap(self, table: Table) -> int:
        return self.max_gap_bits if table.is_bit else self.max_gap_registers


def plan_reads(spans: Sequence[Span], limits: Limits | None = None) -> list[PlannedRead]:
    """The fewest requests that read every span (see the module docstring for the rules).

    Raises ValueError if a span is empty or larger than one request may be.
    """
    limits = limits if limits is not None else Limits()
    groups: dict[tuple[int, Table], list[int]] = {}
    for index, span in enumerate(spans):
        if span.count < 1 or span.count > limits.size(span.table):
            raise ValueError(
                f"expected a span of 1..{limits.size(span.table)} addresses, found "
                f"{span.count} at {span.table}:{span.start} (unit {span.unit_id})"
            )
        groups.setdefault((span.unit_id, span.table), []).append(index)
    plan: list[PlannedRead] = []
    for (unit_id, table), members in sorted(
        groups.items(), key=lambda item: (item[0][0], _TABLE_ORDER[item[0][1]])
    ):
        plan += _plan_group(unit_id, table, spans, members, limits)
    return plan


def _zone_ends(spans: Sequence[Span], order: list[int], max_gap: int) -> list[int]:
    """For each span (in `order`), the last asked-for address of the zone it lies in."""
    zone_of: list[int] = []
    zones: list[int] = []  # zone index -> its last address
    covered_to = -1
    for index in order:
        span = spans[index]
        if not zones or span.start - covered_to - 1 > max_gap:
            zones.append(span.end)
        zones[-1] = max(zones[-1], span.end)
        covered_to = max(covered_to, span.end)
        zone_of.append(len(zones) - 1)
    return [zones[zone] for zone in zone_of]


def _plan_group(
    unit_id: int, table: Table, spans: Sequence[Span], members: list[int], limits: Limits
) -> list[PlannedRead]:
    order = sorted(members, key=lambda i: (spans[i].start, spans[i].end, i))
    zone_end = _zone_ends(spans, order, limits.gap(table))
    size = limits.size(table)
    planned = [False] * len(order)
    plan: list[PlannedRead] = []
    for first in range(len(order)):
        if planned[first]:
            continue
        start = spans[order[first]].start
        window_end = min(start + size - 1, zone_end[first])
        taken: list[int] = []
        end = start
        for k in range(first, len(order)):
            span = spans[order[k]]
            if span.start > window_end:
                break
            if not planned[k] and span.end <= window_end:
                planned[k] = True
                taken.append(order[k])
                end = max(end, span.end)
        plan.append(PlannedRead(unit_id, table, start, end - start + 1, tuple(taken)))
    return plan


def requests_per_tag(spans: Sequence[Span]) -> list[PlannedRead]:
    """One request per distinct span (tags sharing a span share a request).

    The fallback when a device refuses a planned request with an address error: reading
    each tag on its own isolates the address it does not have. Same output order as
    `plan_reads`.
    """
    by_span: dict[Span, list[int]] = {}
    for index, span in enumerate(spans):
        by_span.setdefault(span, []).append(index)
    ordered = sorted(by_span.items(), key=lambda item: (
        item[0].unit_id, _TABLE_ORDER[item[0].table], item[0].start, item[0].count))  # fmt: skip
    return [
        PlannedRead(span.unit_id, span.table, span.start, span.count, tuple(indexes))
        for span, indexes in ordered
    ]
