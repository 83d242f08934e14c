"""The driver contract: what every field-bus adapter produces, reports and is asked to do.

Owns: the `Sample` value type (tag, source timestamp, value, quality with the OPC UA status
code kept), the status codes drivers synthesise and their names (`status_name`), the
`Driver` protocol, the `DriverState` a driver reports for health, `TagStatuses` (each tag's
latest emitted status, which every driver keeps so /status and /metrics can count its Bad
and Uncertain tags) and `DriverFigures`, what a driver reports about itself (`figures()`):
the one shape /status, /metrics and `edge-agent status` read a source of any kind through.
Must not: import a protocol library, the buffer, the model or the cloud.
Invariants: a failed read is a Bad sample with `value=None` (or no sample), never a 0; the
quality is always derived from the status code (top two bits), so the two never disagree;
`emit` is called from the event loop with a batch and must not block; a source is
`degraded` exactly when it is connected and some tag's latest status is not Good;
`figures()` is a snapshot: it does no I/O, never awaits, and holds only JSON-safe details.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Protocol

Value = float | int | bool | str | None


class Quality(IntEnum):
    """OPC UA quality classes; the numeric value is the top two bits of the status code."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @staticmethod
    def of(status: int) -> Quality:
        """The class of an OPC UA status code (0b11 is reserved and read as Bad)."""
        return Quality(min((status >> 30) & 0b11, 2))


# OPC UA status codes the drivers synthesise (Part 4 / Part 6 values).
GOOD = 0x00000000
GOOD_LOCAL_OVERRIDE = 0x00960000
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000
UNCERTAIN_NO_COMMUNICATION_LAST_USABLE_VALUE = 0x408F0000
BAD = 0x80000000
BAD_TIMEOUT = 0x800A0000
BAD_COMMUNICATION_ERROR = 0x80050000
BAD_NO_COMMUNICATION = 0x80310000
BAD_WAITING_FOR_INITIAL_DATA = 0x80320000
BAD_NODE_ID_UNKNOWN = 0x80340000
BAD_DEVICE_FAILURE = 0x808B0000
BAD_OUT_OF_RANGE = 0x803C0000
BAD_NOT_WRITABLE = 0x803B0000
BAD_USER_ACCESS_DENIED = 0x801F0000
BAD_TYPE_MISMATCH = 0x80740000

STATUS_NAMES: Mapping[int, str] = {
    GOOD: "Good",
    GOOD_LOCAL_OVERRIDE: "GoodLocalOverride",
    UNCERTAIN_LAST_USABLE_VALUE: "UncertainLastUsableValue",
    UNCERTAIN_NO_COMMUNICATION_LAST_USABLE_VALUE: "UncertainNoCommunicationLastUsableValue",
    BAD: "Bad",
    BAD_TIMEOUT: "BadTimeout",
    BAD_COMMUNICATION_ERROR: "BadCommunicationError",
    BAD_NO_COMMUNICATION: "BadNoCommunication",
    BAD_WAITING_FOR_INITIAL_DATA: "BadWaitingForInitialData",
    BAD_NODE_ID_UNKNOWN: "BadNodeIdUnknown",
    BAD_DEVICE_FAILURE: "BadDeviceFailure",
    BAD_OUT_OF_RANGE: "BadOutOfRange",
    BAD_NOT_WRITABLE: "BadNotWritable",
    BAD_USER_ACCESS_DENIED: "BadUserAccessDenied",
    BAD_TYPE_MISMATCH: "BadTypeMismatch",
}
"""The OPC UA names (Part 6) of the codes above, spelled as OPC UA libraries spell them."""


def status_name(status: int) -> str:
    """The name of a status code listed in `STATUS_NAMES` (info bits ignored); any other as
    'Bad_0x...', 'Uncertain_0x...' or 'Good_0x...'. A driver that receives codes from a
    server (OPC UA) names them with its library's full table instead."""
    code = status & 0xFFFF0000
    name = STATUS_NAMES.get(code)
    if name is not None:
        return name
    severity = "Bad" if code & 0x80000000 else ("Uncertain" if code & 0x40000000 else "Good")
    return f"{severity}_0x{code:08X}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one tag. Times are unix seconds (UTC)."""

    tag: str
    source_time: float
    value: Value
    status: int = GOOD
    server_time: float | None = None

    @property
    def quality(self) -> Quality:
        return Quality.of(self.status)


SampleSink = Callable[[Sequence[Sample]], None]
"""Where a driver puts its samples: called with one batch per notification or scan."""


class DriverState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class WriteResult:
    """A write the device accepted: what was sent (raw, after scale/offset) and its status."""

    tag: str
    value: Value
    raw: Value
    status: int


class Driver(Protocol):
    """A source of samples for the tags of one `[[sources]]` entry.

    `run()` is one session: it connects, resolves addresses, acquires and emits samples
    until the connection is lost, then raises a `RetryableError` (or an error the supervisor
    logs); the supervisor restarts it with the shared backoff, forever. On the way out
    (including cancellation) it marks every tag Bad_NoCommunication through `emit` and
    closes its connection. `write()` raises `WriteRejectedError` when the device refuses
    (naming the tag and the status) and `ConnectionLostError` when not connected; it never
    retries a write by itself.
    """

    name: str

    @property
    def state(self) -> DriverState: ...

    async def run(self, emit: SampleSink) -> None: ...

    async def write(self, tag: str, value: float | int | bool) -> WriteResult: ...

    def figures(self) -> DriverFigures:
        """What the driver reports about itself now (a snapshot: no I/O, never awaits)."""
        ...


@dataclass(frozen=True, slots=True)
class TagHealth:
    """A source's tags by their latest status; `not_good` lists the first few, in tag order."""

    total: int
    good: int
    uncertain: int
    bad: int
    waiting: int
    """Tags without any sample yet."""
    not_good: tuple[tuple[str, int], ...]
    """(tag, status) of the first `shown` tags that are Uncertain or Bad."""


class TagStatuses:
    """Each tag's latest emitted status (a driver notes every batch it emits)."""

    __slots__ = ("_latest", "_order")

    def __init__(self, tags: Iterable[str]) -> None:
        self._order = list(dict.fromkeys(tags))
        self._latest: dict[str, int] = {}

    def note(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self._latest[sample.tag] = sample.status

    def health(self, shown: int = 10) -> TagHealth:
        counts = [0, 0, 0]
        not_good: list[tuple[str, int]] = []
        for tag in self._order:
            status = self._latest.get(tag)
            if status is None:
                continue
            quality = Quality.of(status)
            counts[quality] += 1
            if quality is not Quality.GOOD and len(not_good) < shown:
                not_good.append((tag, status))
        good, uncertain, bad = counts
        waiting = len(self._order) - good - uncertain - bad
        return TagHealth(len(self._order), good, uncertain, bad, waiting, tuple(not_good))


@dataclass(frozen=True, slots=True)
class TagProblem:
    """A tag whose latest status is Uncertain or Bad, with the status' name."""

    tag: str
    status: int
    status_name: str


ERROR_COUNTERS = ("requests", "exceptions", "timeouts", "garbled")
"""The error counters a driver keeps per unit (Modbus: requests sent, exception responses,
requests without an answer in time, garbled answers), in the order they are shown."""


@dataclass(frozen=True)
class DriverFigures:
    """What a driver reports about itself, the same way for every kind (`Driver.figures()`)."""

    name: str
    kind: str
    """"opcua", "modbus", ...: the `kind` of the source's configuration."""
    state: str
    """A `DriverState` value."""
    samples: int
    """Samples handed to `emit` since the driver was built."""
    reconnects: int
    """Successful connections after the first one."""
    details: dict[str, Any]
    """The kind's own counters, JSON-safe: str keys; str, int, float, bool, None, dicts, lists."""
    tags: TagHealth | None = None
    units: Mapping[int, Mapping[str, int]] | None = None
    """Per unit id, each of `ERROR_COUNTERS`; None for a kind without units (OPC UA)."""
    not_good: tuple[TagProblem, ...] = ()
    """The tags of `tags.not_good`, their statuses named by the driver."""

    @property
    def errors(self) -> dict[str, int] | None:
        """`ERROR_COUNTERS` summed over the units; None for a kind without units."""
        if self.units is None:
            return None
        return {key: sum(unit[key] for unit in self.units.values()) for key in ERROR_COUNTERS}


def tag_problems(health: TagHealth, name: Callable[[int], str]) -> tuple[TagProblem, ...]:
    """`health.not_good` with each status named by `name` (the driver's naming)."""
    return tuple(TagProblem(tag, status, name(status)) for tag, status in health.not_good)
