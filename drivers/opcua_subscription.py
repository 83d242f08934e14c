"""One OPC UA subscription that takes every publish response whole, and its liveness.

Owns: an asyncua `Subscription` subclass whose `publish_callback` receives each
PublishResult once and hands the DataChangeNotification's item list, untouched, to an
`Inbox` (no task per item, no bounded queue, no per-item handler call); the liveness
signal of the subscription (monotonic time of the last publish response: data or
keep-alive); the server-side loss signals (gaps in the NotificationMessage sequence
numbers); the subscription parameters derived from a source (keep-alive count from the
watchdog); batched creation of monitored items.
Must not: convert values (drivers.opcua_values does, in the session's task), raise inside
`publish_callback` (asyncua would log and drop the batch), or drop anything: the Inbox is
unbounded on purpose, its consumer runs on the same event loop right after each publish.
Invariants: every DataChangeNotification item the server delivers ends up in the Inbox,
counted in `received`; a keep-alive and a data message both refresh `last_alive`; a
StatusChangeNotification is passed on, never ignored.

Why not asyncua's handler or iterator API (asyncua 2.1): the handler path creates one
asyncio Task per monitored-item notification (~20 us each), and the iterator path puts
each item into a bounded queue that silently drops the oldest on overflow.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.common.subscription import Subscription
from asyncua.ua.attribute_ids import AttributeIds

from agent.config.settings import OpcUaSource
from drivers.opcua_connect import library_errors

__all__ = ["FastSubscription", "Inbox", "ItemRequest", "subscription_parameters"]

_CREATE_CHUNK = 1000


@dataclass
class Inbox:
    """Raw notification batches and status changes waiting for the session's task."""

    batches: list[list[Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, items: list[Any]) -> None:
        self.batches.append(items)
        self.wake.set()

    def status(self, code: int) -> None:
        self.statuses.append(code)
        self.wake.set()


class _NoHandler:
    """Placeholder handler: puts asyncua's Subscription in callback mode (no queue)."""


@dataclass(frozen=True)
class ItemRequest:
    """One monitored item to create: our client handle, node, sampling, queue, filter."""

    handle: int
    node_id: ua.NodeId
    sampling_interval_ms: float
    queue_size: int
    filter: ua.DataChangeFilter | None


def subscription_parameters(source: OpcUaSource) -> ua.CreateSubscriptionParameters:
    """Publishing interval from the source; keep-alives often enough for the watchdog.

    A keep-alive arrives at the latest every `keepalive` publishing intervals while no data
    changes; the watchdog trips after `watchdog_intervals` silent ones, so keepalive is
    about half of that (and at least 1). Lifetime: 3 x keep-alive or one minute.
    """
    interval_ms = source.publishing_interval_s * 1000.0
    keepalive = max(1, (source.watchdog_intervals - 1) // 2)
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = interval_ms
    params.RequestedMaxKeepAliveCount = keepalive
    params.RequestedLifetimeCount = max(3 * keepalive, math.ceil(60_000 / interval_ms))
    params.MaxNotificationsPerPublish = 0  # no limit: the server may still cap it
    params.PublishingEnabled = True
    params.Priority = 0
    return params


class FastSubscription(Subscription):
    """A Subscription whose publish responses go whole into an Inbox (see module doc)."""

    def __init__(
        self,
        session: UaSession,
        params: ua.CreateSubscriptionParameters,
        *,
        inbox: Inbox,
        monotonic: Callable[[], float],
    ) -> None:
        super().__init__(session, params, cast(Any, _NoHandler()))
        self._inbox = inbox
        self._monotonic = monotonic
        self.last_alive = monotonic()
        self.received = 0
        self.keepalives = 0
        self.sequence_gaps = 0
        self._last_sequence: int | None = None
        self.revised: ua.CreateSubscriptionResult | None = None

    async def start(self) -> ua.CreateSubscriptionResult:
        """Create the subscription on the server; keep the revised parameters."""
        with library_errors("creating a subscription"):
            self.revised = await self.init()
        self.last_alive = self._monotonic()
        return self.revised

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_alive = self._monotonic()
        message = publish_result.NotificationMessage
        data = message.NotificationData
        if not data:
            self.keepalives += 1
            return
        sequence = int(message.SequenceNumber)
        previous = self._last_sequence
        if sequence and previous is not None and sequence > previous + 1:
            self.sequence_gaps += sequence - previous - 1
        if sequence:
            self._last_sequence = sequence
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                items = notification.MonitoredItems or []
                self.received += len(items)
                self._inbox.put(items)
            elif isinstance(notification, ua.StatusChangeNotification):
                self._inbox.status(notification.Status.value)

    async def add_items(self, requests: Sequence[ItemRequest]) -> list[tuple[int, int]]:
        """Create monitored items in batches; return (handle, status) of each one refused."""
        refused: list[tuple[int, int]] = []
        for start in range(0, len(requests), _CREATE_CHUNK):
            chunk = requests[start : start + _CREATE_CHUNK]
            with library_errors("creating monitored items"):
                results = await self.create_monitored_items([_mir(r) for r in chunk])
            for request, result in zip(chunk, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    refused.append((request.handle, result.value))
        return refused


def _mir(request: ItemRequest) -> ua.MonitoredItemCreateRequest:
    item = ua.ReadValueId()
    item.NodeId = request.node_id
    item.AttributeId = AttributeIds.Value
    params = ua.MonitoringParameters()
    params.ClientHandle = request.handle
    params.SamplingInterval = request.sampling_interval_ms
    params.QueueSize = request.queue_size
    params.DiscardOldest = True
    if request.filter is not None:
        params.Filter = request.filter
    mir = ua.MonitoredItemCreateRequest()
    mir.ItemToMonitor = item
    mir.MonitoringMode = ua.MonitoringMode.Reporting
    mir.RequestedParameters = params
    return mir
