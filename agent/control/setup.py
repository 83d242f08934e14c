"""Builds the control side of the agent from the settings: audit, models, heartbeats, loops.

Owns: opening STATE_DIR/audit.db and forwarding its records to the buffer, loading the
model signing key, the model manager with each model's pinned version, one heartbeat per
heartbeat tag used by an advisory or closed-loop loop (counting in the range the tag and
the echo tags of the loops sharing it can hold: agent.config.checks_loops.
shared_counter, the range `check` accepted; gate 1 takes the echo's lag modulo it), one
ControlLoop per `[[loops]]`, and the hourly audit pruning.
Must not: run anything by itself; agent.service.app runs `tasks()` under its control supervisor,
which stops first at shutdown (no write after the signal, the heartbeat stops with it).
Invariants: every loop that runs has taken over its state from the audit (ControlLoop.
recover) before `open_control` returns, so before any task, the pruning's included; a loop
with mode "off" has no task (it would only end at once, and the
supervisor restarts a task that ends); it is listed, with state "off", and nothing more.
Every wait is on the injected clock (the pruning's hour too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config.checks_loops import shared_counter
from agent.config.heartbeat_counter import CounterRange
from agent.config.loader import LoadedConfig
from agent.config.products import model_pins
from agent.config.quality_settings import QualitySection
from agent.control.audit import AUDIT_FILE, AuditLog
from agent.control.heartbeat import Heartbeat
from agent.control.loop import ControlLoop
from agent.domain.clock import Clock
from agent.domain.errors import ConfigProblem, RetryableError
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Driver, Sample
from agent.packages.manager import ModelManager, PromotionRefusedError
from agent.packages.manifest import ModelRejectedError
from agent.packages.package import load_public_key
from agent.packages.promotion import PROMOTED_FILE
from agent.quality.truth import QUALITY_FILE, TruthLoop

__all__ = ["Control", "open_control"]

PRUNE_INTERVAL_S = 3600.0


class KeyFileError(Exception):
    """The configured model public key (or a heartbeat tag, or STATE_DIR/quality.db) cannot be
    used: a configuration problem, exit 78. A heartbeat tag is refused by `load_config`
    already; this is the last line for a configuration that did not pass through it."""

    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__(problem.render())
        self.problem = problem


@dataclass
class Control:
    """The control side of one agent."""

    audit: AuditLog
    models: ModelManager
    heartbeats: list[Heartbeat]
    loops: list[ControlLoop]
    retention_days: float
    clock: Clock
    public_key: Ed25519PublicKey | None = None
    truth: TruthLoop | None = None

    def observe(self, batch: Sequence[Sample]) -> None:
        for loop in self.loops:
            loop.observe(batch)
        if self.truth is not None:
            self.truth.observe(batch)

    async def promote(self, loop: str, version: str, *, operator: str, reason: str) -> str:
        """The operator's promotion of a loop's challenger (raises PromotionRefusedError)."""
        found = next((lp for lp in self.loops if lp.loop.name == loop), None)
        if found is None or found.loop.quality.challenger_version != version:
            raise PromotionRefusedError(
                f"{version!r} is not the challenger of loop {loop!r}"
                if found is not None
                else f"no loop {loop!r}"
            )
        return await self.models.promote(found.loop.model, version, operator=operator,
                                         reason=reason)  # fmt: skip

    async def _prune(self) -> None:
        while True:
            running = [lp.loop.name for lp in self.loops if lp.loop.mode != "off"]
            await self.audit.prune(self.retention_days, keep_loops=running)
            await self.clock.sleep(PRUNE_INTERVAL_S)

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        out: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("models:watch", self.models.run),
            ("audit:prune", self._prune),
        ]
        if self.truth is not None:
            out.append(("quality:truth", self.truth.run))
        out += [(h.name, h.run) for h in self.heartbeats]
        out += [(f"loop:{lp.loop.name}", lp.run) for lp in self.loops if lp.loop.mode != "off"]
        return out


def _heartbeat_counters(loaded: LoadedConfig) -> dict[str, CounterRange]:
    """The counter range of every heartbeat tag an advisory or closed-loop loop writes, fit
    to the tag and to the echo tags of all the loops that share it."""
    tags = {t.name: t for t in loaded.settings.tags}
    counters: dict[str, CounterRange] = {}
    for index, lp in enumerate(loaded.settings.loops):
        name = lp.heartbeat_tag
        if lp.mode not in ("advisory", "closed_loop") or name is None or name in counters:
            continue
        counter = shared_counter(loaded.settings.loops, name, tags)
        if not isinstance(counter, CounterRange):
            raise KeyFileError(ConfigProblem(str(loaded.path), f"loops[{index}].{counter.key}",
                                             counter.expected, counter.found))  # fmt: skip
        counters[name] = counter
    return counters


async def open_control(
    loaded: LoadedConfig,
    state_dir: Path,
    *,
    latest: LatestValues,
    drivers: Sequence[Driver],
    health: Health,
    clock: Clock,
    events: Callable[[Sequence[Mapping[str, Any]]], Awaitable[int]] | None,
) -> Control:
    """Open the audit log, load the key, build heartbeats and loops (raises KeyFileError)."""
    s = loaded.settings
    key = None
    if s.agent.model_public_key_file is not None:
        try:
            key = load_public_key(s.agent.model_public_key_file)
        except ModelRejectedError as exc:
            raise KeyFileError(
                ConfigProblem(
                    str(loaded.path),
                    "agent.model_public_key_file",
                    "an Ed25519 public key (PEM) the agent can read",
                    str(exc),
                )
            ) from None
    counters = _heartbeat_counters(loaded)
    audit = await asyncio.to_thread(
        AuditLog, state_dir / AUDIT_FILE, agent_id=s.agent.id, clock=clock
    )
    audit.sink = events

    async def record(kind: str, body: Mapping[str, Any]) -> None:
        await audit.record(kind, body)

    pins = model_pins(s.loops, s.products)  # every product's models: a change switches at once
    challengers: dict[str, str] = {}
    for lp in s.loops:
        if lp.mode != "off" and lp.quality.challenger_version is not None:
            challengers.setdefault(lp.model, lp.quality.challenger_version)
    models = ModelManager(s.agent.models_dir or state_dir / "models", key, pins, audit=record,
                          clock=clock, challengers=challengers,
                          promoted_file=state_dir / PROMOTED_FILE)  # fmt: skip
    # Loaded before the truth loop rebuilds its standing: it judges and corrects with the
    # RMSE the active version's package declares (unknown before the scan).
    await models.scan()
    truth = None
    if has_lab_results(s.quality):
        try:
            truth = await TruthLoop.open(
                state_dir / QUALITY_FILE, s.quality, s.loops, clock=clock,
                declared=_declared(models), audit=_audit_sink(audit), events=events,
                plc_products=s.product_selection is not None,
            )  # fmt: skip
        except RetryableError as exc:  # the step-downs in force are unknown: do not start
            audit.close()
            raise KeyFileError(ConfigProblem(
                str(state_dir / QUALITY_FILE), "agent.state_dir",
                "a quality.db the agent can open and write (it holds the loops' step-downs)",
                str(exc))) from None  # fmt: skip
    by_source = {d.name: d for d in drivers}
    tags = {t.name: t for t in s.tags}
    driver_of = {t.name: by_source[t.source] for t in s.tags if t.source in by_source}
    heartbeats: dict[str, Heartbeat] = {}
    loops = []
    for lp in s.loops:
        hb = None
        if lp.mode in ("advisory", "closed_loop") and lp.heartbeat_tag is not None:
            hb = heartbeats.get(lp.heartbeat_tag)
            if hb is None:
                hb = Heartbeat(lp.heartbeat_tag, driver_of[lp.heartbeat_tag],
                               counters[lp.heartbeat_tag], clock=clock, health=health)  # fmt: skip
                heartbeats[lp.heartbeat_tag] = hb
        loops.append(
            ControlLoop(
                lp,
                tags=tags,
                drivers=driver_of,
                latest=latest,
                models=models,
                audit=audit,
                heartbeat=hb,
                health=health,
                clock=clock,
                truth=truth,
                default_product=s.quality.default_product,
                selection=s.product_selection,
                products=s.products,
            )
        )
    if truth is not None and loops and s.product_selection is not None:
        truth.product_at = loops[0].products.product_at  # one mill, one product tag
    # Each loop takes over its last record before anything else touches the audit: the
    # hourly pruning would otherwise race it (after downtime longer than the retention,
    # the record holding a safety stop is what it deletes first).
    for loop in loops:
        if loop.loop.mode != "off":
            await loop.recover()
    return Control(
        audit, models, list(heartbeats.values()), loops, s.agent.audit_retention_days, clock, key,
        truth,
    )  # fmt: skip


def has_lab_results(quality: QualitySection) -> bool:
    """Whether any path brings lab results (without one the truth loop has nothing to judge)."""
    return bool(quality.tags) or quality.csv is not None or quality.cloud


def _declared(models: ModelManager) -> Callable[[str, str], Mapping[str, float]]:
    """The validation RMSE a model version's package declares, remembered once seen (a version
    swapped out is still judged against what it declared)."""
    seen: dict[tuple[str, str], Mapping[str, float]] = {}

    def declared(model: str, version: str) -> Mapping[str, float]:
        for session in (models.session(model), models.challenger(model)):
            if session is None:
                continue
            m = session.manifest
            if (m.name, m.version) not in seen:
                seen[(m.name, m.version)] = dict(m.validation.rmse) if m.validation else {}
        return seen.get((model, version), {})

    return declared


def _audit_sink(audit: AuditLog) -> Callable[[str, Mapping[str, Any], str | None], Awaitable[None]]:
    async def record(kind: str, body: Mapping[str, Any], loop: str | None) -> None:
        await audit.record_whole(kind, body, loop=loop)

    return record
