"""The reference receiver's remote-support routes: status, desired state, results, models.

Owns: the HTTP side of remote support (docs/sync-api.md, "Remote support"): the routes the
agent calls (POST its status report, GET its desired state with ETag/If-None-Match, POST a
diagnostics result or a model delivery report, GET a model package's files from the
directory given with ``--models``) and those support staff and tests call (PUT the desired
state, GET the latest status and its history, the results and the delivery reports).

Must not: store anything itself (``cloud_support_store`` does), decide what an agent may do
(the agent enforces its own allowlist; the receiver passes the document on as given), or
serve any file but ``manifest.json``, ``manifest.sig`` and ``model.onnx`` of
``<models>/<name>/<version>/``.

Invariants: every route requires the bearer token (when the receiver has one); a JSON body
must be an object of at most ``MAX_JSON_BYTES``, else 400/413 ``{"status": "rejected", ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.params import Depends
from fastapi.responses import FileResponse, JSONResponse

from agent.demo.cloud_support_store import SupportStore

__all__ = ["MAX_JSON_BYTES", "add_support_routes"]

MAX_JSON_BYTES = 4 * 1024 * 1024
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_VERSION = r"^[0-9A-Za-z][0-9A-Za-z.+\-]{0,63}$"
AgentId = Annotated[str, PathParam(pattern=_ID)]
RequestId = Annotated[str, PathParam(pattern=_ID)]
ModelName = Annotated[str, PathParam(pattern=_ID)]
Version = Annotated[str, PathParam(pattern=_VERSION)]
PackageFile = Annotated[Literal["manifest.json", "manifest.sig", "model.onnx"], PathParam()]
_Body = dict[str, Any] | JSONResponse


def _rejected(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"status": "rejected", "error": error, "detail": detail}, status)


async def _json_object(request: Request) -> _Body:
    if int(request.headers.get("content-length") or 0) > MAX_JSON_BYTES:
        return _rejected(413, "too_large", f"at most {MAX_JSON_BYTES} bytes")
    data = await request.body()
    try:
        body = json.loads(data)
    except ValueError as exc:
        return _rejected(400, "bad_json", f"not JSON: {exc}")
    if not isinstance(body, dict):
        return _rejected(400, "bad_json", "expected a JSON object")
    return body


def add_support_routes(
    app: FastAPI, db_path: Path, *, auth: Sequence[Depends], models_dir: Path | None
) -> SupportStore:
    """Register the remote-support routes on ``app`` (``auth``: the receiver's dependency),
    over a ``SupportStore`` at ``db_path`` that is closed when the app's lifespan ends."""
    store = SupportStore(db_path)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        try:
            async with inner(lifespan_app) as state:
                yield state
        finally:
            store.close()

    app.router.lifespan_context = lifespan
    deps = list(auth)

    @app.post("/v1/agents/{agent_id}/status", dependencies=deps, status_code=201)
    async def post_status(agent_id: AgentId, request: Request) -> Any:
        """The agent's periodic status report (versions, drivers, outage budget, errors...)."""
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        await asyncio.to_thread(store.put_status, agent_id, body)
        return {"status": "stored"}

    @app.get("/v1/agents/{agent_id}/status", dependencies=deps)
    async def get_status(agent_id: AgentId) -> Any:
        reports = await asyncio.to_thread(store.status, agent_id)
        if not reports:
            return _rejected(404, "not_found", f"no status report from {agent_id!r} yet")
        return reports[0]

    @app.get("/v1/agents/{agent_id}/status/history", dependencies=deps)
    async def status_history(
        agent_id: AgentId, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        """The newest reports first."""
        return {"reports": await asyncio.to_thread(store.status, agent_id, limit=limit)}

    @app.get("/v1/agents/{agent_id}/desired", dependencies=deps)
    async def get_desired(
        agent_id: AgentId,
        response: Response,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        """What the agent should do; diagnostics it already answered are left out."""
        document, etag = await asyncio.to_thread(store.desired, agent_id)
        if if_none_match is not None and if_none_match.strip() == etag:
            return Response(status_code=304, headers={"ETag": etag})
        response.headers["ETag"] = etag
        return document

    @app.put("/v1/agents/{agent_id}/desired", dependencies=deps)
    async def put_desired(agent_id: AgentId, request: Request) -> Any:
        """Support staff set the document (stored as given; the agent enforces its allowlist)."""
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        await asyncio.to_thread(store.set_desired, agent_id, body)
        _document, etag = await asyncio.to_thread(store.desired, agent_id)
        return {"status": "stored", "etag": etag}

    @app.post("/v1/agents/{agent_id}/diagnostics/{request_id}", dependencies=deps, status_code=201)
    async def post_result(agent_id: AgentId, request_id: RequestId, request: Request) -> Any:
        """A diagnostics result: ``status`` done, failed or refused."""
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        await asyncio.to_thread(store.put_result, agent_id, request_id, body)
        return {"status": "stored"}

    @app.get("/v1/agents/{agent_id}/diagnostics", dependencies=deps)
    async def results(agent_id: AgentId) -> dict[str, Any]:
        return {"results": await asyncio.to_thread(store.results, agent_id)}

    @app.post(
        "/v1/agents/{agent_id}/deliveries/{name}/{version}", dependencies=deps, status_code=201
    )
    async def post_delivery(
        agent_id: AgentId, name: ModelName, version: Version, request: Request
    ) -> Any:
        """A model delivery report: ``status`` delivered or rejected (with ``reason``)."""
        body = await _json_object(request)
        if isinstance(body, JSONResponse):
            return body
        await asyncio.to_thread(store.put_delivery, agent_id, name, version, body)
        return {"status": "stored"}

    @app.get("/v1/agents/{agent_id}/deliveries", dependencies=deps)
    async def deliveries(agent_id: AgentId) -> dict[str, Any]:
        return {"deliveries": await asyncio.to_thread(store.deliveries, agent_id)}

    @app.get("/v1/models/{name}/{version}/{file}", dependencies=deps)
    async def model_file(name: ModelName, version: Version, file: PackageFile) -> Any:
        """One file of a model package, from the receiver's ``--models`` directory."""
        path = None if models_dir is None else models_dir / name / version / file
        if path is None or not await asyncio.to_thread(path.is_file):
            return _rejected(404, "not_found", f"no {file} for model {name} {version}")
        return FileResponse(path, media_type="application/octet-stream")

    return store
