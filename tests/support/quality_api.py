"""The local API with a real truth loop behind it, for the tests of /status, /metrics and the
operator's quality actions (issue 14).

Owns: `QualityApi` (an App built from the demo configuration but not started, its two loops'
stats, a real TruthLoop over quality.db in the test's folder with the audit records and cloud
events it emitted, the challenger promotions it was asked for) and `quality_api(...)`, which
serves agent.api.server.serve_api over real HTTP on 127.0.0.1; `degrade` (predictions and lab
results that make the separator loop's model degraded on s2: bias -1.31 MPa against a declared
RMSE of 0.91, so the closed loop steps down).
Must not: patch or stand in for our own modules: the TruthLoop, its store and the API are the
real ones; only the control side's `promote` is the test's own coroutine (the lead's lands in
agent.control), recording what it was asked and refusing what the test says to refuse.
Invariants: the loops are the demo's "separator" and "limestone" (both closed_loop); the
separator has challenger 1.1.0; the clock is a FakeClock at T_NOW, so a step-down's `since`
is T_NOW.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.api.server import serve_api
from agent.config.loader import load_config
from agent.control.loop_stats import LoopStats
from agent.demo.show import write_demo_config
from agent.domain.clock import FakeClock
from agent.domain.errors import RejectedError
from agent.quality.results import LabResult, Prediction
from agent.quality.truth import TruthLoop
from agent.service.app import App
from tests.support.config import ConfigDoc
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
MODEL, ACTIVE, CHALLENGER = "vrm-quality", "1.0.0", "1.1.0"
DECLARED = {"s2": 0.91, "s28": 1.8}
T0 = 1_700_000_000.0  # the first sample's time
T_NOW = T0 + 30 * 3600.0  # the truth loop's clock (after every sample)


@dataclass
class QualityApi:
    app: App
    truth: TruthLoop
    url: str
    audit: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    promoted: list[tuple[str, str, str, str]] = field(default_factory=list)
    refuse_promotion: str | None = None

    async def promote(self, loop: str, version: str, *, operator: str, reason: str) -> None:
        """The control side's promotion, as the API calls it."""
        if self.refuse_promotion is not None:
            raise RejectedError(self.refuse_promotion)
        self.promoted.append((loop, version, operator, reason))


def demo_app(folder: Path, api_port: int) -> App:
    """An App over the demo configuration (not started: nothing connects)."""
    path = write_demo_config(folder, "opc.tcp://127.0.0.1:9", 9, "http://127.0.0.1:9")
    config = ConfigDoc.read(path)
    config.set("agent.models_dir", str(MODELS))
    config.set("agent.model_public_key_file", str(MODELS / "demo-signing-key.pub.pem"))
    config.set("sync.enabled", False)
    config.set("api.port", api_port)
    config.add("loops[name=separator].quality", {"challenger_version": CHALLENGER})
    config.write(path)
    state = folder / "state"
    state.mkdir(exist_ok=True)
    app = App(load_config(path), state)
    for loop in app.loaded.settings.loops:
        app.loop_stats.append(
            LoopStats(name=loop.name, mode=loop.mode, state="running", model_version=ACTIVE)
        )
    return app


async def degrade(truth: TruthLoop, *, results: int = 6, product: str = "default") -> None:
    """Hourly samples of the separator loop: the active model predicts s2 30.00, the
    challenger 28.80, the lab finds 28.69 (active bias -1.31, challenger -0.11); with
    `results=0` one prediction of each and no result."""
    for i in range(max(results, 1)):
        t = T0 + 3600.0 * (i + 1)
        for version, role, s2 in ((ACTIVE, "active", 30.0), (CHALLENGER, "challenger", 28.8)):
            await truth.record(
                Prediction("separator", MODEL, version, role, product, t - 600.0, {"s2": s2})
            )
        if i < results:
            result = LabResult(f"S{i}", t, 3600.0, product, "s2", 28.69, "MPa", t + 60.0, "test")
            await truth.ingest([result])


@contextlib.asynccontextmanager
async def quality_api(
    folder: Path, *, with_quality: bool = True, with_promote: bool = True
) -> AsyncIterator[QualityApi]:
    """The API of an App with a real truth loop (``with_quality``), answering on 127.0.0.1."""
    port = free_port()
    app = demo_app(folder, port)
    s = app.loaded.settings
    audit: list[tuple[str, dict[str, Any], str | None]] = []
    events: list[dict[str, Any]] = []

    async def audit_sink(kind: str, body: Mapping[str, Any], loop: str | None) -> None:
        audit.append((kind, dict(body), loop))

    async def event_sink(batch: Sequence[Mapping[str, Any]]) -> int:
        events.extend(dict(e) for e in batch)
        return len(batch)

    truth = await TruthLoop.open(
        folder / "quality.db", s.quality, s.loops, clock=FakeClock(now=T_NOW),
        declared=lambda model, version: DECLARED, audit=audit_sink, events=event_sink,
    )  # fmt: skip
    rig = QualityApi(app, truth, f"http://127.0.0.1:{port}", audit, events)
    task = asyncio.create_task(
        serve_api(
            app,
            s.api,
            quality=truth if with_quality else None,
            promote=rig.promote if with_promote else None,
        )
    )
    try:
        await _listening(rig.url, task)
        yield rig
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await truth.close()


async def _listening(url: str, task: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + 60.0  # generous: a busy machine is only slower
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            if task.done():
                await task  # raises what stopped it
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/healthz")).status_code in (200, 503):
                    return
            assert time.monotonic() < deadline, "the API did not start listening"
            await asyncio.sleep(0.05)
