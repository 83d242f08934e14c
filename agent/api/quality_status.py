"""The truth loop in the status document: each loop's model against the lab, the step-down in
force, and the alarm a step-down raises (issue 14; /status, the cloud's status report).

Owns: `QualityView` (what the API reads of the truth loop, agent.quality.truth.TruthLoop, and
the one thing it asks of it: the operator's step-up), `Promote` (the operator's challenger
promotion, provided by the control side), the "quality" object of a loop (`loop_quality`), the
loop's `effective_mode`, and the document's alarm for a step-down (`step_down_alarm`).
Must not: change anything (the operator's actions are agent.api.quality_routes'), do I/O or
log, or judge a model (agent.quality.monitor did; this only shows its verdict).
Invariants: the result is JSON-safe (dicts, lists, str, int, finite float, bool, None); a
figure over no results (n = 0) is None, never 0; `rmse_ratio` is rmse / declared RMSE, None
without a declared RMSE > 0; a closed loop that is stepped down is "closed_loop" by
configuration and "advisory" in effect; any other loop's effective mode is its mode.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from agent.quality.monitor import LoopQualityReport, StepDown, TestHealth

__all__ = [
    "Promote",
    "QualityView",
    "effective_mode",
    "loop_quality",
    "restore_command",
    "step_down_alarm",
    "step_down_entry",
]


class QualityView(Protocol):
    """The truth loop as the API sees it (agent.quality.truth.TruthLoop has it)."""

    def report(self, loop: str) -> LoopQualityReport: ...

    async def restore(self, loop: str, *, operator: str, reason: str) -> StepDown | None: ...


class Promote(Protocol):
    """The operator's promotion of a loop's challenger `version` to its active model
    (audited and sent to the cloud by the callee; raises agent.domain.errors.RejectedError
    with the reason to refuse it)."""

    def __call__(
        self, loop: str, version: str, *, operator: str, reason: str
    ) -> Awaitable[object]: ...


def _figure(value: float | None, n: int) -> float | None:
    if value is None or n == 0 or not math.isfinite(value):
        return None
    return value


def _ratio(rmse: float | None, declared: float | None) -> float | None:
    if rmse is None or declared is None or not math.isfinite(declared) or declared <= 0:
        return None
    return rmse / declared


def _tests(healths: Iterable[TestHealth]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for h in healths:
        rmse = _figure(h.rmse, h.n)
        declared = _figure(h.declared_rmse, 1)  # declared by the package, not measured
        out[h.test] = {
            "n": h.n,
            "bias": _figure(h.bias, h.n),
            "raw_bias": _figure(h.raw_bias, h.n),
            "rmse": rmse,
            "raw_rmse": _figure(h.raw_rmse, h.n),
            "declared_rmse": declared,
            "rmse_ratio": _ratio(rmse, declared),
            "degraded": h.degraded,
            "reason": h.reason,
        }
    return out


def step_down_entry(step: StepDown | None) -> dict[str, Any] | None:
    """A step-down as the document shows it (None: not stepped down)."""
    if step is None:
        return None
    return {
        "since": step.since,
        "model": step.model,
        "version": step.version,
        "test": step.test,
        "reason": step.reason,
    }


def loop_quality(report: LoopQualityReport) -> dict[str, Any]:
    """The "quality" object of one loop of /status."""
    challenger = None
    if report.challenger:
        first = report.challenger[0]
        challenger = {
            "model": first.model,
            "version": first.version,
            "tests": _tests(report.challenger),
        }
    return {
        "product": report.product,
        "model": report.model,
        "version": report.version,
        "step_down": step_down_entry(report.step_down),
        "offsets": {
            str(output): offset
            for output, offset in sorted(report.offsets.items())
            if math.isfinite(offset)
        },
        "tests": _tests(report.tests),
        "challenger": challenger,
        "predictions_kept": report.predictions_kept,
        "results_matched": report.results_matched,
    }


def effective_mode(mode: str, step: StepDown | None) -> str:
    """The mode a loop acts in: a stepped-down closed loop only proposes (advisory)."""
    return "advisory" if mode == "closed_loop" and step is not None else mode


def restore_command(loop: str) -> str:
    """The command that steps the loop back up (shown with every step-down)."""
    return f"edge-agent quality restore {loop} --operator NAME --reason TEXT"


def step_down_alarm(step: StepDown, mode: str) -> dict[str, Any]:
    """The document's alarm for a loop that is stepped down."""
    return {
        "kind": "quality_step_down",
        "loop": step.loop,
        "mode": mode,
        "effective_mode": effective_mode(mode, step),
        "since": step.since,
        "model": step.model,
        "version": step.version,
        "test": step.test,
        "reason": step.reason,
        "message": (
            f"loop {step.loop} stepped down to advisory ({step.model} {step.version}): "
            f"{step.reason}; step up: {restore_command(step.loop)}"
        ),
    }
