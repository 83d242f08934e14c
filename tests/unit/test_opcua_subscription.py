"""drivers.opcua_subscription (publish responses taken whole, liveness, losses), the
commissioning helpers of drivers.opcua_browse and the log rules of drivers.opcua_health.

The subscription is fed PublishResults directly, as asyncua's publish loop would: no
sockets (asyncua's UaSession is built, never connected).
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from asyncua import ua
from asyncua.client.ua_client import UaClient
from asyncua.ua.status_codes import StatusCodes
from structlog.testing import capture_logs

from agent.config.settings import OpcUaSource
from agent.domain.clock import FakeClock
from drivers.opcua_browse import BrowseRow, parse_security, render_tree
from drivers.opcua_health import Notes
from drivers.opcua_subscription import FastSubscription, Inbox, subscription_parameters


def publish(sequence: int, *notifications: Any) -> ua.PublishResult:
    result = ua.PublishResult()
    result.SubscriptionId = 1
    result.NotificationMessage.SequenceNumber = sequence
    result.NotificationMessage.NotificationData = list(notifications)
    return result


def datachange(count: int) -> ua.DataChangeNotification:
    items = []
    for handle in range(1, count + 1):
        item = ua.MonitoredItemNotification()
        item.ClientHandle = handle
        items.append(item)
    return ua.DataChangeNotification(MonitoredItems=items)


def make(clock: FakeClock) -> tuple[FastSubscription, Inbox]:
    inbox = Inbox()
    params = ua.CreateSubscriptionParameters()
    session = UaClient().session
    return FastSubscription(session, params, inbox=inbox, monotonic=clock.monotonic), inbox


async def test_a_publish_response_goes_whole_into_the_inbox() -> None:
    clock = FakeClock()
    subscription, inbox = make(clock)
    big = datachange(10_000)
    await clock.advance(3.0)
    await subscription.publish_callback(publish(1, big))
    assert inbox.batches == [big.MonitoredItems] and inbox.batches[0] is big.MonitoredItems
    assert subscription.received == 10_000 and inbox.wake.is_set()
    assert subscription.last_alive == 3.0


async def test_keep_alives_refresh_liveness_and_gaps_are_counted() -> None:
    clock = FakeClock()
    subscription, inbox = make(clock)
    await subscription.publish_callback(publish(1, datachange(2)))
    await clock.advance(5.0)
    await subscription.publish_callback(publish(2))  # keep-alive: no NotificationData
    assert (subscription.keepalives, subscription.last_alive) == (1, 5.0)
    await subscription.publish_callback(publish(5, datachange(1)))  # 2, 3 and 4 never came
    assert subscription.sequence_gaps == 3
    await subscription.publish_callback(publish(6, datachange(1)))
    assert subscription.sequence_gaps == 3 and len(inbox.batches) == 3


async def test_status_changes_are_passed_on() -> None:
    subscription, inbox = make(FakeClock())
    lost = ua.StatusChangeNotification(Status=ua.StatusCode(cast(Any, StatusCodes.BadShutdown)))
    await subscription.publish_callback(publish(0, lost))  # as asyncua informs on a loss
    assert inbox.statuses == [StatusCodes.BadShutdown] and subscription.sequence_gaps == 0


@pytest.mark.parametrize(("interval", "watchdog", "keepalive", "lifetime"), [
    (1.0, 10, 4, 60), (0.1, 2, 1, 600), (5.0, 5, 2, 12), (1.0, 1000, 499, 1497),
])  # fmt: skip
def test_keep_alives_come_often_enough_for_the_watchdog(
    interval: float, watchdog: int, keepalive: int, lifetime: int
) -> None:
    source = OpcUaSource(kind="opcua", name="s", endpoint="opc.tcp://plc:4840",
                         publishing_interval_s=interval, watchdog_intervals=watchdog)  # fmt: skip
    params = subscription_parameters(source)
    assert params.RequestedPublishingInterval == interval * 1000
    assert (params.RequestedMaxKeepAliveCount, params.RequestedLifetimeCount) == (
        keepalive, lifetime)  # fmt: skip
    assert params.RequestedMaxKeepAliveCount < watchdog
    assert params.RequestedLifetimeCount >= 3 * params.RequestedMaxKeepAliveCount


def test_security_text_of_the_cli() -> None:
    assert parse_security("None") == ("None", "None")
    assert parse_security("Basic256Sha256") == ("Basic256Sha256", "SignAndEncrypt")
    assert parse_security("Aes256_Sha256_RsaPss,Sign") == ("Aes256_Sha256_RsaPss", "Sign")
    for wrong in ("Basic128Rsa15", "Basic256Sha256,None", "None,Sign", ""):
        with pytest.raises(ValueError, match="POLICY"):
            parse_security(wrong)


def test_the_tree_is_indented_by_depth() -> None:
    rows = [
        BrowseRow(1, "nsu=urn:m;s=Plant", "Plant", "Object"),
        BrowseRow(2, "nsu=urn:m;s=Plant/F", "F", "Variable", "Double", "read/write"),
    ]
    assert render_tree(rows) == (
        "Plant  [Object]  nsu=urn:m;s=Plant\n"
        "  F  [Variable, Double, read/write]  nsu=urn:m;s=Plant/F\n"
    )
    assert render_tree([]) == ""


def test_unresolved_tags_warn_once_and_recover_with_info() -> None:
    notes = Notes("mill")
    many = [(f"T{i}", "namespace missing") for i in range(25)]
    with capture_logs() as logs:
        notes.tags(many, ["OK"])
        notes.tags(many, ["OK"])  # the next session: same problem, DEBUG
        notes.tags(many[1:], ["T0", "OK"])  # T0 is back
        notes.once("gap", "opcua_notifications_missed")
        notes.once("gap", "opcua_notifications_missed")
    levels = [(e["event"], e["log_level"]) for e in logs]
    assert levels == [
        ("opcua_tags_unresolved", "warning"), ("opcua_tags_unresolved", "debug"),
        ("opcua_tags_unresolved", "debug"), ("opcua_tags_resolved", "info"),
        ("opcua_notifications_missed", "warning"), ("opcua_notifications_missed", "debug"),
    ]  # fmt: skip
    assert len(logs[0]["tags"]) == 10 and logs[0]["more"] == 15 and logs[0]["count"] == 25
    assert logs[3]["tags"] == ["T0"]
