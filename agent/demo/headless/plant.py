"""The simulated mill as an in-process peer of a headless agent (agent.demo.headless.rig): a
Driver over `Mill` and the sampling that turns the mill's published tags into driver batches,
stepped in sim time.

Owns: `MillDriver` (agent.domain.samples.Driver as far as control loops need it: `write` goes
to `Mill.write`, a status other than "Good" is a `WriteRejectedError`, every accepted write is
kept in `writes` and shown at once, as the simulated PLC's OPC UA server does: the written tag
is emitted in the same instant, before `write` returns), and `SimPlant`: one tick of the mill
at a time, the FakeClock jumped with it (`clock.now() == mill.time` always), the plant's own
recipe writes (every `recipe_s` the `recipe` setpoints, the grinding-aid dose, are written
again with their value: the PLC's source time moves, no subscriber hears of it, as on the
networked path), and the batches a subscription would deliver: the "event" tags (lab results
and their `<Tag>SampleTime` companions, the handshake flags, ProductId and SiloId) as soon as
they change (checked every tick), every other tag at most once per `sample_s` of sim time; a
tag only when its value or status changed: what an OPC UA subscription with the default
data-change trigger (StatusValue, the agent's driver's) delivers; a new source time alone is
no change.
Must not: mock or patch any agent module, read real time, or change the mill except through
its public API (step, write, read, operator, inject).
Invariants: a sample's source time is the mill's published source time, its server time the
sim time at which the rig saw it; statuses map by name onto agent.domain.samples codes
(unknown names are Bad).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from agent.demo.mill import Mill
from agent.demo.tags import LAB_RESULT_TAGS
from agent.domain.clock import FakeClock
from agent.domain.errors import WriteRejectedError
from agent.domain.samples import (
    BAD,
    GOOD,
    STATUS_NAMES,
    DriverFigures,
    DriverState,
    Sample,
    SampleSink,
    WriteResult,
)

__all__ = ["EVENT_TAGS", "MillDriver", "SimPlant", "Write"]

EVENT_TAGS: frozenset[str] = frozenset(
    (*LAB_RESULT_TAGS, *(f"{t}SampleTime" for t in LAB_RESULT_TAGS), "HeartbeatEcho",
     "RemoteEnable", "RemoteActive", "WatchdogFault", "Running", "ProductId", "SiloId")
)  # fmt: skip
"""Tags checked every tick (they change rarely and each change matters: a product change
reaches the loops at the tick it happens, as an OPC UA subscription delivers it)."""
_CODES = {name: code for code, name in STATUS_NAMES.items()}


@dataclass(frozen=True)
class Write:
    """One write the mill accepted: sim time, tag, value."""

    time: float
    tag: str
    value: float | int | bool


class MillDriver:
    """Writes of the agent to the simulated PLC (reads come from SimPlant's batches)."""

    def __init__(self, mill: Mill, name: str = "mill", kind: str = "sim") -> None:
        self.name, self.kind, self.mill = name, kind, mill
        self.writes: list[Write] = []
        self.samples = 0
        self.on_written: Callable[[str], None] | None = None
        """Told the name of every tag written (SimPlant emits it at once)."""

    @property
    def state(self) -> DriverState:
        return DriverState.CONNECTED

    async def run(self, emit: SampleSink) -> None:  # SimPlant emits; nothing to acquire here
        raise NotImplementedError("SimPlant delivers the samples of the simulated mill")

    async def write(self, tag: str, value: float | int | bool) -> WriteResult:
        status = self.mill.write(tag, value)
        if status != "Good":
            raise WriteRejectedError(f"write {tag} = {value!r} refused by the PLC: {status}")
        if tag != "Heartbeat":
            self.writes.append(Write(self.mill.time, tag, value))
        if self.on_written is not None:
            self.on_written(tag)
        return WriteResult(tag, value, value, GOOD)

    def figures(self) -> DriverFigures:
        return DriverFigures(self.name, self.kind, self.state.value, self.samples, 0, {})


@dataclass
class SimPlant:
    """The mill, stepped tick by tick, with the clock following it and batches emitted."""

    mill: Mill
    clock: FakeClock
    tags: Sequence[str]
    sinks: list[Callable[[Sequence[Sample]], None]] = field(default_factory=list)
    sample_s: float = 60.0
    driver: MillDriver | None = None
    recipe: Sequence[str] = ("GrindingAidSetpoint",)
    recipe_s: float = 43200.0
    ticks: int = 0
    _seen: dict[str, tuple[float, object, int]] = field(default_factory=dict)
    """tag -> (source time, value, status) of the last sample emitted."""

    def __post_init__(self) -> None:
        if abs(self.clock.now() - self.mill.time) > 1e-6:
            raise ValueError(f"the clock ({self.clock.now()}) must start at the mill's time "
                             f"({self.mill.time})")  # fmt: skip
        self.per_sample = max(1, round(self.sample_s / self.mill.dt))
        self.per_recipe = max(1, round(self.recipe_s / self.mill.dt))
        self.events = [t for t in self.tags if t in EVENT_TAGS]
        self.periodic = [t for t in self.tags if t not in EVENT_TAGS]
        if self.driver is None:
            self.driver = MillDriver(self.mill)
        self.driver.on_written = self.written

    def written(self, tag: str) -> None:
        """A tag the agent wrote is published at once (if the rig reads it)."""
        if tag in self.tags:
            self._emit([tag])

    @property
    def sample_due(self) -> bool:
        """The tick just taken ends a sampling period."""
        return self.ticks % self.per_sample == 0

    @property
    def last_tick_of_period(self) -> bool:
        """The next tick ends a sampling period."""
        return (self.ticks + 1) % self.per_sample == 0

    async def advance(self) -> None:
        """One tick (the rig awaits this: a plant behind a network waits for its delivery)."""
        self.tick()

    def tick(self) -> None:
        """One tick of the mill, the clock jumped with it, and the batches it produces."""
        self.mill.step(1)
        self.ticks += 1
        if self.ticks % self.per_recipe == 0:
            for name in self.recipe:  # the plant confirms its recipe: same value, new time
                value = self.mill.read(name).value
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.mill.write(name, value)
        self.clock.jump(self.mill.dt)
        if abs(self.clock.now() - self.mill.time) > 1e-6:
            raise RuntimeError(f"clock {self.clock.now()} left the mill's time {self.mill.time}")
        self._emit(self.events)
        if self.sample_due:
            self._emit(self.periodic)

    def publish_all(self) -> None:
        """Emit the current reading of every tag that changed (at start: all of them)."""
        self._emit(self.tags)

    def _emit(self, names: Iterable[str]) -> None:
        now = self.mill.time
        batch: list[Sample] = []
        for name in names:
            r = self.mill.read(name)
            status = _CODES.get(r.status, BAD)
            seen = self._seen.get(name)
            if seen is not None and _same(seen[1], r.value) and seen[2] == status:
                continue  # OPC UA's default trigger: a new source time alone is no change
            self._seen[name] = (r.source_time, r.value, status)
            batch.append(Sample(name, r.source_time, r.value, status, server_time=now))
        if batch:
            assert self.driver is not None
            self.driver.samples += len(batch)
            for sink in self.sinks:
                sink(batch)


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b
