"""The agent's status as one JSON-safe dict: /status, `edge-agent status` and the cloud report.

Owns: the shape of the status document (agent, health, drivers, buffer and outage budget,
uploader and drain progress, control loops with their truth-loop figures when a quality view is
given (``agent.api.quality_status``), active models, alarms) and how each component's figures
are read for it (also used by ``agent.api.metrics``, so the two never disagree; a source's
entry comes from ``agent.api.source_status``, its figures from the driver's ``figures()``);
``config_digest``, the sha256 of the configuration file read once at start.
Must not: change, await or lock anything it reads, do I/O (``config_digest`` aside, called once
by the composition root, and the process's own /proc/self/status), log, or import the
composition root (``StatusSource`` is the shape of the ``App`` it reads, structurally).
Invariants: ``build_status`` is a pure function of the app at the time of the call; its result
holds only dicts, lists, str, int, float (finite), bool and None; times are unix seconds (UTC)
or durations in seconds; a component not built (buffer, uploader) is None, never omitted;
"alarms" is always a list (a stepped-down loop is one), without a quality view the loops have
no "quality" and "effective_mode" keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from agent.api.process_memory import resident
from agent.api.quality_status import QualityView, effective_mode, loop_quality, step_down_alarm
from agent.api.source_status import source_entry
from agent.buffer.buffer import Buffer
from agent.config.loader import LoadedConfig
from agent.control.loop_stats import LoopStats
from agent.domain.clock import Clock
from agent.domain.health import Health
from agent.domain.samples import Driver
from agent.sync.uploader import Uploader

__all__ = [
    "QUANTILES",
    "StatusSource",
    "build_status",
    "config_digest",
    "inference_summary",
    "quantiles",
    "readiness",
]


class StatusSource(Protocol):
    """What the status reads from the running agent (``agent.service.app.App`` has it all)."""

    @property
    def loaded(self) -> LoadedConfig: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def started(self) -> float: ...
    @property
    def config_sha256(self) -> str | None: ...
    @property
    def health(self) -> Health: ...
    @property
    def drivers(self) -> Sequence[Driver]: ...
    @property
    def buffer(self) -> Buffer | None: ...
    @property
    def uploader(self) -> Uploader | None: ...
    @property
    def loop_stats(self) -> Sequence[LoopStats]: ...


def config_digest(path: Path) -> str | None:
    """sha256 of the configuration file's bytes (None when it cannot be read any more)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _safe(value: Any) -> Any:
    """A JSON-safe copy: dataclasses and mappings become dicts, NaN/Inf become None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


QUANTILES = (0.5, 0.9, 0.99)


def quantiles(durations: Sequence[float]) -> list[tuple[float, float]]:
    """(q, value) for each of ``QUANTILES`` (nearest rank; NaN/Inf ignored; [] when empty)."""
    ordered = sorted(d for d in durations if math.isfinite(d))
    if not ordered:
        return []
    n = len(ordered)
    return [(q, ordered[min(n - 1, max(0, math.ceil(q * n) - 1))]) for q in QUANTILES]


def inference_summary(durations: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and the 0.5 / 0.9 / 0.99 quantiles of inference durations (seconds)."""
    values = [d for d in durations if math.isfinite(d)]
    out: dict[str, float | int | None] = {
        "count": len(values),
        "mean_s": sum(values) / len(values) if values else None,
    }
    found = dict(quantiles(values))
    for q in QUANTILES:
        out[f"p{round(q * 100)}_s"] = found.get(q)
    return out


def _loop(stats: LoopStats) -> dict[str, Any]:
    return {
        "name": stats.name,
        "mode": stats.mode,
        "state": stats.state,
        "model_version": stats.model_version,
        "cycles": stats.cycles,
        "verdicts": [
            {"gate": gate, "verdict": verdict, "count": count}
            for (gate, verdict), count in sorted(stats.verdicts.items())
        ],
        "outcomes": _safe(dict(sorted(stats.outcomes.items()))),
        "writes": _safe(dict(sorted(stats.writes.items()))),
        "inference": inference_summary(list(stats.inference_s)),
        "last": _safe(stats.last),
    }


def readiness(app: StatusSource) -> tuple[bool, str]:
    """Ready, and why: the agent's readiness, except while its buffer cannot keep what it
    is given (a full disk). /readyz, /status and /metrics all answer from here."""
    problem = None if app.buffer is None else app.buffer.budget().problem
    if problem is not None and app.health.ready:
        return False, f"buffer: {problem}"
    return app.health.ready, app.health.ready_detail


def _health(health: Health, mono: float, ready: tuple[bool, str]) -> dict[str, Any]:
    stalled_all = set(health.stalled(mono, critical_only=False))
    critical = health.stalled(mono)
    watched = []
    for p in health.loops():
        reference = p.since if p.last is None else p.last
        watched.append(
            {
                "name": p.name,
                "critical": p.critical,
                "max_silence_s": _safe(p.max_silence_s),
                "silent_s": _safe(mono - reference),
                "beaten": p.last is not None,
                "stalled": p.name in stalled_all,
                "detail": p.detail,
            }
        )
    return {
        "healthy": not critical,
        "ready": ready[0],
        "ready_detail": ready[1],
        "stalled": critical,
        "watched": watched,
    }


def _buffer(buffer: Buffer | None) -> dict[str, Any] | None:
    if buffer is None:
        return None
    budget = buffer.budget()
    out: dict[str, Any] = _safe(budget)
    out["evictions"] = _safe(dict(sorted(budget.evictions.items())))
    out["fill_ratio"] = budget.bytes_used / budget.max_bytes if budget.max_bytes else None
    out["epoch"] = buffer.epoch
    return out


def _uploader(uploader: Uploader | None) -> dict[str, Any] | None:
    if uploader is None:
        return None
    stats = uploader.stats()
    out: dict[str, Any] = _safe(stats)
    out["latency_mean_s"] = stats.latency_sum_s / stats.acks if stats.acks else None
    out["progress"] = _safe(uploader.progress())
    return out


def _loops(app: StatusSource, quality: QualityView | None) -> tuple[list[Any], list[Any]]:
    """The loops' entries, and the alarms they raise (a step-down each)."""
    loops, alarms = [], []
    for stats in app.loop_stats:
        entry = _loop(stats)
        if quality is not None:
            report = quality.report(stats.name)
            entry["effective_mode"] = effective_mode(stats.mode, report.step_down)
            entry["quality"] = loop_quality(report)
            if report.step_down is not None:
                alarms.append(_safe(step_down_alarm(report.step_down, stats.mode)))
        loops.append(entry)
    return loops, alarms


def build_status(app: StatusSource, *, quality: QualityView | None = None) -> dict[str, Any]:
    """The status document now (see the module docstring for its invariants); ``quality``:
    the truth loop, whose figures each loop then carries."""
    now = app.clock.now()
    loops, alarms = _loops(app, quality)
    s = app.loaded.settings
    models = getattr(app, "active_models", None)
    return {
        "agent": {
            "id": s.agent.id,
            "version": version("edge-agent"),
            "pid": os.getpid(),
            "time": now,
            "started": app.started,
            "uptime_s": max(0.0, now - app.started),
            "config": {"path": os.path.abspath(app.loaded.path), "sha256": app.config_sha256},
            "state_dir": str(s.agent.state_dir),
            "memory": resident(),
        },
        "health": _health(app.health, app.clock.monotonic(), readiness(app)),
        "drivers": [source_entry(driver) for driver in app.drivers],
        "buffer": _buffer(app.buffer),
        "sync": {"enabled": s.sync.enabled, "url": s.sync.url if s.sync.enabled else None},
        "uploader": _uploader(app.uploader),
        "loops": _safe(loops),
        "models": _safe(dict(models)) if isinstance(models, Mapping) else {},
        "alarms": alarms,
    }
