"""The sync API's HTTP boundary: the httpx client, one block POST, httpx errors mapped once.

Owns: building the ``httpx.AsyncClient`` from ``[sync]`` (TLS verification always on, an
optional CA bundle, an optional client certificate, the bearer token as a default header,
proxies from the environment, the timeout, the connection pool), POSTing one block, mapping
httpx exceptions into ``agent.errors`` and reading the answer (status, Retry-After, detail,
duplicate or not).

Must not: decide what an answer means (``agent.core.sync_policy`` does), retry, sleep or log;
put the token anywhere but the ``Authorization`` header (never a message, never an error).

Invariants: ``post_block`` returns an ``Answer`` for every HTTP status and raises only
``DeviceTimeoutError`` (no answer in time) or ``ConnectionLostError`` (connect, TLS, proxy or
protocol failure); ``maybe_delivered`` tells the failures after which the receiver may have
stored the block (the request went out, the answer did not come back) from those before;
``build_client`` raises ``ConfigError`` naming the ``[sync]`` key of an unreadable CA bundle
or client certificate, and never prompts for a key's password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from agent.core.sync_policy import BLOCK_MEDIA_TYPE
from agent.errors import ConfigError, ConfigProblem, ConnectionLostError, DeviceTimeoutError
from agent.settings import SyncSection

__all__ = ["Answer", "build_client", "maybe_delivered", "post_block", "tls_context"]

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


def tls_context(sync: SyncSection, base_dir: Path) -> ssl.SSLContext | bool:
    """True (httpx's default trust) unless a CA bundle or a client certificate is set."""
    if sync.ca_file is None and sync.client_cert_file is None:
        if sync.client_key_file is not None:
            raise _problem("sync.client_cert_file", "set with sync.client_key_file", "none")
        return True
    ca = _resolve(sync.ca_file, base_dir)
    try:
        context = (
            ssl.create_default_context(cafile=str(ca))
            if ca is not None
            else httpx.create_ssl_context(trust_env=True)
        )
    except (OSError, ssl.SSLError) as exc:
        raise _problem("sync.ca_file", "a readable PEM CA bundle", f"{ca}: {exc}") from exc
    cert = _resolve(sync.client_cert_file, base_dir)
    key = _resolve(sync.client_key_file, base_dir)
    if cert is not None:
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except (OSError, ssl.SSLError) as exc:
            expected = "a PEM certificate and its unencrypted key (sync.client_key_file)"
            raise _problem("sync.client_cert_file", expected, f"{cert}: {exc}") from exc
    return context


def _resolve(path: Path | None, base_dir: Path) -> Path | None:
    return path if path is None or path.is_absolute() else base_dir / path


def _problem(key: str, expected: str, found: str) -> ConfigError:
    return ConfigError([ConfigProblem("sync", key, expected, found)])


def _no_password() -> bytes:
    """An encrypted key fails to load instead of prompting on a terminal."""
    return b""
