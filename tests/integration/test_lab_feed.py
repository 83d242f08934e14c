"""Lab results forwarded by the cloud (agent.sync.lab_feed) against the real reference
receiver on 127.0.0.1 and the real quality.db.

A LIMS integration's side is plain HTTP against the receiver (POST the results); the agent
side (`LabFeed`) runs on a FakeClock, polling every 60 s of fake time, and the waits follow
what reached the store.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent.config.settings import SyncSection
from agent.demo.cloud import CloudReceiver
from agent.domain.backoff import Backoff
from agent.domain.clock import FakeClock
from agent.quality.results import Ingested, LabResult
from agent.quality.store import QualityStore
from agent.sync.lab_feed import CURSOR_KEY, LabFeed
from tests.support.logs import events
from tests.support.tasks import running

AGENT = "plant-1"
TOKEN = SecretStr("t0ken-for-lab-feed-tests")
POLL_S = 60.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def result(sample_id: str, test: str, value: Any, **fields: Any) -> dict[str, Any]:
    return {"sample_id": sample_id, "sample_time": "2026-10-25T02:30:00+01:00",
            "window_s": 14400, "product": "CEM I 42,5 R", "test": test, "value": value,
            "unit": "MPa", "entry_time": 1793000000} | fields  # fmt: skip


class Rig:
    def __init__(self, tmp_path: Path, store: QualityStore, clock: FakeClock) -> None:
        self.tmp, self.store, self.clock = tmp_path, store, clock
        self.ingested: list[LabResult] = []

    async def ingest(self, results: Sequence[LabResult]) -> list[Ingested]:
        self.ingested.extend(results)
        return [(await self.store.put_result(r)).outcome for r in results]

    def feed(self, cloud: CloudReceiver, **options: Any) -> LabFeed:
        return LabFeed(
            SyncSection(url=cloud.url, timeout_s=5.0),
            AGENT,
            token=options.pop("token", TOKEN),
            base_dir=self.tmp,
            store=self.store,
            ingest=self.ingest,
            clock=self.clock,
            poll_interval_s=POLL_S,
            default_product="CEM II/B-S 42,5 N",
            backoff=Backoff(initial_s=1.0, max_s=8.0),
            rand=lambda: 0.5,
            **options,
        )

    async def until(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        """Advance fake time a second at a time until `check`, letting real I/O run."""
        deadline = time.monotonic() + 30.0
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within 30 s: {what} (fake t={self.clock.monotonic()})")
            await self.clock.advance(1.0)

    async def stored(self, n: int) -> bool:
        return await self.store.result_count() >= n


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock(now=utc(2026, 10, 27, 6, 0))
    store = await QualityStore.open(tmp_path / "quality.db", clock=clock)
    try:
        yield Rig(tmp_path, store, clock)
    finally:
        await store.close()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudReceiver]:
    async with CloudReceiver(tmp_path / "cloud", token=TOKEN) as receiver:
        yield receiver


async def post(cloud: CloudReceiver, *results: dict[str, Any], token: str | None = None) -> Any:
    auth = token if token is not None else TOKEN.get_secret_value()
    async with httpx.AsyncClient(base_url=cloud.url) as lims:
        return await lims.post(
            f"/v1/agents/{AGENT}/lab_results",
            json={"results": list(results)},
            headers={"Authorization": f"Bearer {auth}"},
        )


def feed_events(logs: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [e for e in events(logs) if e["event"] == name]


async def test_posted_results_reach_the_store_in_utc_from_the_cloud(
    rig: Rig, cloud: CloudReceiver, logs: io.StringIO
) -> None:
    answer = await post(
        cloud,
        result("S-1", "s2", 28.4),  # ISO with offset
        result(
            "S-2",
            "blaine",
            3850,
            sample_time=utc(2026, 10, 25, 3),
            window_s=3600,
            product="",
            unit="cm2/g",
            entry_time="2026-10-25T06:00:00Z",
        ),
    )
    assert (answer.status_code, answer.json()["count"]) == (201, 2)
    async with running(rig.feed(cloud).run):
        await rig.until(lambda: _read_events(logs, 2), "both results read")
    s1 = await rig.store.result("S-1", "s2")
    s2 = await rig.store.result("S-2", "blaine")
    assert s1 is not None and s2 is not None
    assert (s1.sample_time, s1.window_s, s1.product, s1.value, s1.unit, s1.entry_time) == (
        utc(2026, 10, 25, 1, 30), 14400.0, "CEM I 42,5 R", 28.4, "MPa", 1793000000.0)  # fmt: skip
    assert (s2.sample_time, s2.window_s, s2.product, s2.value, s2.entry_time) == (
        utc(2026, 10, 25, 3), 3600.0, "CEM II/B-S 42,5 N", 3850.0, utc(2026, 10, 25, 6))  # fmt: skip
    assert {s1.source, s2.source} == {"cloud"}
    assert await rig.store.get_meta(CURSOR_KEY) == str(answer.json()["cursor"])
    [read] = feed_events(logs, "lab_feed_read")
    assert (read["results"], read["new"], read["duplicates"], read["refused"]) == (2, 2, 0, 0)
    assert TOKEN.get_secret_value() not in logs.getvalue()


async def test_a_bad_result_is_refused_by_the_cloud_naming_the_field(
    cloud: CloudReceiver,
) -> None:
    cases = [
        (result("S-1", "s2", 28.4, sample_time="25.10.2026 02:30"), "sample_time"),
        (result("S-1", "s2", 28.4, sample_time="2026-10-25T02:30:00"), "sample_time"),
        (result("S-1", "28d strength", 28.4), "test"),
        (result("S-1", "s2", "NaN"), "value"),
        (result("S-1", "s2", 28.4, window_s=0), "window_s"),
        ({k: v for k, v in result("S-1", "s2", 28.4).items() if k != "sample_id"}, "sample_id"),
    ]
    for bad, field in cases:
        answer = await post(cloud, result("S-0", "s2", 30.0), bad)
        assert answer.status_code == 422, bad
        assert [d["loc"] for d in answer.json()["detail"]] == [["body", "results", 1, field]]
    assert (await post(cloud, result("S-1", "s2", 28.4), token="wrong")).status_code == 401
    async with httpx.AsyncClient(base_url=cloud.url) as agent:
        pulled = await agent.get(
            f"/v1/agents/{AGENT}/lab_results",
            headers={"Authorization": f"Bearer {TOKEN.get_secret_value()}"},
        )
    assert pulled.json() == {"results": [], "cursor": 0}  # none of the bad batches was kept


async def test_the_cursor_survives_a_restart_and_a_lost_cursor_only_makes_duplicates(
    rig: Rig, cloud: CloudReceiver, logs: io.StringIO
) -> None:
    await post(cloud, result("S-1", "s2", 28.4), result("S-2", "s2", 29.0))
    async with running(rig.feed(cloud).run):
        await rig.until(lambda: _cursor_is(rig, 2), "the first two read")
    await post(cloud, result("S-3", "s2", 27.5), result("S-1", "s2", 28.9))  # S-1 corrected
    async with running(rig.feed(cloud, page=1).run):  # the agent restarted; one per page
        await rig.until(lambda: _cursor_is(rig, 4), "the cursor past the correction")
    assert [r.sample_id for r in rig.ingested] == ["S-1", "S-2", "S-3", "S-1"]
    corrected = await rig.store.result("S-1", "s2")
    assert corrected is not None and (corrected.value, corrected.revision) == (28.9, 1)

    await rig.store.set_meta(CURSOR_KEY, "0")  # as if a crash came before the cursor was kept
    async with running(rig.feed(cloud).run):
        await rig.until(lambda: _read_events(logs, 4), "everything fetched again")
    again = feed_events(logs, "lab_feed_read")[-1]
    assert (again["results"], again["superseded"], again["duplicates"]) == (4, 1, 3)
    assert (again["new"], again["corrections"], again["refused"]) == (0, 0, 0)
    assert await rig.store.result_count() == 3
    kept = await rig.store.result("S-1", "s2")
    assert kept is not None and (kept.value, kept.revision) == (28.9, 1)  # unchanged


async def _cursor_is(rig: Rig, cursor: int) -> bool:
    return await rig.store.get_meta(CURSOR_KEY) == str(cursor)


async def _read_events(logs: io.StringIO, results: int) -> bool:
    return any(e["results"] == results for e in feed_events(logs, "lab_feed_read"))


async def test_the_cloud_cut_is_one_warning_and_the_feed_catches_up_when_it_is_back(
    rig: Rig, tmp_path: Path, logs: io.StringIO
) -> None:
    async with CloudReceiver(tmp_path / "cloud", token=TOKEN) as cloud:
        port = cloud.port
        await post(cloud, result("S-1", "s2", 28.4))
    # the receiver is gone: the feed fails, backs off, keeps trying
    async with running(rig.feed(cloud).run) as task:
        await rig.until(lambda: _has(logs, "lab_feed_failed", 3), "three failed tries")
        async with CloudReceiver(tmp_path / "cloud", port=port, token=TOKEN) as back:
            await post(back, result("S-2", "s2", 29.0))
            await rig.until(lambda: rig.stored(2), "both results after the cut")
            await rig.until(lambda: _has(logs, "lab_feed_recovered", 1), "the recovery logged")
        assert not task.done()
    failed = feed_events(logs, "lab_feed_failed")
    assert [e["level"] for e in failed[:3]] == ["warning", "debug", "debug"]
    assert "ConnectError" in failed[0]["error"]
    assert [e["retry_in_s"] for e in failed[:3]] == [1.0, 2.0, 4.0]
    [recovered] = feed_events(logs, "lab_feed_recovered")
    assert recovered["level"] == "info" and recovered["after_failures"] >= 3
    assert TOKEN.get_secret_value() not in logs.getvalue()


async def _has(logs: io.StringIO, name: str, n: int) -> bool:
    return len(feed_events(logs, name)) >= n


async def test_a_refused_token_is_a_retried_failure_naming_the_cause(
    rig: Rig, cloud: CloudReceiver, logs: io.StringIO
) -> None:
    async with running(rig.feed(cloud, token=SecretStr("not-the-token")).run) as task:
        await rig.until(lambda: _has(logs, "lab_feed_failed", 2), "two refused tries")
        assert not task.done()
    failed = feed_events(logs, "lab_feed_failed")
    assert failed[0]["level"] == "warning"
    assert "unauthorized" in failed[0]["error"] and "check sync.token_file" in failed[0]["error"]
    assert "not-the-token" not in logs.getvalue()
