"""One OPC UA session of the driver: resolve, subscribe or poll, emit, watch, write.

Owns: what happens between connect and disconnect: resolving the tags (every session
anew), creating the session's one subscription (or the poll loop), converting and emitting
every batch from the session's own task, the per-subscription watchdog, noticing the end
of the connection (asyncua state change, a Bad StatusChangeNotification, the watchdog),
and writes (through drivers.opcua_write, whose type cache lives as long as the session).
Must not: reconnect or sleep between sessions (the supervisor does), decide the driver's
state or its recovery logs (drivers.opcua does), or swallow an error from `emit`.
Invariants: every received notification is converted and emitted or counted as dropped
(an unknown client handle), with a WARNING the first time; a tag that cannot be resolved
or monitored gets one Bad sample with the status code per session; `serve()` only ever
ends by raising (ConnectionLostError when the session ends) or by cancellation, after
emitting everything already received; helper tasks never outlive `serve()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, NoReturn

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.ua.attribute_ids import AttributeIds

from agent.config.addresses import OpcUaAddress
from agent.config.settings import OpcUaSource, Tag
from agent.domain.clock import Clock
from agent.domain.errors import ConnectionLostError, WriteRejectedError
from agent.domain.logger import get_logger
from agent.domain.samples import Sample, SampleSink
from drivers.opcua_connect import library_errors
from drivers.opcua_health import Notes, OpcUaCounters
from drivers.opcua_resolve import Unresolved, resolve
from drivers.opcua_subscription import FastSubscription, Inbox, ItemRequest
from drivers.opcua_subscription import subscription_parameters as _parameters
from drivers.opcua_values import (
    SampleMaker,
    TagScaling,
    deadband_filter,
    status_name,
)
from drivers.opcua_write import NodeWriter

__all__ = ["Session"]

_log = get_logger("drivers.opcua")
_READ_CHUNK = 1000
_CLOSED = "connection lost (closed by the server, or the network failed)"
_GONE = (UaClientState.DISCONNECTED, UaClientState.DISCONNECTING, UaClientState.RECONNECTING)
_MISSING = {"BadNodeIdUnknown", "BadNodeIdInvalid", "BadAttributeIdInvalid"}
_FILTER_REFUSED = {
    "BadMonitoredItemFilterUnsupported",
    "BadFilterNotAllowed",
    "BadDeadbandFilterInvalid",
    "BadMonitoredItemFilterInvalid",
}


class Session:
    """Everything of one connected session; built and thrown away by each `run()`."""

    def __init__(
        self,
        client: Client,
        source: OpcUaSource,
        tags: Sequence[Tag],
        addresses: Sequence[tuple[str, OpcUaAddress]],
        *,
        clock: Clock,
        counters: OpcUaCounters,
        notes: Notes,
    ) -> None:
        self.client, self._source, self._clock = client, source, clock
        self._tags = {tag.name: tag for tag in tags}
        self._addresses = addresses
        self._counters, self._notes = counters, notes
        self._node_ids: dict[str, ua.NodeId] = {}
        self._unresolved: dict[str, str] = {}
        self._order: list[str] = []
        self._maker = SampleMaker([])
        self._writer = NodeWriter(client, source.endpoint)
        self._inbox = Inbox()
        self._subscription: FastSubscription | None = None
        self._lost: str | None = None
        self._seen = (0, 0)  # keep-alives and sequence gaps already counted
        self.first_read: list[Sample] = []

    async def start(self, *, subscribe: bool) -> list[Sample]:
        """Resolve every tag, then subscribe (or probe with one Read); log the tags that
        cannot be served (once per session) and return one Bad sample for each of them."""
        resolution = await resolve(self.client, self._addresses)
        self._node_ids = resolution.node_ids
        self._order = [name for name, _ in self._addresses if name in self._node_ids]
        self._maker = SampleMaker([self._scaling(name) for name in self._order])
        problems = list(resolution.unresolved)
        if subscribe:
            problems += await self._subscribe()
        elif self._order:
            self.first_read = await self.read_samples()  # the first scan, emitted by serve()
            problems += [
                Unresolved(s.tag, f"read refused: {status_name(s.status)}", s.status)
                for s in self.first_read
                if status_name(s.status) in _MISSING
            ]
        self._unresolved = {p.tag: p.reason for p in problems}
        self._counters.unresolved_tags = len(self._unresolved)
        ok = [name for name in self._order if name not in self._unresolved]
        self._notes.tags([(p.tag, p.reason) for p in problems], ok)
        now = self._clock.now()
        return [
            Sample(p.tag, now, None, p.status)
            for p in problems
            if subscribe or p.tag not in self._node_ids
        ]

    def _scaling(self, name: str) -> TagScaling:
        tag = self._tags[name]
        return TagScaling(name, tag.scale, tag.offset)

    async def _subscribe(self) -> list[Unresolved]:
        """Create this session's subscription; the items the server refused."""
        started = self._clock.monotonic()
        session = self.client.uaclient.session
        subscription = FastSubscription(
            session, _parameters(self._source), inbox=self._inbox, monotonic=self._clock.monotonic
        )
        self._subscription = subscription
        await subscription.start()
        requests = [self._item(handle, name) for handle, name in enumerate(self._order, 1)]
        refused = await subscription.add_items(requests)
        retry = [
            requests[h - 1]
            for h, code in refused
            if status_name(code) in _FILTER_REFUSED and requests[h - 1].filter
        ]
        if retry:
            self._notes.once(
                "deadband",
                "opcua_deadband_unsupported",
                tags=[self._order[r.handle - 1] for r in retry[:10]],
                count=len(retry),
            )
            plain = [
                ItemRequest(r.handle, r.node_id, r.sampling_interval_ms, r.queue_size, None)
                for r in retry
            ]
            retried = {r.handle for r in retry}
            refused = [p for p in refused if p[0] not in retried]
            refused += await subscription.add_items(plain)
        self._counters.last_subscribe_s = self._clock.monotonic() - started
        return [
            Unresolved(self._order[h - 1], f"monitored item refused: {status_name(code)}", code)
            for h, code in refused
        ]

    def _item(self, handle: int, name: str) -> ItemRequest:
        tag, source = self._tags[name], self._source
        sampling = tag.sampling_interval_s
        return ItemRequest(
            handle,
            self._node_ids[name],
            (source.sampling_interval_s if sampling is None else sampling) * 1000.0,
            source.queue_size,
            deadband_filter(tag.deadband, tag.deadband_kind),
        )

    # -- serving -------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._inbox.wake.set()

    async def serve(self, emit: SampleSink) -> NoReturn:
        """Emit until the session ends; then raise ConnectionLostError saying why."""
        helpers = [asyncio.create_task(self._watch_state())]
        if self._subscription is not None:
            helpers.append(asyncio.create_task(self._watchdog(self._subscription)))
        try:
            if self._subscription is not None:
                while True:
                    await self._inbox.wake.wait()
                    self._inbox.wake.clear()
                    self._drain(emit)
                    if self._lost is not None:
                        raise ConnectionLostError(f"{self._source.endpoint}: {self._lost}")
            await self._poll(emit)
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._drain(emit)

    def _drain(self, emit: SampleSink) -> None:
        inbox, counters, now = self._inbox, self._counters, self._clock.now()
        batches, inbox.batches = inbox.batches, []
        for items in batches:
            out: list[Sample] = []
            counters.notifications_received += len(items)
            unknown, overflows = self._maker.from_notifications(items, now, out)
            if unknown:
                counters.dropped += unknown
                self._notes.once(
                    "unknown",
                    "opcua_notifications_dropped",
                    count=unknown,
                    reason="unknown client handle",
                )
            if overflows:
                counters.server_overflows += overflows
                self._notes.once(
                    "overflow",
                    "opcua_server_queue_overflowed",
                    count=overflows,
                    hint="raise queue_size or sampling_interval_s",
                )
            if out:
                emit(out)
                counters.samples_emitted += len(out)
        statuses, inbox.statuses = inbox.statuses, []
        for code in statuses:
            if code >= 0x80000000:
                self._fail(f"the server ended the subscription ({status_name(code)})")
        self._count_liveness()

    def _count_liveness(self) -> None:
        """Add this session's keep-alives and sequence gaps to the lifetime counters."""
        subscription, counters = self._subscription, self._counters
        if subscription is not None:
            keepalives, gaps = subscription.keepalives, subscription.sequence_gaps
            counters.keepalives += keepalives - self._seen[0]
            if gaps > self._seen[1]:
                counters.sequence_gaps += gaps - self._seen[1]
                self._notes.once("gap", "opcua_notifications_missed", missing_messages=gaps)
            self._seen = (keepalives, gaps)

    async def _watch_state(self) -> None:
        async with self.client.subscribe_state() as states:
            if self.client.uaclient.state in _GONE:
                self._fail(_CLOSED)
            while True:
                if await states.next_change() in _GONE:
                    self._fail(_CLOSED)

    async def _watchdog(self, subscription: FastSubscription) -> None:
        revised = subscription.revised
        interval_s = (revised.RevisedPublishingInterval if revised else 1000.0) / 1000.0
        keepalive = revised.RevisedMaxKeepAliveCount if revised else 1
        intervals = max(self._source.watchdog_intervals, keepalive + 2)
        window = intervals * interval_s
        while True:
            await self._clock.sleep(max(interval_s / 2, 0.01))
            self._count_liveness()  # keep-alives do not wake the pump
            silent = self._clock.monotonic() - subscription.last_alive
            if silent > window:
                self._counters.watchdog_trips += 1
                self._fail(
                    f"watchdog: no data and no keep-alive for {intervals} publishing "
                    f"intervals ({silent:.1f} s)"
                )
                return

    async def _poll(self, emit: SampleSink) -> NoReturn:
        interval = self._source.poll_interval_s
        due = self._clock.monotonic()
        while True:
            if self._lost is not None:
                raise ConnectionLostError(f"{self._source.endpoint}: {self._lost}")
            out, self.first_read = self.first_read or await self.read_samples(), []
            self._counters.polls += 1
            if out:
                emit(out)
                self._counters.samples_emitted += len(out)
            now = self._clock.monotonic()
            due = max(due + interval, now)  # behind: skip the missed scans rather than burst
            await self._sleep_or_wake(due - now)

    async def _sleep_or_wake(self, seconds: float) -> None:
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._clock.sleep(seconds)),
            asyncio.ensure_future(self._inbox.wake.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def read_samples(self) -> list[Sample]:
        """One Read of every resolved tag, as Samples (Bad ones keep the server's status)."""
        values: list[ua.DataValue] = []
        for start in range(0, len(self._order), _READ_CHUNK):
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            for name in self._order[start : start + _READ_CHUNK]:
                item = ua.ReadValueId()
                item.NodeId, item.AttributeId = self._node_ids[name], AttributeIds.Value
                params.NodesToRead.append(item)
            with library_errors(f"reading {self._source.endpoint}"):
                values += await self.client.uaclient.session.read(params)
        out: list[Sample] = []
        self._maker.from_reads(values, self._clock.now(), out)
        return out

    # -- writes --------------------------------------------------------------------------

    async def write(self, name: str, raw: float | int | bool) -> tuple[ua.Variant, int]:
        """Write `raw` as the node's own type, value alone; (variant sent, status code)."""
        node_id = self._node_ids.get(name)
        if node_id is None:
            why = self._unresolved.get(name, "not resolved in this session")
            raise WriteRejectedError(f"cannot write {name}: {why}")
        return await self._writer.write(name, node_id, raw)
