"""One Modbus session's scan: the requests of every unit, their fallbacks, and the samples.

Owns: running one scan over a connection (unit by unit, skipping units that are backed off),
turning each outcome into samples with drivers.modbus_scan's policy, the fallback when a
device refuses a planned request (re-read without gaps, then tag by tag), the per-unit
health and failed-request memory of the session (refused or garbled: WARNING once a
reason, INFO on recovery), and the unit-level logs.
Must not: talk to pymodbus except through drivers.modbus_link, sleep, decide scan timing or
emission (drivers.modbus does), or catch `Exception`.

A garbled answer (one that cannot answer the request: see drivers.modbus_link) marks the
tags of that request Bad_CommunicationError, like a refusal without the fallback: the unit
did answer, so it is not a miss, and the request is asked again next scan.

Fallback order for a refused request holding several tags (codes 0x02, 0x03, 0x04):
1. the same tags planned with no gap at all (the device's map may have holes between the
   blocks the planner bridged), 2. then one request per tag. After 0x02/0x03 the fallback
   requests replace the planned one for the rest of the session; after 0x04 (a transient
   device failure) the planned request is tried again next scan.

Invariants: a unit that misses stops being asked for the rest of the scan; a tag gets one
sample per scan at most, except when its unit goes down mid-scan: then every tag of the
unit gets Bad_NoCommunication, after any Good read earlier in that scan (the unit will not
be asked again until its backoff ends, so no tag of it may look fresh); samples carry the
time their response arrived; Bad samples carry no value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.config.addresses import Table
from agent.domain.backoff import Backoff
from agent.domain.clock import Clock
from agent.domain.logger import get_logger
from agent.domain.samples import BAD, BAD_COMMUNICATION_ERROR, BAD_NO_COMMUNICATION, Sample
from drivers.modbus_codec import TagCodec
from drivers.modbus_link import Garbled, Link, Refused
from drivers.modbus_plan import Limits, PlannedRead, Span, plan_reads, requests_per_tag
from drivers.modbus_scan import (
    DriverCounters,
    MissKind,
    UnitHealth,
    exception_name,
    exception_status,
    is_gateway_miss,
    re_read_per_tag,
    split_for_session,
)

__all__ = ["Point", "Scanner"]

_log = get_logger("drivers.modbus")
_NO_GAPS = Limits(max_gap_registers=0, max_gap_bits=0)


@dataclass(frozen=True, slots=True)
class Point:
    """One configured tag, resolved: where it lives and how it is coded."""

    name: str
    span: Span
    codec: TagCodec
    bit: int | None
    writable: bool
    write_min: float | None
    write_max: float | None


class _Unit:
    """One unit's reads and health for one session."""

    __slots__ = ("health", "points", "reads", "unit_id")

    def __init__(self, unit_id: int, health: UnitHealth) -> None:
        self.unit_id, self.health = unit_id, health
        self.reads: list[PlannedRead] = []
        self.points: list[int] = []


class Scanner:
    """The scan of one session (one connection); build a new one per session."""

    def __init__(
        self,
        *,
        source: str,
        link: Link,
        points: Sequence[Point],
        plan: Sequence[PlannedRead],
        retries: int,
        backoff: Backoff,
        clock: Clock,
        rand: Callable[[], float],
        counters: DriverCounters,
    ) -> None:
        self._source, self._link, self._points = source, link, points
        self._clock, self._rand, self._counters = clock, rand, counters
        units: dict[int, _Unit] = {}
        for read in plan:
            unit = units.get(read.unit_id)
            if unit is None:
                unit = units[read.unit_id] = _Unit(read.unit_id, UnitHealth(retries, backoff))
            unit.reads.append(read)
            unit.points += read.members
        self._units = list(units.values())
        self._failing: dict[tuple[int, Table, int, int], str] = {}  # request -> why

    async def scan(self, out: list[Sample]) -> None:
        """Ask every unit that is due; append the samples to `out` as they arrive."""
        for unit in self._units:
            if not unit.health.due(self._clock.monotonic()):
                continue
            for read in list(unit.reads):  # a fallback may replace reads while iterating
                if not await self._read(unit, read, out):
                    break  # the unit missed: its other requests wait for the next scan

    async def _read(self, unit: _Unit, read: PlannedRead, out: list[Sample]) -> bool:
        """One request and its samples; False when the unit did not answer."""
        counters = self._counters.unit(unit.unit_id)
        counters.requests += 1
        result = await self._link.read(unit.unit_id, read.table, read.start, read.count)
        arrived = self._clock.now()
        if result is None or (isinstance(result, Refused) and is_gateway_miss(result.code)):
            if result is None:
                counters.timeouts += 1
            else:
                counters.exceptions += 1
            self._missed(unit, "timeout" if result is None else exception_name(result.code), out)
            return False
        self._answered(unit)
        if isinstance(result, Garbled):
            counters.garbled += 1
            self._failed(read, "garbled", BAD_COMMUNICATION_ERROR, out, arrived,
                         event="modbus_answer_garbled", detail=result.detail)  # fmt: skip
            return True
        if isinstance(result, Refused):
            counters.exceptions += 1
            return await self._refused_read(unit, read, result.code, out, arrived)
        self._read_recovered(read)
        for index in read.members:
            point = self._points[index]
            value = point.codec.decode(result, point.span.start - read.start)
            if isinstance(value, float) and not math.isfinite(value):
                out.append(Sample(point.name, arrived, None, BAD))
            else:
                out.append(Sample(point.name, arrived, value))
        return True

    def _fallback(self, read: PlannedRead) -> list[PlannedRead]:
        """Smaller requests for the tags of `read`: without gaps, else one per tag ([] if none)."""
        spans = [self._points[i].span for i in read.members]
        for smaller in (plan_reads(spans, _NO_GAPS), requests_per_tag(spans)):
            if len(smaller) > 1:
                return [
                    PlannedRead(
                        s.unit_id,
                        s.table,
                        s.start,
                        s.count,
                        tuple(read.members[i] for i in s.members),
                    )
                    for s in smaller
                ]
        return []

    async def _refused_read(
        self, unit: _Unit, read: PlannedRead, code: int, out: list[Sample], arrived: float
    ) -> bool:
        smaller = self._fallback(read) if re_read_per_tag(code) else []
        if not smaller:
            name = exception_name(code)
            self._failed(read, name, exception_status(code), out, arrived,
                         event="modbus_read_refused", code=name)  # fmt: skip
            return True
        if split_for_session(code) and read in unit.reads:
            at = unit.reads.index(read)
            unit.reads[at : at + 1] = smaller
            _log.info(
                "modbus_read_split",
                source=self._source,
                unit=unit.unit_id,
                address=f"{read.table}:{read.start}",
                count=read.count,
                code=exception_name(code),
                requests=len(smaller),
            )
        for request in smaller:
            if not await self._read(unit, request, out):
                return False
        return True

    def _failed(
        self,
        read: PlannedRead,
        why: str,
        status: int,
        out: list[Sample],
        arrived: float,
        *,
        event: str,
        **fields: str,
    ) -> None:
        """Mark the tags of a request that failed; WARNING the first time for this reason."""
        key = (read.unit_id, read.table, read.start, read.count)
        first = self._failing.get(key) != why
        self._failing[key] = why
        (_log.warning if first else _log.debug)(
            event,
            source=self._source,
            unit=read.unit_id,
            address=f"{read.table}:{read.start}",
            count=read.count,
            tags=[self._points[i].name for i in read.members],
            **fields,
        )
        out += [Sample(self._points[i].name, arrived, None, status) for i in read.members]

    def _read_recovered(self, read: PlannedRead) -> None:
        if not self._failing:
            return
        inside = [
            key
            for key in self._failing
            if key[0] == read.unit_id
            and key[1] is read.table
            and read.start <= key[2]
            and key[2] + key[3] <= read.start + read.count
        ]
        for key in inside:
            del self._failing[key]
        if inside:
            _log.info(
                "modbus_read_recovered",
                source=self._source,
                unit=read.unit_id,
                address=f"{read.table}:{read.start}",
                count=read.count,
            )

    def _missed(self, unit: _Unit, reason: str, out: list[Sample]) -> None:
        miss = unit.health.missed(self._clock.monotonic(), self._rand())
        went_down = miss.kind is MissKind.WENT_DOWN
        (_log.warning if miss.misses == 1 or went_down else _log.debug)(
            "modbus_unit_not_answered",
            source=self._source,
            unit=unit.unit_id,
            reason=reason,
            misses=miss.misses,
            marked_bad=miss.kind is not MissKind.RETRY,
            retry_in_s=None if miss.retry_in_s is None else round(miss.retry_in_s, 3),
        )
        if went_down:
            now = self._clock.now()
            out += [
                Sample(self._points[i].name, now, None, BAD_NO_COMMUNICATION) for i in unit.points
            ]

    def _answered(self, unit: _Unit) -> None:
        if unit.health.misses:
            was_down = unit.health.down
            missed = unit.health.answered()
            _log.info(
                "modbus_unit_recovered",
                source=self._source,
                unit=unit.unit_id,
                after_misses=missed,
                was_bad=was_down,
            )
