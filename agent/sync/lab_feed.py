"""Lab results forwarded by the cloud: pulled over the sync channel from where the agent left
off (`[quality] cloud = true`; docs/operations.md "Connecting the LIMS", docs/sync-api.md).

Owns: the ``LabFeed.run`` loop. Every ``poll_interval_s`` it GETs
``{url}/v1/agents/{id}/lab_results?after=<cursor>&limit=<n>`` (at once again while full pages
come back), turns each result into a ``LabResult`` (source "cloud"; no product: the default
product; no entry time: the time it was pulled), ingests the batch and then persists the
cursor in the store's meta key ``lab_feed_cursor``.
Must not: judge a result against another (the injected ``ingest`` and the store do), write
anything to the cloud, or put the token anywhere but the client's ``Authorization`` header.

Invariants:
- The cursor is persisted only after ``ingest`` returned: a crash in between fetches the batch
  again after the restart, and the store recognises its results as duplicates (stored once;
  one left pending is joined and forwarded then: agent.quality.truth). The cursor never goes back.
- The same sample id and test twice in one page: the later one wins (the earlier is counted
  "superseded"), so a page fetched again after a crash is all duplicates. Results are
  ingested in cursor order.
- A result the agent cannot read (a field missing or of the wrong type) is logged WARNING
  "lab_feed_result_refused" and passed over, so one bad entry never stops the feed.
- Failures (no answer, any status but 200, an answer that is not the documented JSON, a store
  error) never escape ``run()``: the shared backoff sets the next try (honouring Retry-After),
  the first failure logs WARNING "lab_feed_failed", repeats DEBUG, recovery INFO
  "lab_feed_recovered". Cancellation escapes at once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from agent.config.settings import SyncSection
from agent.domain.backoff import Backoff
from agent.domain.clock import Clock
from agent.domain.errors import (
    ConfigError,
    ConfigProblem,
    ConnectionLostError,
    DeviceTimeoutError,
    RetryableError,
)
from agent.domain.logger import get_logger
from agent.quality.results import Ingested, LabResult
from agent.sync import http as sync_http
from agent.sync import policy as sync_policy

__all__ = ["CURSOR_KEY", "LabFeed", "MetaStore"]

CURSOR_KEY = "lab_feed_cursor"
Ingest = Callable[[Sequence[LabResult]], Awaitable[list[Ingested]]]
_log = get_logger(__name__)


class MetaStore(Protocol):
    """Where the cursor is kept (agent.quality.store.QualityStore has it)."""

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...


class LabFeed:
    """See the module docstring; ``run()`` is the long-running task."""

    def __init__(
        self,
        sync: SyncSection,
        agent_id: str,
        *,
        token: SecretStr | None,
        base_dir: Path,
        store: MetaStore,
        ingest: Ingest,
        clock: Clock,
        poll_interval_s: float,
        default_product: str,
        page: int = 500,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        if sync.url is None:
            raise ConfigError([ConfigProblem("sync", "sync.url", "the receiver's URL", "none")])
        self._sync, self._token, self._base_dir, self._transport = sync, token, base_dir, transport
        self._url = f"{sync.url.rstrip('/')}/v1/agents/{quote(agent_id, safe='')}/lab_results"
        self._store, self._ingest, self._clock = store, ingest, clock
        self._interval, self._product, self._page = poll_interval_s, default_product, page
        self._backoff = backoff if backoff is not None else Backoff()
        self._rand = rand if rand is not None else random.Random().random  # noqa: S311 (jitter)
        self._cursor: int | None = None  # read from the store at the first cycle
        self._failures = 0

    async def run(self) -> None:
        """Pull forever; returns only by cancellation."""
        client = sync_http.build_client(
            self._sync,
            token=self._token,
            base_dir=self._base_dir,
            concurrency=1,
            transport=self._transport,
        )
        async with client:
            while True:
                await self._clock.sleep(await self._cycle(client))

    async def _cycle(self, client: httpx.AsyncClient) -> float:
        """Pull until a page is not full; the seconds to wait before the next cycle."""
        try:
            while await self._pull(client) >= self._page:
                pass
        except RetryableError as exc:
            delay = self._backoff.delay_with_hint(self._failures, self._rand(), exc.retry_after_s)
            self._failures += 1
            log = _log.warning if self._failures == 1 else _log.debug
            log("lab_feed_failed", error=str(exc), attempt=self._failures, retry_in_s=delay)
            return delay
        if self._failures:
            _log.info("lab_feed_recovered", after_failures=self._failures)
            self._failures = 0
        return self._interval

    async def _pull(self, client: httpx.AsyncClient) -> int:
        """One page: fetched, ingested, cursor persisted; how many results it held."""
        if self._cursor is None:
            self._cursor = _cursor_of(await self._store.get_meta(CURSOR_KEY))
        items, cursor = await self._fetch(client, self._cursor)
        latest: dict[tuple[str, str], LabResult] = {}
        refused = 0
        for item in items:
            if (result := self._result(item)) is None:
                refused += 1
                continue
            latest.pop((result.sample_id, result.test), None)  # the later one wins
            latest[(result.sample_id, result.test)] = result
        results = list(latest.values())
        outcomes = await self._ingest(results) if results else []
        if cursor > self._cursor:
            await self._store.set_meta(CURSOR_KEY, str(cursor))
            self._cursor = cursor
        if items:
            _log.info(
                "lab_feed_read",
                results=len(items),
                new=sum(o is Ingested.NEW for o in outcomes),
                duplicates=sum(o is Ingested.DUPLICATE for o in outcomes),
                corrections=sum(o is Ingested.CORRECTION for o in outcomes),
                superseded=len(items) - len(results) - refused,
                refused=refused,
                cursor=self._cursor,
            )
        return len(items)

    async def _fetch(self, client: httpx.AsyncClient, after: int) -> tuple[list[Any], int]:
        params = {"after": str(after), "limit": str(self._page)}
        try:
            response = await client.get(self._url, params=params)
        except httpx.TimeoutException as exc:
            raise DeviceTimeoutError(f"{type(exc).__name__}: the cloud did not answer") from exc
        except httpx.RequestError as exc:
            raise ConnectionLostError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            outcome = sync_policy.classify(
                response.status_code, response.headers.get("retry-after"), self._clock.now()
            )
            retry = outcome.verdict is sync_policy.Verdict.RETRY  # 401/404/5xx... name a cause
            reason = outcome.reason if retry else f"HTTP {response.status_code}"
            raise RetryableError(f"{reason} (lab results)", retry_after_s=outcome.retry_after_s)
        try:
            body = response.json()
        except ValueError:
            body = None
        items = body.get("results") if isinstance(body, dict) else None
        cursor = body.get("cursor") if isinstance(body, dict) else None
        if not isinstance(items, list) or type(cursor) is not int or cursor < 0:
            raise RetryableError(
                "the cloud's lab results answer is not {'results': [...], 'cursor': <int>}"
            )
        return items, cursor

    def _result(self, item: Any) -> LabResult | None:
        try:
            result = LabResult(
                sample_id=_text(item, "sample_id"),
                sample_time=_number(item, "sample_time"),
                window_s=_number(item, "window_s", positive=True),
                product=_text(item, "product", empty=True) or self._product,
                test=_text(item, "test"),
                value=_number(item, "value"),
                unit=_text(item, "unit", empty=True),
                entry_time=_number(item, "entry_time", default=self._clock.now()),
                source="cloud",
            )
        except ValueError as exc:
            cursor = item.get("cursor") if isinstance(item, dict) else None
            _log.warning("lab_feed_result_refused", cursor=cursor, reason=str(exc))
            return None
        return result


def _cursor_of(stored: str | None) -> int:
    return int(stored) if stored is not None and stored.isdigit() else 0


def _text(item: Any, key: str, *, empty: bool = False) -> str:
    value = item.get(key, "" if empty else None) if isinstance(item, dict) else None
    if not isinstance(value, str) or not (empty or value):
        raise ValueError(f"{key}: expected text, found {value!r}")
    return value


def _number(item: Any, key: str, *, default: float | None = None, positive: bool = False) -> float:
    value = item.get(key, default) if isinstance(item, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, found {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{key}: expected a number > 0, found {value!r}")
    return float(value)
