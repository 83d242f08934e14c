"""Scripted faults for the reference receiver: what the next block POSTs go through.

Owns: the ``Fault`` values (an error status with an optional Retry-After, a slow answer, a
connection lost before or after the block is stored), the ``FaultScript`` queue tests fill, and
the pure-ASGI middleware that applies it.
Must not: touch the store or any request but ``POST .../blocks/...`` (reads are never faulted).
Invariants: each block POST consumes at most one fault, in the order they were added; a POST
that finds the script empty passes through untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Fault", "FaultMiddleware", "FaultScript", "ScriptedDropFilter"]


@dataclass(frozen=True)
class Fault:
    """A scripted answer to one block POST: ``error(status, retry_after)``, ``slow(delay_s)``
    (then answered normally), ``drop()`` (connection lost, not stored) or ``drop_after_store()``
    (stored, then the connection is lost: the agent must re-send and get "duplicate")."""

    action: Literal["status", "slow", "drop", "drop_after_store"]
    status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0

    @classmethod
    def error(cls, status: int = 500, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls("slow", delay_s=delay_s)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def drop_after_store(cls) -> Fault:
        return cls("drop_after_store")


class FaultScript:
    """The faults the next block POSTs get, in order; ``add(fault, times=n)`` appends."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self.applied: list[Fault] = []

    def add(self, *faults: Fault, times: int = 1) -> None:
        self._queue.extend(list(faults) * times)

    def clear(self) -> None:
        self._queue.clear()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def take(self) -> Fault | None:
        if not self._queue:
            return None
        fault = self._queue.popleft()
        self.applied.append(fault)
        return fault


class FaultMiddleware:
    """Pure ASGI: applies the script to POST .../blocks/... requests only."""

    def __init__(self, app: ASGIApp, script: FaultScript) -> None:
        self.app, self.script = app, script

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = None
        if scope["type"] == "http" and scope["method"] == "POST" and "/blocks/" in scope["path"]:
            fault = self.script.take()
        if fault is None:
            await self.app(scope, receive, send)
            return
        replay = await _buffered(receive)  # read the request whatever happens next
        if fault.action == "slow":
            await asyncio.sleep(fault.delay_s)
            await self.app(scope, replay, send)  # stored even if the client gave up waiting
        elif fault.action == "status":
            body = json.dumps(
                {"status": "rejected", "error": "scripted", "detail": f"HTTP {fault.status}"}
            ).encode()
            headers = [(b"content-type", b"application/json")]
            if fault.retry_after is not None:
                headers.append((b"retry-after", fault.retry_after.encode()))
            await send({"type": "http.response.start", "status": fault.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        else:
            if fault.action == "drop_after_store":
                await self.app(scope, replay, _discard)
            # Promise a body and send none: uvicorn closes the connection mid-response.
            start = {"type": "http.response.start", "status": 200}
            await send(start | {"headers": [(b"content-length", b"64")]})


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now; the result replays it, then defers to ``receive``."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; replay what arrived
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay


async def _discard(_message: Message) -> None:
    return None


class ScriptedDropFilter(logging.Filter):
    """uvicorn reports a scripted drop as an ASGI error: it is the point, not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ASGI callable returned without completing")
