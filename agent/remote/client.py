"""Remote support through the sync: status reports out, desired state in, results back.

Owns: the ``RemoteSupport.run`` loop. Every ``status_interval_s`` it POSTs the status report
to ``{url}/v1/agents/{id}/status``, GETs ``{url}/v1/agents/{id}/desired`` (If-None-Match),
serves the allowed diagnostics (``agent.remote.diagnostics``) and POSTs each result to
``{url}/v1/agents/{id}/diagnostics/{request_id}``, delivers an offered model version
(``agent.remote.delivery``) and reports it to ``{url}/v1/agents/{id}/deliveries/{name}/
{version}``; it audits every request served or refused and every model delivered or rejected.

Must not: decide what is allowed (``agent.remote.policy`` does; the allowlist is fixed
in code), open a shell, run a command, write a tag, change a limit or a setting, activate a
model (the model manager does), or accept an inbound connection (the agent always calls).

Invariants:
- A request id is served or refused at most once (``SeenIds``); its result waits in a small
  outbox until the cloud acknowledged it. A document is marked done (ETag) only when every
  part of it was handled, so a failed model download is tried again.
- Cloud failures (no answer, 5xx, 401, ...) never escape ``run()``: the cycle stops, the
  shared backoff sets the next try (honouring Retry-After), the first failure logs WARNING,
  repeats DEBUG, recovery INFO. Cancellation escapes at once. The token stays in the
  client's default headers.

Construction: ``agent.service.remote_wiring.build_remote`` builds it from the settings and the
running agent (when ``[sync] enabled`` and ``remote_support`` are true): the status document
(``agent.api.status.build_status``), the audit log's ``record``, the model manager's folder
and the signing key, and ``Diagnostics`` over the settings, the configuration file, the
buffer's budget and a ``LogRing``; ``agent.service.app`` runs ``run()`` under its pipeline
supervisor as ``sync:remote_support``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
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
from agent.remote import delivery as remote_delivery
from agent.remote import policy as rp
from agent.remote.diagnostics import Diagnostics
from agent.sync import http as sync_http
from agent.sync import policy as sync_policy

__all__ = ["Audit", "RemoteSupport"]

Audit = Callable[[str, dict[str, Any]], Awaitable[None]]
_JSON = {"Content-Type": "application/json"}
_MAX_DESIRED_BYTES = 1024 * 1024
_log = get_logger(__name__)


class RemoteSupport:
    """See the module docstring; ``run()`` is the long-running task."""

    def __init__(
        self,
        sync: SyncSection,
        *,
        agent_id: str,
        token: SecretStr | None,
        clock: Clock,
        base_dir: Path,
        status_fn: Callable[[], dict[str, Any]],
        audit: Audit,
        models_dir: Path,
        public_key: Ed25519PublicKey | None,
        diagnostics: Diagnostics,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        rand: Callable[[], float] | None = None,
        result_cap_bytes: int = 1024 * 1024,
        outbox_size: int = 100,
    ) -> None:
        if sync.url is None:
            raise ConfigError([ConfigProblem("sync", "sync.url", "the receiver's URL", "none")])
        self._sync, self._clock, self._token, self._base_dir = sync, clock, token, base_dir
        self._base_url = sync.url.rstrip("/")
        self._agent = f"{self._base_url}/v1/agents/{quote(agent_id, safe='')}"
        self._status_fn, self._audit, self._diagnostics = status_fn, audit, diagnostics
        self._models_dir, self._public_key = models_dir, public_key
        self._transport = transport
        self._backoff = backoff if backoff is not None else Backoff()
        self._rand = rand if rand is not None else random.Random().random  # noqa: S311 (jitter)
        self._cap = result_cap_bytes
        self._outbox: deque[tuple[str, bytes]] = deque(maxlen=outbox_size)
        self._seen = rp.SeenIds()  # diagnostics ids, and keys of refusals without an id
        self._rejected = rp.SeenIds(100)  # model versions that failed a check
        self._etag: str | None = None
        self._done_digest: str | None = None
        self._failures = 0

    async def run(self) -> None:
        """Report, pull and serve forever; returns only by cancellation."""
        client = sync_http.build_client(
            self._sync,
            token=self._token,
            base_dir=self._base_dir,
            concurrency=2,
            transport=self._transport,
        )
        async with client:
            while True:
                await self._clock.sleep(await self._cycle(client))

    async def _cycle(self, client: httpx.AsyncClient) -> float:
        """One round; the seconds to wait before the next."""
        try:
            await self._flush(client)
            await self._post(client, f"{self._agent}/status", self._status_bytes())
            desired = await self._fetch_desired(client)
            if desired is not None:
                etag, digest, document = desired
                await self._apply(client, rp.parse_desired(document))
                self._etag, self._done_digest = etag, digest
            await self._flush(client)
        except RetryableError as exc:
            delay = self._backoff.delay_with_hint(self._failures, self._rand(), exc.retry_after_s)
            self._failures += 1
            log = _log.warning if self._failures == 1 else _log.debug
            log("remote_sync_failed", error=str(exc), attempt=self._failures, retry_in_s=delay)
            return delay
        if self._failures:
            _log.info("remote_sync_recovered", after_failures=self._failures)
            self._failures = 0
        return self._sync.status_interval_s

    def _status_bytes(self) -> bytes:
        data, cut = rp.json_bytes(self._status_fn(), self._cap)
        if cut:
            _log.warning("remote_status_truncated", cap_bytes=self._cap)
        return data

    # -- HTTP --------------------------------------------------------------------------------

    async def _request(self, client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Any:
        try:
            return await client.request(method, url, **kw)
        except httpx.TimeoutException as exc:
            raise DeviceTimeoutError(f"{type(exc).__name__}: the cloud did not answer") from exc
        except httpx.RequestError as exc:
            raise ConnectionLostError(f"{type(exc).__name__}: {exc}") from exc

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes) -> bool:
        """POST JSON; True when acknowledged, False when refused for good (a 4xx that a
        retry cannot fix: logged, dropped); raises ``RetryableError`` for the rest."""
        response = await self._request(client, "POST", url, content=body, headers=_JSON)
        outcome = sync_policy.classify(
            response.status_code, response.headers.get("retry-after"), self._clock.now()
        )
        if outcome.verdict is sync_policy.Verdict.ACK:
            return True
        if outcome.verdict is sync_policy.Verdict.QUARANTINE:
            detail = response.text[:300]
            _log.warning("remote_post_refused", url=url, status=response.status_code, detail=detail)
            return False
        raise RetryableError(f"{outcome.reason} ({url})", retry_after_s=outcome.retry_after_s)

    async def _fetch_desired(self, client: httpx.AsyncClient) -> tuple[str | None, str, Any] | None:
        headers = {"If-None-Match": self._etag} if self._etag is not None else {}
        response = await self._request(client, "GET", f"{self._agent}/desired", headers=headers)
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            outcome = sync_policy.classify(
                response.status_code, response.headers.get("retry-after"), self._clock.now()
            )
            retry = outcome.verdict is sync_policy.Verdict.RETRY  # 401/404/5xx... name a cause
            reason = outcome.reason if retry else f"HTTP {response.status_code}"
            raise RetryableError(f"{reason} (desired state)", retry_after_s=outcome.retry_after_s)
        raw = response.content[: _MAX_DESIRED_BYTES + 1]
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._done_digest:
            return None
        try:
            document: Any = json.loads(raw) if len(raw) <= _MAX_DESIRED_BYTES else None
        except ValueError:
            document = None  # refused by parse_desired as "expected an object"
        return response.headers.get("etag"), digest, document

    async def _flush(self, client: httpx.AsyncClient) -> None:
        while self._outbox:
            url, body = self._outbox[0]
            await self._post(client, url, body)
            self._outbox.popleft()

    def _send_later(self, url: str, body: dict[str, Any]) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            _log.warning("remote_result_dropped", url=self._outbox[0][0], reason="outbox full")
        self._outbox.append((url, rp.json_bytes(body, self._cap)[0]))

    # -- the document ------------------------------------------------------------------------

    async def _apply(self, client: httpx.AsyncClient, desired: rp.Desired) -> None:
        for refusal in desired.refusals:
            await self._refuse(refusal)
        for request in desired.diagnostics:
            if self._seen.add(request.id):
                await self._serve(request)
        await self._flush(client)  # results first: a model download may take a while, or fail
        if desired.model is not None:
            await self._deliver(client, desired.model)

    async def _refuse(self, refusal: rp.Refusal) -> None:
        key = refusal.id if refusal.id is not None else f"{refusal.subject}:{refusal.reason}"
        if not self._seen.add(key):
            return
        body: dict[str, Any] = {"id": refusal.id, "kind": refusal.kind, "subject": refusal.subject}
        body |= {"reason": refusal.reason, "time": self._clock.now()}
        await self._audit("remote_request_refused", body)
        _log.warning("remote_request_refused", **body)
        if refusal.id is not None:
            result = {**body, "status": "refused", "result": None}
            self._send_later(f"{self._agent}/diagnostics/{refusal.id}", result)

    async def _serve(self, request: rp.Diagnostic) -> None:
        status, result = await self._diagnostics.serve(request)
        data, cut = rp.json_bytes(result, self._cap - 4096)
        body: dict[str, Any] = {"id": request.id, "kind": request.kind, "args": dict(request.args)}
        body |= {"status": status, "time": self._clock.now(), "truncated": cut}
        await self._audit("remote_diagnostic_served", dict(body))
        _log.info("remote_diagnostic_served", **body)
        self._send_later(
            f"{self._agent}/diagnostics/{request.id}", body | {"result": json.loads(data)}
        )

    async def _deliver(self, client: httpx.AsyncClient, model: rp.ModelRequest) -> None:
        key = f"{model.name}/{model.version}"
        if key in self._rejected:
            return
        delivery = await remote_delivery.deliver(
            client, self._base_url, model, self._models_dir, self._public_key, now=self._clock.now()
        )
        if delivery.status == "present":
            return
        body: dict[str, Any] = {"model": model.name, "version": model.version}
        body["status"] = delivery.status
        body |= {"reason": delivery.reason, "sha256": delivery.sha256, "time": self._clock.now()}
        if delivery.status == "rejected":
            self._rejected.add(key)
            await self._audit("remote_model_rejected", dict(body))
            _log.warning("remote_model_rejected", **body)
        else:
            await self._audit(
                "remote_model_delivered", dict(body) | {"directory": delivery.directory}
            )
            _log.info("remote_model_delivered", **body)
        name, version = quote(model.name, safe=""), quote(model.version, safe="")
        self._send_later(f"{self._agent}/deliveries/{name}/{version}", body)
