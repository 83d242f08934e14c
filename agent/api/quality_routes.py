"""The operator's actions on the truth loop over the local API: step a loop back up after a
step-down, promote its challenger model (issue 14; `edge-agent quality restore|promote`).

Owns: ``POST /v1/loops/{loop}/quality/restore`` {operator, reason} and
``POST /v1/loops/{loop}/quality/promote`` {operator, reason, version}, what each checks before
it acts and the answer it gives: 200 with what was done; 404 a loop the configuration does not
have; 422 a body without a non-empty operator and reason (and version, to promote); 409 a loop
that is not stepped down, or a version that is not the loop's challenger (or a promotion the
control side refuses: agent.domain.errors.RejectedError); 503 an agent without a truth loop or
without promotion. Every refusal is {"detail": one line naming what was expected and found}.
Must not: audit or log the action itself (TruthLoop.restore and the control side's promote
do, once), decide a step-down, or accept anything but a JSON object body.
Invariants: only these two routes change the agent's state; nothing is called before every
check has passed, so a refused request changes nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agent.api.quality_status import Promote, QualityView, effective_mode, step_down_entry
from agent.api.status import StatusSource
from agent.domain.errors import RejectedError, RetryableError

__all__ = ["MAX_OPERATOR", "MAX_REASON", "add_quality_routes"]

MAX_OPERATOR = 100
MAX_REASON = 1000


class _RefusedError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _text(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        found = "nothing" if value is None else repr(value)[:60]
        raise _RefusedError(422, f"{key}: expected a non-empty text, found {found}")
    if len(value) > limit:
        raise _RefusedError(422, f"{key}: expected at most {limit} characters, found {len(value)}")
    return value.strip()


async def _body(request: Request, *keys: str) -> dict[str, str]:
    try:
        body = await request.json()
    except ValueError:
        raise _RefusedError(422, "body: expected a JSON object, found no valid JSON") from None
    if not isinstance(body, dict):
        raise _RefusedError(422, f"body: expected a JSON object, found {type(body).__name__}")
    limits = {"operator": MAX_OPERATOR, "reason": MAX_REASON, "version": MAX_OPERATOR}
    return {key: _text(body, key, limits[key]) for key in keys}


def add_quality_routes(
    api: FastAPI, app: StatusSource, quality: QualityView | None, promote: Promote | None
) -> None:
    """Add the two operator routes to ``api``."""
    configured = {loop.name: loop for loop in app.loaded.settings.loops}

    def checked(loop: str) -> QualityView:
        if quality is None:
            raise _RefusedError(503, "this agent runs no truth loop: nothing to step up or promote")
        if loop not in configured:
            names = ", ".join(sorted(configured)) or "none"
            raise _RefusedError(404, f"loop {loop!r}: not configured (the loops are: {names})")
        return quality

    @api.post("/v1/loops/{loop}/quality/restore")
    async def restore(loop: str, request: Request) -> JSONResponse:
        try:
            view = checked(loop)
            body = await _body(request, "operator", "reason")
            try:
                cleared = await view.restore(loop, operator=body["operator"],
                                             reason=body["reason"])  # fmt: skip
            except RetryableError as exc:  # quality.db: the step-down stays, try again
                raise _RefusedError(503, f"not restored, the step-down stays: {exc}") from None
            if cleared is None:
                raise _RefusedError(409, f"loop {loop} is not stepped down: nothing to restore")
        except _RefusedError as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        mode = configured[loop].mode
        return JSONResponse(
            {
                "loop": loop,
                "restored": step_down_entry(cleared),
                "mode": mode,
                "effective_mode": effective_mode(mode, view.report(loop).step_down),
                "operator": body["operator"],
            }
        )

    @api.post("/v1/loops/{loop}/quality/promote")
    async def promote_challenger(loop: str, request: Request) -> JSONResponse:
        try:
            view = checked(loop)
            if promote is None:
                raise _RefusedError(503, "this agent cannot promote a challenger (not wired)")
            body = await _body(request, "operator", "reason", "version")
            report = view.report(loop)
            challengers = sorted({h.version for h in report.challenger})
            version = body["version"]
            if version not in challengers:
                now = f"its challenger is {', '.join(challengers)}" if challengers else (
                    "it has no challenger ([loops.quality] challenger_version)")  # fmt: skip
                raise _RefusedError(409, f"loop {loop}: {version} is not its challenger; {now}")
            try:
                await promote(loop, version, operator=body["operator"], reason=body["reason"])
            except RejectedError as exc:
                raise _RefusedError(
                    409, f"loop {loop}: promotion of {version} refused: {exc}"
                ) from None
        except _RefusedError as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        return JSONResponse(
            {
                "loop": loop,
                "promoted": version,
                "previous": report.version,
                "operator": body["operator"],
            }
        )
