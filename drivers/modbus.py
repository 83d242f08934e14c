"""The Modbus driver: scans one `[[sources]]` entry's tags and writes the writable ones.

Owns: one session per `run()` (connect; scan every `poll_interval_s` on a drift-free grid;
emit one batch a scan: Good samples every scan, a non-Good one only when the tag's status
changes; mark everything Bad_NoCommunication on the way out), resolving tags into points,
writes, the session-level logs, the counters, each tag's latest emitted status, and what the
driver reports about itself (`figures()`: per-unit error counters, statuses named by
agent.domain.samples, which lists every code this driver emits).
Must not: talk to pymodbus except through drivers.modbus_link, run the requests of a scan
(drivers.modbus_scanner), decode registers (drivers.modbus_codec), plan requests
(drivers.modbus_plan), retry a write, swallow a cancellation, or catch `Exception`.

Quality (design.md "Samples and quality"): an answer gives Good samples stamped with the time
the response arrived (`clock.now()`); a unit that does not answer gives, after `retries`
missed scans, Bad_NoCommunication once and then nothing until it answers again; an exception
response gives Bad / Bad_DeviceFailure on exactly the tags of the refused request, and a
garbled answer Bad_CommunicationError on the tags of its request (see drivers.modbus_scan);
a float that decodes to NaN or infinity gives Bad with no value.
Values are never invented: every Bad sample has `value=None`.

Invariants: at most one request in flight per connection (writes queue behind the scan's
current request, never interleave inside it); `run()` always ends by raising (it never
returns), after emitting Bad_NoCommunication for every tag that was not already so; a lost
connection raises `ConnectionLostError` for the supervisor; cancellation propagates.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from agent.config.addresses import MAX_ADDRESS, ModbusType, parse_modbus_address
from agent.config.settings import ModbusSource, Tag
from agent.domain.backoff import Backoff
from agent.domain.clock import Clock
from agent.domain.errors import ConnectionLostError, DeviceTimeoutError, WriteRejectedError
from agent.domain.logger import get_logger
from agent.domain.samples import (
    BAD_NO_COMMUNICATION,
    ERROR_COUNTERS,
    GOOD,
    DriverFigures,
    DriverState,
    Sample,
    SampleSink,
    TagHealth,
    TagStatuses,
    WriteResult,
    status_name,
    tag_problems,
)
from drivers.modbus_codec import TagCodec, WriteValueError
from drivers.modbus_link import Garbled, Link
from drivers.modbus_plan import Limits, PlannedRead, Span, plan_reads
from drivers.modbus_scan import DriverCounters, StatusMemory, exception_name, next_deadline
from drivers.modbus_scanner import Point, Scanner

__all__ = ["ModbusDriver"]

_log = get_logger(__name__)
_ON_TIME_AGAIN = 30
"""Consecutive on-time scans after an overrun before "modbus_scans_on_time" is logged."""


def resolve_tag(tag: Tag) -> Point:
    """Parse and check one tag (ValueError naming the tag when it cannot be read)."""
    try:
        where = parse_modbus_address(tag.address)
        kind = tag.type or (ModbusType.BOOL if where.table.is_bit else None)
        if kind is None:
            raise ValueError("expected a type for a register tag")
        if (where.table.is_bit or where.bit is not None) != (kind is ModbusType.BOOL):
            raise ValueError("expected type bool exactly for coils, discrete inputs and '.BIT'")
        codec = TagCodec(kind, tag.byte_order, where.bit, tag.length, tag.scale, tag.offset)
    except ValueError as exc:
        raise ValueError(f"tag {tag.name!r} ({tag.address!r}): {exc}") from exc
    span = Span(tag.unit_id, where.table, where.address, codec.count)
    if span.end > MAX_ADDRESS:
        raise ValueError(f"tag {tag.name!r}: {tag.address} + {codec.count} runs past {MAX_ADDRESS}")
    writable = tag.writable and where.table.writable
    return Point(tag.name, span, codec, where.bit, writable, tag.write_min, tag.write_max)


class ModbusDriver:
    """A `agent.domain.samples.Driver` for one Modbus source (TCP, RTU over TCP or RTU serial).

    `tags` may hold tags of other sources: only those with `tag.source == source.name` are
    used. `rand` (uniform in [0, 1)) jitters the per-unit backoff; tests may pin it.
    """

    def __init__(
        self,
        source: ModbusSource,
        tags: Sequence[Tag],
        *,
        clock: Clock,
        backoff: Backoff | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        self.name = source.name
        self._source = source
        self._clock = clock
        self._backoff = backoff if backoff is not None else Backoff()
        self._rand = rand if rand is not None else random.Random().random  # noqa: S311 (jitter)
        self._points = [resolve_tag(tag) for tag in tags if tag.source == source.name]
        self._by_name = {point.name: point for point in self._points}
        limits = Limits(
            max_gap_registers=source.max_gap_registers, max_gap_bits=source.max_gap_bits
        )
        self._plan = tuple(plan_reads([p.span for p in self._points], limits))
        self._state = DriverState.DISCONNECTED
        self._link: Link | None = None
        self._memory = StatusMemory()
        self._statuses = TagStatuses(point.name for point in self._points)
        self._counters = DriverCounters()
        self._on_time: int | None = None  # on-time scans since the last overrun
        self.samples_emitted = 0  # samples handed to `emit` (metrics)
        self.reconnects = 0  # successful connections after the first one (metrics)
        self._connected_before = False

    # -- the Driver protocol ---------------------------------------------------------------

    @property
    def state(self) -> DriverState:
        return self._state

    @property
    def plan(self) -> tuple[PlannedRead, ...]:
        """The read requests of one full scan (members index the source's tags in order)."""
        return self._plan

    def counters(self) -> DriverCounters:
        """A snapshot of the counters: requests, timeouts, exceptions per unit, scan time."""
        return self._counters.copy()

    def tag_health(self) -> TagHealth:
        """The tags by their latest emitted status (Bad and Uncertain ones named)."""
        return self._statuses.health()

    def figures(self) -> DriverFigures:
        """State, samples, reconnects, tags, the error counters of every unit, all counters.

        Status names come from agent.domain.samples: this driver emits only the codes
        listed there."""
        counters = self._counters.copy()
        details = dataclasses.asdict(counters)
        details["units"] = {str(unit): c for unit, c in details["units"].items()}
        units = {
            unit: {key: getattr(c, key) for key in ERROR_COUNTERS}
            for unit, c in counters.units.items()
        }
        health = self._statuses.health()
        return DriverFigures(
            self.name, "modbus", str(self._state), self.samples_emitted, self.reconnects,
            details, health, units, tag_problems(health, status_name),
        )  # fmt: skip

    async def run(self, emit: SampleSink) -> None:
        """One session: connect, scan until the connection is lost, then raise."""
        link = Link(self._source)
        self._state = DriverState.CONNECTING
        self._counters.sessions += 1
        try:
            await link.connect()
            self._link, self._state = link, DriverState.CONNECTED
            self.reconnects += self._connected_before
            self._connected_before = True
            _log.info(
                "modbus_connected",
                source=self.name,
                peer=link.where,
                transport=self._source.transport,
                tags=len(self._points),
                requests_per_scan=len(self._plan),
            )
            await self._scan_forever(link, emit)
        except ConnectionLostError as exc:
            if self._link is not None:
                _log.warning("modbus_connection_lost", source=self.name, error=str(exc))
            raise
        finally:
            self._link, self._state = None, DriverState.DISCONNECTED
            link.close()
            now = self._clock.now()
            self._emit(
                emit, [Sample(p.name, now, None, BAD_NO_COMMUNICATION) for p in self._points]
            )

    async def write(self, tag: str, value: float | int | bool) -> WriteResult:
        """Write one writable tag; see agent.domain.samples.Driver for the errors."""
        point = self._by_name.get(tag)
        if point is None:
            raise WriteRejectedError(f"{tag}: not a tag of Modbus source {self.name!r}")
        if not point.writable:
            raise WriteRejectedError(
                f"{tag}: not writable (writable = false, or a read-only table)"
            )
        try:
            prepared = point.codec.prepare_write(value, point.write_min, point.write_max)
        except WriteValueError as exc:
            raise WriteRejectedError(f"{tag}: {exc}") from exc
        link = self._link
        if link is None or not link.connected:
            raise ConnectionLostError(f"{tag}: Modbus source {self.name!r} is not connected")
        unit_id, counters = point.span.unit_id, self._counters.unit(point.span.unit_id)
        counters.requests += 1
        counters.writes += 1
        try:
            refused = await link.write(
                unit_id,
                point.span.table,
                point.span.start,
                prepared.registers,
                bit=point.bit,
                multiple=self._source.write_multiple,
            )
        except DeviceTimeoutError as exc:
            counters.timeouts += 1
            raise DeviceTimeoutError(f"{tag}: {exc}") from exc
        if isinstance(refused, Garbled):
            counters.garbled += 1
            _log.warning("modbus_write_garbled", source=self.name, tag=tag, unit=unit_id,
                         detail=refused.detail)  # fmt: skip
            raise DeviceTimeoutError(
                f"{tag}: unit {unit_id} gave a garbled answer to the write ({refused.detail});"
                " the write may or may not have been applied"
            )
        if refused is not None:
            counters.exceptions += 1
            code = exception_name(refused.code)
            _log.warning("modbus_write_refused", source=self.name, tag=tag, unit=unit_id, code=code)
            raise WriteRejectedError(f"{tag}: unit {unit_id} refused the write: exception {code}")
        _log.debug("modbus_write_accepted", source=self.name, tag=tag, raw=prepared.raw)
        return WriteResult(tag=tag, value=prepared.landed, raw=prepared.raw, status=GOOD)

    # -- scanning ------------------------------------------------------------------------------

    async def _scan_forever(self, link: Link, emit: SampleSink) -> None:
        scanner = Scanner(
            source=self.name,
            link=link,
            points=self._points,
            plan=self._plan,
            retries=self._source.retries,
            backoff=self._backoff,
            clock=self._clock,
            rand=self._rand,
            counters=self._counters,
        )
        interval = self._source.poll_interval_s
        deadline = self._clock.monotonic()
        while True:
            started = self._clock.monotonic()
            samples: list[Sample] = []
            try:
                await scanner.scan(samples)
            finally:
                self._emit(emit, samples)  # what arrived before a connection loss is real
            ended = self._clock.monotonic()
            self._counters.scans += 1
            self._counters.last_scan_s = ended - started
            deadline, skipped = next_deadline(deadline, interval, ended)
            self._note_lateness(skipped, ended - started)
            await self._clock.sleep(deadline - self._clock.monotonic())

    def _note_lateness(self, skipped: int, scan_s: float) -> None:
        """Log overruns: WARNING once, DEBUG while it lasts, INFO after a run of on-time scans."""
        if skipped:
            self._counters.skipped_scans += skipped
            (_log.debug if self._on_time is not None else _log.warning)(
                "modbus_scans_skipped",
                source=self.name,
                skipped=skipped,
                scan_s=round(scan_s, 3),
                poll_interval_s=self._source.poll_interval_s,
            )
            self._on_time = 0
        elif self._on_time is not None:
            self._on_time += 1
            if self._on_time >= _ON_TIME_AGAIN:  # hysteresis: a scan time near the interval
                self._on_time = None  # must not log WARNING/INFO pairs every few scans
                _log.info("modbus_scans_on_time", source=self.name, scan_s=round(scan_s, 3))

    def _emit(self, emit: SampleSink, samples: list[Sample]) -> None:
        fresh = [s for s in samples if self._memory.worth_emitting(s.tag, s.status)]
        if fresh:
            self.samples_emitted += len(fresh)
            self._statuses.note(fresh)
            emit(fresh)
