"""The sync API's HTTP boundary: the httpx client, one block POST, httpx errors mapped once.

Owns: building the ``httpx.AsyncClient`` from ``[sync]`` (TLS verification always on, an
optional CA bundle, an optional client certificate, the bearer token as a default header,
proxies from the environment, the timeout, the connection pool), POSTing one block, mapping
httpx exceptions into ``agent.domain.errors`` and reading the answer (status, Retry-After, detail,
duplicate or not).

Must not: decide what an answer means (``agent.sync.policy`` does), retry, sleep or log;
put the token anywhere but the ``Authorization`` header (never a message, never an error).

Invariants: ``post_block`` returns an ``Answer`` for every HTTP status and raises only
``DeviceTimeoutError`` (no answer in time) or ``ConnectionLostError`` (connect, TLS, proxy or
protocol failure); ``maybe_delivered`` tells the failures after which the receiver may have
stored the block (the request went out, the answer did not come back) from those before;
``build_client`` raises ``ConfigError`` naming the ``[sync]`` key of an unreadable CA bundle
or client certificate, and never prompts for a key's password.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from agent.config.settings import SyncSection
from agent.config.tls import tls_context
from agent.domain.errors import ConnectionLostError, DeviceTimeoutError
from agent.sync.policy import BLOCK_MEDIA_TYPE

__all__ = ["Answer", "build_client", "maybe_delivered", "post_block"]

_DETAIL_CHARS = 500


@dataclass(frozen=True)
class Answer:
    """The receiver's answer to one block: status, Retry-After, error detail, duplicate?"""

    status: int
    retry_after: str | None
    detail: str
    duplicate: bool


def build_client(
    sync: SyncSection,
    *,
    token: SecretStr | None,
    base_dir: Path,
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The client for ``sync.url``; relative TLS file paths are taken from ``base_dir``."""
    headers = {"Content-Type": BLOCK_MEDIA_TYPE, "User-Agent": "edge-agent"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token.get_secret_value()
    return httpx.AsyncClient(
        headers=headers,
        timeout=httpx.Timeout(sync.timeout_s),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        verify=tls_context(sync, base_dir) if transport is None else True,
        transport=transport,
        trust_env=True,  # HTTPS_PROXY / NO_PROXY, SSL_CERT_FILE when no CA bundle is set
        follow_redirects=False,
    )


async def post_block(client: httpx.AsyncClient, url: str, data: bytes) -> Answer:
    """POST one block's bytes to ``url``."""
    try:
        response = await client.post(url, content=data)
    except httpx.TimeoutException as exc:
        raise DeviceTimeoutError(f"{type(exc).__name__}: the receiver did not answer") from exc
    except httpx.RequestError as exc:  # connect, TLS, proxy, protocol, body decoding
        raise ConnectionLostError(f"{type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        detail = response.text[:_DETAIL_CHARS]
        return Answer(response.status_code, response.headers.get("retry-after"), detail, False)
    try:
        body = response.json()
    except ValueError:
        body = None
    duplicate = isinstance(body, dict) and body.get("status") == "duplicate"
    return Answer(response.status_code, None, "", duplicate)


def maybe_delivered(error: BaseException) -> bool:
    """Whether a failed ``post_block`` may have reached the receiver whole: the request was
    sent and then the answer timed out or the connection broke (not: connect, TLS, proxy,
    pool or write failures, after which no complete block arrived)."""
    cause = error.__cause__
    return isinstance(cause, (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError))
