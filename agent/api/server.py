"""The agent's local HTTP API: /healthz, /readyz, /metrics and /status, served by uvicorn.

Owns: the FastAPI app over one running agent (``create_api``), and ``serve_api``: binding the
configured address, running uvicorn inside the agent's event loop, and stopping it when
cancelled. /healthz answers 200 while no critical watched loop is stalled (503 naming them),
/readyz 200 once ``health.ready`` and while the buffer can keep what it is given (503 with
the detail: ``agent.api.status.readiness``), /metrics the Prometheus text format 0.0.4,
/status the document of ``agent.api.status``; with a truth loop, the operator's two actions
on it (agent.api.quality_routes: step a loop back up, promote its challenger).
Must not: change the agent's state (every endpoint is a read but those two operator actions,
which the truth loop and the control side audit), install signal handlers
(the agent owns SIGTERM/SIGINT: ``_HostedServer`` keeps uvicorn's hands off them), configure
logging (uvicorn runs with ``log_config=None``, so the agent's JSON logging applies), or
raise on a busy port (it logs why and tries again later).
Invariants: handlers are ``async def`` so they read the components on the event loop that
mutates them, never from a worker thread; a bind failure is one ERROR line naming the
address and the reason, repeats are DEBUG and a later success is INFO "api_listening";
cancelling ``serve_api`` stops uvicorn (closing the listening socket) before it re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from agent.api import metrics
from agent.api.quality_routes import add_quality_routes
from agent.api.quality_status import Promote, QualityView
from agent.api.status import StatusSource, build_status, readiness
from agent.config.settings import ApiSection
from agent.domain.backoff import Backoff
from agent.domain.logger import get_logger

__all__ = ["create_api", "serve_api"]

_log = get_logger(__name__)


def create_api(
    app: StatusSource, *, quality: QualityView | None = None, promote: Promote | None = None
) -> FastAPI:
    """The HTTP app over ``app`` (its own metrics registry; no OpenAPI docs pages);
    ``quality``: the truth loop, ``promote``: the control side's challenger promotion."""
    api = FastAPI(title="edge-agent", docs_url=None, redoc_url=None, openapi_url=None)
    registry = metrics.new_registry(app, quality)

    @api.get("/healthz")
    async def healthz() -> JSONResponse:
        stalled = app.health.stalled(app.clock.monotonic())
        if stalled:
            return JSONResponse({"status": "stalled", "stalled": stalled}, status_code=503)
        return JSONResponse({"status": "ok", "stalled": []})

    @api.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, detail = readiness(app)
        return JSONResponse({"ready": ready, "detail": detail}, status_code=200 if ready else 503)

    @api.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)

    @api.get("/status")
    async def status() -> JSONResponse:
        return JSONResponse(build_status(app, quality=quality))

    add_quality_routes(api, app, quality, promote)
    return api


class _HostedServer(uvicorn.Server):
    """uvicorn inside the agent's event loop: the agent owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _config(api: FastAPI) -> uvicorn.Config:
    options: dict[str, Any] = {"timeout_graceful_shutdown": 1, "server_header": False}
    return uvicorn.Config(api, log_config=None, access_log=False, lifespan="off", **options)


async def _bind_until_free(
    settings: ApiSection, app: StatusSource, backoff: Backoff
) -> socket.socket:
    rand = random.Random().random  # noqa: S311 (jitter, not security)
    failures = 0
    while True:
        try:
            sock = _bind(settings.host, settings.port)
        except OSError as exc:
            delay = backoff.delay(failures, rand())
            (_log.error if failures == 0 else _log.debug)(
                "api_bind_failed",
                host=settings.host,
                port=settings.port,
                error=exc.strerror or str(exc),
                hint="another process listens there: change [api] port, or set enabled = false",
                retry_in_s=round(delay, 3),
            )
            failures += 1
            await app.clock.sleep(delay)
            continue
        (_log.info if failures else _log.debug)(
            "api_listening", host=settings.host, port=sock.getsockname()[1]
        )
        return sock


async def serve_api(
    app: StatusSource,
    settings: ApiSection,
    *,
    backoff: Backoff | None = None,
    quality: QualityView | None = None,
    promote: Promote | None = None,
) -> None:
    """Serve the API on ``settings.host:port`` until cancelled (a busy port is retried)."""
    sock = await _bind_until_free(settings, app, backoff or Backoff(initial_s=1.0, max_s=60.0))
    server = _HostedServer(_config(create_api(app, quality=quality, promote=promote)))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="api:uvicorn")
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        server.should_exit = True
        await serving
        raise
    finally:
        sock.close()
