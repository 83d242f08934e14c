"""The reference receiver's lab-result routes: a LIMS posts results for an agent, the agent
pulls them over its sync channel (`[quality] cloud = true`; docs/operations.md "Connecting the
LIMS").

Owns: ``POST /v1/agents/{agent_id}/lab_results`` (a LIMS integration or a person: a batch of
results, each validated, 422 naming the field of a bad one, all or nothing) and
``GET /v1/agents/{agent_id}/lab_results?after=<cursor>&limit=<n>`` (the agent: the results
past its cursor, oldest first, and the cursor of the last one), and what a result must hold.
Must not: store anything itself (``cloud_lab_store`` does), tell duplicates or corrections
apart (the agent's store does: the same sample id and test posted twice is passed on twice).

Invariants: every route requires the bearer token (when the receiver has one); a stored result
has ``sample_time`` and ``entry_time`` as unix seconds (UTC), whatever form they were posted
in (ISO 8601 with a UTC offset, or unix seconds; a time without an offset is refused), and an
``entry_time`` (the receipt time when none was posted); the answer's ``cursor`` is the last
result's, or ``after`` itself when there is none, so an agent never goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.demo.cloud_lab_store import LabStore

__all__ = ["MAX_BATCH", "LabResultIn", "add_lab_routes"]

MAX_BATCH = 10_000
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
AgentId = Annotated[str, PathParam(pattern=_ID)]
_TEST = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"


def _unix(value: object) -> object:
    """ISO 8601 with a UTC offset, or unix seconds, as unix seconds (ValueError: a 422)."""
    if isinstance(value, bool):
        raise ValueError("expected ISO 8601 with a UTC offset or unix seconds, found a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number of unix seconds, found {value}")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.utcoffset() is None:
            raise ValueError(
                "expected ISO 8601 with a UTC offset (2026-10-25T02:30:00+01:00) or unix "
                f"seconds, found {value!r}"
            )
        return moment.timestamp()
    return value  # refused by the float type below


class LabResultIn(BaseModel):
    """One result as a LIMS posts it."""

    model_config = ConfigDict(extra="forbid")

    sample_id: Annotated[str, Field(min_length=1, max_length=128)]
    sample_time: float
    window_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 3600.0
    product: Annotated[str, Field(max_length=128)] = ""  # "": the agent's default product
    test: Annotated[str, Field(pattern=_TEST)]
    value: Annotated[float, Field(allow_inf_nan=False)]
    unit: Annotated[str, Field(max_length=32)] = ""
    entry_time: float | None = None  # None: the time the receiver got it

    @field_validator("sample_time", "entry_time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        return _unix(value)


class LabBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: Annotated[list[LabResultIn], Field(min_length=1, max_length=MAX_BATCH)]


def add_lab_routes(app: FastAPI, db_path: Path, *, auth: Sequence[Depends]) -> LabStore:
    """Register the lab-result routes on ``app`` (``auth``: the receiver's dependency), over
    a ``LabStore`` at ``db_path`` that is closed when the app's lifespan ends."""
    store = LabStore(db_path)
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

    @app.post("/v1/agents/{agent_id}/lab_results", dependencies=deps, status_code=201)
    async def post_lab_results(agent_id: AgentId, batch: LabBatch) -> dict[str, Any]:
        """Results for the agent to pull; all stored, or none (422 names the bad field)."""
        received = store.now()
        rows = [
            r.model_dump() | {"entry_time": received if r.entry_time is None else r.entry_time}
            for r in batch.results
        ]
        cursor = await asyncio.to_thread(store.put, agent_id, rows)
        return {"status": "stored", "count": len(rows), "cursor": cursor}

    @app.get("/v1/agents/{agent_id}/lab_results", dependencies=deps)
    async def get_lab_results(
        agent_id: AgentId,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_BATCH)] = 500,
    ) -> dict[str, Any]:
        """The agent's results past ``after``, oldest first, each with its ``cursor``."""
        rows = await asyncio.to_thread(store.after, agent_id, after, limit=limit)
        return {
            "results": [body | {"cursor": cursor} for cursor, body in rows],
            "cursor": rows[-1][0] if rows else after,
        }

    return store
