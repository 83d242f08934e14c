"""The reference receiver's HTTP side: the FastAPI app implementing the sync API contract.

Owns: the routes (POST a block; read endpoints for tests and the demo; /healthz; the OpenAPI
schema at /openapi.json), bearer-token authentication, checking a block's header against its
URL, mapping store results to status codes and JSON bodies (docs/sync-api.md, "HTTP API"), and
decoding stored telemetry into sample rows whenever no block has arrived for ``IDLE_S``.

Must not: store anything itself (``cloud_store`` does), run a server (``cloud`` does), or echo
a token back in a response or a log line.

Invariants: a 2xx answer to a block POST means the block is committed; "stored" (201) is
answered once per identity and "duplicate" (200) for the same bytes again; a refusal always
carries ``{"status": "rejected", "error", "detail"}``; faults apply to block POSTs only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, SecretStr
from starlette.requests import ClientDisconnect

from agent.buffer import blocks
from agent.demo.cloud_faults import FaultMiddleware, FaultScript
from agent.demo.cloud_lab import add_lab_routes
from agent.demo.cloud_store import CloudStore
from agent.demo.cloud_support import add_support_routes
from agent.domain.errors import RejectedError
from agent.sync.policy import BLOCK_MEDIA_TYPE

__all__ = ["IDLE_S", "MAX_BLOCK_BYTES", "BlockAck", "Rejection", "create_app"]

MAX_BLOCK_BYTES = 64 * 1024 * 1024
IDLE_S = 0.25
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
AgentId = Annotated[str, PathParam(pattern=_ID)]
Epoch = Annotated[str, PathParam(pattern=_ID)]
Seq = Annotated[int, PathParam(ge=0)]
Limit = Annotated[int, Query(ge=1, le=100_000)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


class BlockAck(BaseModel):
    status: str  # "stored" | "duplicate"
    agent_id: str
    epoch: str
    seq: int
    kind: str
    count: int
    sha256: str


class Rejection(BaseModel):
    status: str = "rejected"
    error: str
    detail: str


class _Refused(Exception):  # noqa: N818 (an HTTP answer, not an error of ours)
    def __init__(self, status: int, error: str, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


_BLOCK_BODY = {
    "requestBody": {
        "required": True,
        "content": {BLOCK_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"model": Rejection, "description": text}
    for code, text in {
        400: "bad block or header/URL mismatch: the agent quarantines it",
        401: "missing or wrong bearer token: the agent keeps the block and retries",
        409: "this identity is stored with other bytes: the agent quarantines it",
        413: "block larger than the receiver accepts: the agent quarantines it",
        415: f"Content-Type is not {BLOCK_MEDIA_TYPE}",
    }.items()
}


def create_app(  # noqa: PLR0915 (one statement per route family it registers)
    store: CloudStore,
    *,
    token: SecretStr | None,
    faults: FaultScript,
    models_dir: Path | None = None,
) -> FastAPI:
    """The receiver as an ASGI app over ``store``; ``token`` None turns auth off; remote
    support (``support.db`` next to the store, model packages from ``models_dir``) included."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        decoder = asyncio.create_task(_decode_when_idle(store), name="cloud-decoder")
        try:
            yield
        finally:
            decoder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await decoder

    app = FastAPI(
        lifespan=lifespan,
        title="edge-agent sync API (reference receiver)",
        version="1",
        description="Blocks from plant edge agents, exactly once. See docs/sync-api.md.",
        redoc_url=None,
    )
    app.add_middleware(FaultMiddleware, script=faults)

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused) -> JSONResponse:
        body = Rejection(error=exc.error, detail=exc.detail).model_dump()
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    def authorised(credentials: Credentials) -> None:
        if token is None:
            return
        given = b"" if credentials is None else credentials.credentials.encode()
        if not hmac.compare_digest(given, token.get_secret_value().encode()):
            detail = "missing bearer token" if credentials is None else "wrong bearer token"
            raise _Refused(401, "unauthorized", detail, **{"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]
    add_support_routes(app, store.path.parent / "support.db", auth=auth, models_dir=models_dir)
    add_lab_routes(app, store.path.parent / "lab.db", auth=auth)

    @app.post(
        "/v1/agents/{agent_id}/blocks/{epoch}/{seq}",
        dependencies=auth,
        response_model=BlockAck,
        status_code=201,
        responses={200: {"model": BlockAck, "description": "duplicate"}, **_REFUSALS},
        openapi_extra=_BLOCK_BODY,
    )
    async def post_block(
        agent_id: AgentId,
        epoch: Epoch,
        seq: Seq,
        request: Request,
        response: Response,
    ) -> BlockAck:
        """Store one block; the body is the block's bytes exactly as the agent buffered them."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != BLOCK_MEDIA_TYPE:
            raise _Refused(415, "unsupported_media_type", f"expected {BLOCK_MEDIA_TYPE}")
        if int(request.headers.get("content-length") or 0) > MAX_BLOCK_BYTES:
            raise _Refused(413, "too_large", f"a block is at most {MAX_BLOCK_BYTES} bytes")
        try:
            data = await request.body()
        except ClientDisconnect as exc:  # nobody is left to read an answer
            raise _Refused(400, "client_disconnected", "the request was not complete") from exc
        try:
            header = blocks.read_header(data)
            if (header.epoch, header.seq) != (epoch, seq):
                raise _Refused(
                    400,
                    "header_mismatch",
                    f"the block says epoch {header.epoch!r} seq {header.seq}, "
                    f"the URL epoch {epoch!r} seq {seq}",
                )
            result = await asyncio.to_thread(store.put_block, agent_id, header, data)
        except RejectedError as exc:
            raise _Refused(400, "bad_block", str(exc)) from exc
        if result.status == "conflict":
            raise _Refused(409, "conflict", "this block identity is stored with other bytes")
        response.status_code = 201 if result.status == "stored" else 200
        return BlockAck(
            status=result.status,
            agent_id=agent_id,
            epoch=epoch,
            seq=seq,
            kind=result.kind.name.lower(),
            count=result.count,
            sha256=result.sha256,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/agents", dependencies=auth)
    async def agents() -> dict[str, list[str]]:
        return {"agents": await asyncio.to_thread(store.agents)}

    @app.get("/v1/agents/{agent_id}/counts", dependencies=auth)
    async def counts(agent_id: AgentId) -> dict[str, int]:
        """Blocks, bytes, decoded samples, samples waiting for their catalog, events."""
        return await asyncio.to_thread(store.counts, agent_id)

    @app.get("/v1/agents/{agent_id}/tags/{tag}/samples", dependencies=auth)
    async def samples(
        agent_id: AgentId,
        tag: str,
        since: float | None = None,
        limit: Limit = 1000,
    ) -> dict[str, Any]:
        rows = await asyncio.to_thread(store.samples, agent_id, tag, since=since, limit=limit)
        return {
            "tag": tag,
            "samples": [{"time": t, "value": v, "status": s} for _, t, v, s in rows],
        }

    @app.get("/v1/agents/{agent_id}/events", dependencies=auth)
    async def events(agent_id: AgentId, limit: Limit = 1000) -> dict[str, list[dict[str, Any]]]:
        return {"events": await asyncio.to_thread(store.events, agent_id, limit=limit)}

    return app


async def _decode_when_idle(store: CloudStore) -> None:
    """Turn stored telemetry into sample rows while no block has arrived for ``IDLE_S``:
    acknowledging blocks comes first, decoding catches up (reads catch up at once)."""
    while True:
        quiet = time.monotonic() - store.last_put
        if quiet < IDLE_S:
            await asyncio.sleep(IDLE_S - quiet)
        elif not await asyncio.to_thread(store.decode_pending, 4):
            await asyncio.sleep(IDLE_S)
