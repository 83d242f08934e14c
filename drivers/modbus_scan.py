"""The Modbus scan policy: what a missing or refused answer means, and when to ask again.

Owns: the health of one unit (answering / missing / down and backed off, with the shared
`Backoff`), the status code a Modbus exception becomes, which exceptions are isolated by
re-reading tag by tag, the drift-free scan deadline, the rule that decides which samples are
worth emitting, and the counters the driver exposes for metrics.
Must not: do I/O, sleep, read a clock or draw random numbers (pure: times and `rand` come in
as plain floats), or import pymodbus.

The policy, in one place:
- A unit *misses* a scan when its request times out or a gateway answers 0x0A/0x0B for it.
  The rest of that unit's requests are skipped for the scan, so a dead unit delays the other
  units of the connection by at most one `timeout_s` a scan.
- The first `retries` consecutive misses leave the unit's tags without a sample (a gap, not
  Bad: one lost frame on a noisy bus is not an outage); the next miss marks them
  Bad_NoCommunication and the unit is *down*: it is skipped until `backoff.delay(attempt)`
  has passed, then probed by the next scan (its first request), once per backoff step.
- Any answer, an exception response included, resets the unit to healthy.
- Exception responses mark only the tags of the refused request: 0x04 -> Bad_DeviceFailure,
  0x0A/0x0B -> Bad_NoCommunication (the gateway says the unit did not answer), any other
  code -> Bad. A refused request holding several tags is re-read in smaller requests in the
  same scan (codes 0x02, 0x03, 0x04; see drivers.modbus_scanner), so one bad address or one
  failed point does not take its neighbours down; after 0x02/0x03 (the device's address map
  has a hole the planner could not know about) the split is kept for the rest of the session.
- A garbled answer (not an answer to the request) is an answer, not a miss: it marks the
  tags of that request Bad_CommunicationError and is counted apart from exceptions.
- Good samples are emitted every scan; a non-Good one only when the tag's status changes.
  So a down unit's tags go Bad once and then stay silent (never re-emitted as fresh) until
  the unit answers again.

Invariants: `UnitHealth` never gives up (attempts grow without bound, the delay saturates at
the backoff cap); `next_deadline` always returns a deadline after `now` on the grid
`first + k * interval`, so scans never drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from agent.domain.backoff import Backoff
from agent.domain.samples import BAD, BAD_DEVICE_FAILURE, BAD_NO_COMMUNICATION, GOOD

__all__ = [
    "DriverCounters",
    "Miss",
    "MissKind",
    "StatusMemory",
    "UnitCounters",
    "UnitHealth",
    "exception_name",
    "exception_status",
    "is_gateway_miss",
    "next_deadline",
    "re_read_per_tag",
    "split_for_session",
]

ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04
GATEWAY_PATH_UNAVAILABLE = 0x0A
GATEWAY_NO_RESPONSE = 0x0B

_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x07: "negative acknowledge",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


def exception_name(code: int) -> str:
    """'0x02 (illegal data address)': how logs and errors name a Modbus exception code."""
    return f"0x{code:02X} ({_NAMES.get(code, 'unknown exception code')})"


def exception_status(code: int) -> int:
    """The OPC UA status a read refused with Modbus exception `code` gives its tags."""
    if code == DEVICE_FAILURE:
        return BAD_DEVICE_FAILURE
    if is_gateway_miss(code):
        return BAD_NO_COMMUNICATION
    return BAD


def is_gateway_miss(code: int) -> bool:
    """True when the exception means "the unit behind the gateway did not answer"."""
    return code in (GATEWAY_PATH_UNAVAILABLE, GATEWAY_NO_RESPONSE)


def re_read_per_tag(code: int) -> bool:
    """True when a refused multi-tag request is worth re-reading in smaller requests."""
    return code in (ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE)


def split_for_session(code: int) -> bool:
    """True when the tag-by-tag split should replace the request for the rest of the session."""
    return code in (ILLEGAL_ADDRESS, ILLEGAL_VALUE)


class MissKind(Enum):
    RETRY = "retry"
    """Within `retries`: no sample, try again next scan."""
    WENT_DOWN = "went_down"
    """Retries exhausted just now: mark the unit's tags Bad, back off."""
    STILL_DOWN = "still_down"
    """A probe of a down unit failed: back off longer."""


@dataclass(frozen=True, slots=True)
class Miss:
    kind: MissKind
    misses: int
    retry_in_s: float | None


@dataclass(slots=True)
class UnitHealth:
    """Answering, missing or down-and-backed-off: one unit's state across scans."""

    retries: int
    backoff: Backoff
    misses: int = 0
    down: bool = False
    attempt: int = 0
    retry_at: float = -math.inf
    down_since: float | None = None

    def due(self, now: float) -> bool:
        """Whether the unit should be asked this scan (False while backed off)."""
        return now >= self.retry_at

    def answered(self) -> int:
        """Record an answer; return how many scans it had missed in a row (0 = no streak)."""
        missed = self.misses
        self.misses = self.attempt = 0
        self.down = False
        self.retry_at = -math.inf
        self.down_since = None
        return missed

    def missed(self, now: float, rand: float) -> Miss:
        """Record a scan without an answer at monotonic time `now`; `rand` in [0, 1)."""
        self.misses += 1
        if self.misses <= self.retries:
            return Miss(MissKind.RETRY, self.misses, None)
        delay = self.backoff.delay(self.attempt, rand)
        self.attempt += 1
        self.retry_at = now + delay
        kind = MissKind.STILL_DOWN if self.down else MissKind.WENT_DOWN
        if not self.down:
            self.down, self.down_since = True, now
        return Miss(kind, self.misses, delay)


def next_deadline(deadline: float, interval: float, now: float) -> tuple[float, int]:
    """The next scan deadline after `deadline`, and how many grid points `now` has passed.

    Deadlines stay on the grid `deadline + k * interval`; a scan that would start late is
    skipped (counted), never run late, so the scan rate never drifts and never bunches up.
    """
    following = deadline + interval
    if now <= following:
        return following, 0
    skipped = math.ceil((now - following) / interval)
    following += skipped * interval
    if following < now:  # float rounding at the grid point
        following += interval
        skipped += 1
    return following, skipped


class StatusMemory:
    """Remembers each tag's last emitted status; decides what is worth emitting."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def worth_emitting(self, tag: str, status: int) -> bool:
        """True for every Good sample, and for a non-Good one whose status is new for the tag.

        Records `status` as emitted when it returns True.
        """
        if status != GOOD and self._last.get(tag) == status:
            return False
        self._last[tag] = status
        return True

    def last(self, tag: str) -> int | None:
        return self._last.get(tag)


@dataclass(slots=True)
class UnitCounters:
    """Counters of one unit since the driver was built (monotonic, for metrics)."""

    requests: int = 0
    timeouts: int = 0
    exceptions: int = 0
    writes: int = 0
    garbled: int = 0


@dataclass(slots=True)
class DriverCounters:
    """Counters of one Modbus source since the driver was built."""

    units: dict[int, UnitCounters] = field(default_factory=dict)
    scans: int = 0
    skipped_scans: int = 0
    last_scan_s: float | None = None
    sessions: int = 0

    def unit(self, unit_id: int) -> UnitCounters:
        counters = self.units.get(unit_id)
        if counters is None:
            counters = self.units[unit_id] = UnitCounters()
        return counters

    def copy(self) -> DriverCounters:
        return DriverCounters(
            units={
                unit: UnitCounters(c.requests, c.timeouts, c.exceptions, c.writes, c.garbled)
                for unit, c in self.units.items()
            },
            scans=self.scans,
            skipped_scans=self.skipped_scans,
            last_scan_s=self.last_scan_s,
            sessions=self.sessions,
        )
