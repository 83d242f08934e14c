"""The OPC UA driver: one `[[sources]]` entry of kind "opcua", as a `agent.domain.samples.Driver`.

Owns: the driver's lifecycle across sessions (state, counters, each tag's latest status,
recovery logs), what it reports about itself (`figures()`, statuses named by asyncua's
table: a server may send any code), the configuration-side checks of a write (known tag,
`writable = true`, write limits, scale and offset), the mapping of a write's status into
`WriteResult` / `WriteRejectedError`, and the one-shot `read_once` for `edge-agent read`.
Must not: retry or sleep between sessions (`run()` is ONE session; the supervisor restarts
it with the shared backoff), touch asyncua outside the modules it delegates to
(opcua_connect, opcua_session), write a tag that is not `writable = true`, or log secrets.
Invariants: `run()` always ends by raising (ConnectionLostError or another agent error) or
by cancellation, and on the way out marks every tag Bad_NoCommunication through `emit` and
closes its session (CloseSession deleting its subscriptions, at most 1 s, then the socket
is dropped); subscriptions live and die with their session, so a reconnect never leaves a
publishing duplicate on the server (an old session the server could not be told about
has no publish requests: the server expires its subscription after its lifetime, about a
minute, and the session after 120 s); `write()` never retries, and never touches the wire
for a tag that is not `writable = true` or a value outside `write_min..write_max`;
`counters.dropped` stays 0 unless the server sends notifications for handles this session
never created (counted and logged).

The pieces: opcua_connect (endpoint, security, trust, error mapping), opcua_resolve
(nsu= ids and browse paths, each session), opcua_subscription (publish responses taken
whole), opcua_values (conversion, write coercion), opcua_write (typed writes), opcua_session
(one session), opcua_health (counters, log rules), opcua_security (certificates),
opcua_browse (commissioning), opcua_logs (asyncua's records of a session's end).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from agent.config.addresses import OpcUaAddress, parse_opcua_address
from agent.config.settings import OpcUaSource, Tag
from agent.domain.clock import Clock, SystemClock
from agent.domain.errors import ConnectionLostError, WriteRejectedError
from agent.domain.logger import get_logger
from agent.domain.samples import (
    BAD_NO_COMMUNICATION,
    DriverFigures,
    DriverState,
    Sample,
    SampleSink,
    TagHealth,
    TagStatuses,
    WriteResult,
    tag_problems,
)
from drivers.opcua_connect import ConnectOptions, close, connect
from drivers.opcua_health import Notes, OpcUaCounters
from drivers.opcua_session import Session
from drivers.opcua_values import TagScaling, status_name

__all__ = ["OpcUaCounters", "OpcUaDriver", "read_once"]

_log = get_logger(__name__)
_NOT_WRITABLE = {"BadNotWritable", "BadUserAccessDenied"}
_CLOSE_TIMEOUT_S = 1.0


def _addresses(source: OpcUaSource, tags: Sequence[Tag]) -> list[tuple[str, OpcUaAddress]]:
    out = []
    for tag in tags:
        if tag.source != source.name:
            raise ValueError(
                f"tag {tag.name!r} belongs to source {tag.source!r}, not {source.name!r}"
            )
        out.append((tag.name, parse_opcua_address(tag.address)))
    return out


class OpcUaDriver:
    """Samples and writes for the tags of one OPC UA source (see the module docstring)."""

    def __init__(
        self,
        source: OpcUaSource,
        tags: Sequence[Tag],
        *,
        state_dir: Path,
        agent_id: str,
        password: SecretStr | None,
        clock: Clock,
        config_file: Path | None = None,  # named by the trust hint of a refused certificate
    ) -> None:
        self.name = source.name
        self._source = source
        self._tags = {tag.name: tag for tag in tags}
        self._addresses = _addresses(source, tags)
        self._options = ConnectOptions.of(
            source, state_dir=state_dir, agent_id=agent_id, password=password,
            config_file=config_file,
        )  # fmt: skip
        self._clock = clock
        self._state = DriverState.DISCONNECTED
        self._session: Session | None = None
        self._counters = OpcUaCounters()
        self._notes = Notes(source.name)
        self._statuses = TagStatuses(self._tags)

    @property
    def state(self) -> DriverState:
        return self._state

    @property
    def counters(self) -> OpcUaCounters:
        """A snapshot of the driver's figures (notifications, samples, drops, reconnects...)."""
        return dataclasses.replace(self._counters)

    def tag_health(self) -> TagHealth:
        """The tags by their latest emitted status (Bad and Uncertain ones named)."""
        return self._statuses.health()

    def figures(self) -> DriverFigures:
        """State, samples, reconnects, tags and every counter; statuses named by asyncua's
        table (a server may send any code)."""
        c = self.counters
        health = self._statuses.health()
        return DriverFigures(
            self.name, "opcua", str(self._state), c.samples_emitted, c.reconnects,
            dataclasses.asdict(c), health, not_good=tag_problems(health, status_name),
        )  # fmt: skip

    @property
    def application_uri(self) -> str:
        return self._options.application_uri

    async def run(self, emit: SampleSink) -> None:
        """One session: connect, resolve, subscribe (or poll), emit until it ends; raise."""
        emit = self._noting(emit)
        self._state = DriverState.CONNECTING
        client = None
        try:
            client = await connect(self._options)
            session = Session(
                client,
                self._source,
                list(self._tags.values()),
                self._addresses,
                clock=self._clock,
                counters=self._counters,
                notes=self._notes,
            )
            subscribe = self._source.acquisition == "subscription"
            bad = await session.start(subscribe=subscribe)
            counters = self._counters
            counters.sessions += 1
            counters.reconnects = counters.sessions - 1
            self._session, self._state = session, DriverState.CONNECTED
            _log.info(
                "opcua_session_started",
                source=self.name,
                endpoint=self._source.endpoint,
                acquisition=self._source.acquisition,
                tags=len(self._addresses),
                unresolved=counters.unresolved_tags,
                subscribe_s=round(counters.last_subscribe_s or 0.0, 3) if subscribe else None,
                reconnects=counters.reconnects,
            )
            if bad:
                emit(bad)
            await session.serve(emit)
        finally:
            self._session, self._state = None, DriverState.DISCONNECTED
            now = self._clock.now()
            emit([Sample(name, now, None, BAD_NO_COMMUNICATION) for name, _ in self._addresses])
            if client is not None:  # a healthy server answers CloseSession in milliseconds
                await close(client, min(self._source.timeout_s, _CLOSE_TIMEOUT_S))

    def _noting(self, emit: SampleSink) -> SampleSink:
        def noted(batch: Sequence[Sample]) -> None:
            self._statuses.note(batch)
            emit(batch)

        return noted

    async def write(self, tag: str, value: float | int | bool) -> WriteResult:
        """Write one value (engineering units) to a writable tag; never retried."""
        spec = self._tags.get(tag)
        if spec is None:
            raise WriteRejectedError(f"{self.name}: no tag named {tag!r} on this source")
        if not spec.writable:
            raise WriteRejectedError(f"{tag} is not writable (writable = false in the config)")
        if not isinstance(value, bool) and (
            (spec.write_min is not None and value < spec.write_min)
            or (spec.write_max is not None and value > spec.write_max)
        ):
            raise WriteRejectedError(
                f"{tag}: {value!r} is outside its write limits "
                f"[{spec.write_min}, {spec.write_max}] in the config"
            )
        session = self._session
        if session is None:
            raise ConnectionLostError(f"{self.name}: not connected to {self._source.endpoint}")
        raw = TagScaling(tag, spec.scale, spec.offset).to_raw(value)
        variant, status = await session.write(tag, raw)
        name = status_name(status)
        if status >= 0x80000000:
            if name in _NOT_WRITABLE:
                raise WriteRejectedError(f"{tag} is not writable on the server ({name})")
            raise WriteRejectedError(f"writing {tag} = {raw!r} was refused: {name}")
        _log.debug("opcua_value_written", source=self.name, tag=tag, value=variant.Value)
        return WriteResult(tag, value, variant.Value, status)


async def read_once(
    source: OpcUaSource,
    tags: Sequence[Tag],
    *,
    state_dir: Path,
    agent_id: str,
    password: SecretStr | None,
    config_file: Path | None = None,
) -> list[Sample]:
    """Connect, read every tag once, disconnect (`edge-agent read`); samples in tag order.

    Raises ConnectionLostError (unreachable endpoint, no matching security endpoint, login
    refused), UntrustedServerError (server certificate refused: saved in rejected/) or
    DeviceTimeoutError, each with a message saying what to do.
    """
    options = ConnectOptions.of(source, state_dir=state_dir, agent_id=agent_id, password=password,
                                config_file=config_file)  # fmt: skip
    client = await connect(options)
    try:
        session = Session(
            client,
            source,
            tags,
            _addresses(source, tags),
            clock=SystemClock(),
            counters=OpcUaCounters(),
            notes=Notes(source.name),
        )
        samples = await session.start(subscribe=False)
        samples += session.first_read
    finally:
        await close(client, source.timeout_s)
    position = {tag.name: i for i, tag in enumerate(tags)}
    return sorted(samples, key=lambda sample: position[sample.tag])
