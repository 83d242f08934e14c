"""Where each loop stands against the lab: its residuals, newest predictions, healths, offsets
and step-down, and the audited changes of the last two (issue 14; plant-model 3 C, 4.4).

Owns: `Standing` (the truth loop's in-memory view of quality.db per loop, rebuilt by `load`),
the step-down decision (`refresh`), the operator's step-up (`restore`), the offsets in force
and the `LoopQualityReport`; the sink types `AuditSink`, `EventSink`, `Declared`.
Must not: join results or read lab inputs (agent.quality.truth does), raise for an unknown loop
name, or step a loop back up by itself.
Invariants: a series is (loop, model, version, role, product, test); the report and the
offsets follow the newest prediction of each role (its model version and product; before any,
the loop's configured model and product); only a closed loop with `quality.step_down` steps
down, and only when a series of its ACTIVE version that a new result touched steps it down
(agent.quality.monitor.steps_down: degraded on `persist_results` results in a row, a test of
`step_down_tests`; a restored loop stays up until another result says so); an offset in force
changes only by an audited step (`correction.changed`), so every offset ever applied is in the
audit log; every change is written to quality.db before it is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from agent.config.quality_settings import QualitySection
from agent.config.settings import Loop
from agent.domain.clock import Clock
from agent.domain.errors import RetryableError
from agent.domain.logger import get_logger
from agent.quality.correction import CORRECTED, Offset, changed, offsets
from agent.quality.monitor import (
    LoopQualityReport,
    SeriesKey,
    StepDown,
    TestHealth,
    judge,
    step_down_for,
    steps_down,
)
from agent.quality.results import LabResult, Prediction, Residual
from agent.quality.store import QualityStore

__all__ = ["AuditSink", "Declared", "EventSink", "Standing"]

AuditSink = Callable[[str, Mapping[str, Any], str | None], Awaitable[None]]
"""(kind, body, loop): appends one audit record."""
EventSink = Callable[[Sequence[Mapping[str, Any]]], Awaitable[int]]
"""Events to the cloud (agent.control.audit.EventSink's shape)."""
Declared = Callable[[str, str], Mapping[str, float]]
"""(model, version) -> the package's validation RMSE per output ({} if unknown)."""

ROLES = ("active", "challenger")
log = get_logger(__name__)


def _key(r: Residual) -> SeriesKey:
    return SeriesKey(r.loop, r.model, r.version, r.role, r.product, r.test)


class Standing:
    """Every configured loop's standing; unknown loop names read as empty."""

    def __init__(self, settings: QualitySection, loops: Mapping[str, Loop], store: QualityStore,
                 *, clock: Clock, declared: Declared, audit: AuditSink,
                 events: EventSink | None) -> None:  # fmt: skip
        self._settings, self._loops, self._store = settings, loops, store
        self._clock, self._declared, self._audit, self._events = clock, declared, audit, events
        self._relation = {p.name: p.s28_per_s2 for p in settings.products}
        self._residuals: dict[str, list[Residual]] = {name: [] for name in loops}
        self._latest: dict[tuple[str, str], Prediction] = {}  # (loop, role) -> newest
        self._steps: dict[str, StepDown] = {}
        self._offsets: dict[str, dict[str, Offset]] = {}
        self._health: dict[str, tuple[list[TestHealth], list[TestHealth]]] = {}
        self._unsaved: set[str] = set()  # loops whose step-down quality.db has not taken yet

    async def load(self) -> None:
        """Rebuild everything from quality.db (an offset the rules now see otherwise is
        changed, audited, as any change)."""
        self._steps = await self._store.step_downs()
        self._offsets = await self._store.offsets()
        for name in self._loops:
            await self.reload(name)
            for role in ROLES:
                latest = await self._store.latest_prediction(name, role)
                if latest is not None:
                    self._latest[name, role] = latest
            await self.refresh(name, ())

    async def reload(self, loop: str) -> None:
        """Read the loop's residuals again (after pruning)."""
        self._residuals[loop] = await self._store.residuals(loop)
        if loop in self._health:
            self._judge(loop)

    # -- what the control side reads -------------------------------------------------------

    def offsets(self, loop: str) -> dict[str, float]:
        return {o: off.value for o, off in self._offsets.get(loop, {}).items()}

    def step_down(self, loop: str) -> StepDown | None:
        return self._steps.get(loop)

    def report(self, loop: str) -> LoopQualityReport:
        config, active = self._loops.get(loop), self._latest.get((loop, "active"))
        tests, challenger = self._health.get(loop, ([], []))
        return LoopQualityReport(
            loop=loop, product=self._product(loop),
            model=active.model if active else (config.model if config else ""),
            version=active.version if active else ((config and config.model_version) or ""),
            step_down=self._steps.get(loop), offsets=self.offsets(loop), tests=list(tests),
            challenger=list(challenger) if self._challenging(loop) else [],
            predictions_kept=self._store.predictions_kept(loop),
            results_matched=len({(r.sample_id, r.test) for r in self._residuals.get(loop, [])}),
        )  # fmt: skip

    def _challenging(self, loop: str) -> bool:
        """Whether the newest challenger prediction is of the loop's challenger now: not after
        it was promoted (it is then the active version) nor after the file named another."""
        config = self._loops.get(loop)
        latest = self._latest.get((loop, "challenger"))
        active = self._latest.get((loop, "active"))
        if config is None or latest is None or config.quality.challenger_version is None:
            return False
        promoted = active is not None and (active.model, active.version) == (
            latest.model, latest.version)  # fmt: skip
        return latest.version == config.quality.challenger_version and not promoted

    # -- what changes it -------------------------------------------------------------------

    async def saw(self, prediction: Prediction) -> None:
        """A recorded prediction; another model version or product of its role re-judges."""
        key = (prediction.loop, prediction.role)
        before = self._latest.get(key)
        self._latest[key] = prediction
        if prediction.loop not in self._loops:
            return
        if before is None or (before.model, before.version, before.product) != (
            prediction.model, prediction.version, prediction.product):  # fmt: skip
            await self.refresh(prediction.loop, ())

    def replace(self, result: LabResult, found: Sequence[Residual]) -> set[SeriesKey]:
        """The result's residuals (all loops) replace what was held for it; the series hit."""
        ident = (result.sample_id, result.test)
        for name, kept in self._residuals.items():
            kept[:] = [r for r in kept if (r.sample_id, r.test) != ident]
            kept.extend(r for r in found if r.loop == name)
        return {_key(r) for r in found if r.loop in self._loops}

    async def refresh(self, loop: str, tests: Iterable[str]) -> None:
        """Judge the loop again, update its offsets, and step it down if a series of `tests`
        (the ones new results touched) of its active version is degraded."""
        if loop in self._unsaved and (step := self._steps.get(loop)) is not None:
            await self._save_step_down(step)
        self._judge(loop)
        await self._correct(loop)
        await self._maybe_step_down(loop, set(tests))

    async def restore(self, loop: str, *, operator: str, reason: str) -> StepDown | None:
        step = self._steps.get(loop)
        if step is None:
            return None
        await self._store.clear_step_down(loop)
        del self._steps[loop]
        self._unsaved.discard(loop)
        body = {"loop": loop, "operator": operator, "reason": reason, "model": step.model,
                "version": step.version, "test": step.test, "stepped_down_since": step.since,
                "stepped_down_reason": step.reason}  # fmt: skip
        await self._audit("quality_step_up", body, loop)
        await self.emit([{"kind": "quality_step_up", **body}])
        log.info("quality_step_up", **body)
        return step

    async def emit(self, events: Sequence[Mapping[str, Any]]) -> None:
        if events and self._events is not None:
            await self._events(events)

    # -- internals -------------------------------------------------------------------------

    def _product(self, loop: str) -> str:
        active, config = self._latest.get((loop, "active")), self._loops.get(loop)
        if active is not None:
            return active.product
        return (config.quality.product if config else None) or self._settings.default_product

    def _series(self, loop: str, role: str) -> list[tuple[SeriesKey, list[Residual]]]:
        latest = self._latest.get((loop, role))
        if latest is None:
            return []
        product, declared = self._product(loop), self._declared(latest.model, latest.version)
        out = []
        for test in self._loops[loop].quality.tests:
            key = SeriesKey(loop, latest.model, latest.version, role, product, test)
            series = [r for r in self._residuals[loop] if _key(r) == key]
            if series or test in declared or test in latest.raw:
                out.append((key, series))
        return out

    def _judge(self, loop: str) -> None:
        rules, healths = self._loops[loop].quality, []
        for role in ROLES:
            latest = self._latest.get((loop, role))
            declared = self._declared(latest.model, latest.version) if latest else {}
            healths.append([judge(key, series, declared.get(key.test), rules)
                            for key, series in self._series(loop, role)])  # fmt: skip
        self._health[loop] = (healths[0], healths[1])

    async def _correct(self, loop: str) -> None:
        latest, product = self._latest.get((loop, "active")), self._product(loop)
        declared = self._declared(latest.model, latest.version) if latest else {}
        held = self._offsets.setdefault(loop, {})
        new = offsets({key.test: series for key, series in self._series(loop, "active")},
                      self._loops[loop].quality, s28_per_s2=self._relation.get(product, 2.0),
                      outputs=set(latest.raw) if latest else set(), declared=declared,
                      previous=held)  # fmt: skip
        for output in CORRECTED:
            before, after = held.get(output), new.get(output)
            if not changed(before, after):
                continue
            await self._store.put_offset(loop, output, after)
            if after is None:
                del held[output]
            else:
                held[output] = after
            await self._audit("quality_correction", {
                "loop": loop, "output": output, "offset": after.value if after else None,
                "previous": before.value if before else None,
                "source": after.source if after else "none",
                "results": after.results if after else 0}, loop)  # fmt: skip

    async def _save_step_down(self, step: StepDown) -> None:
        """Persist a step-down; quality.db failing keeps it in force (in memory) and tries
        again at the loop's next refresh: a step-down fails safe."""
        try:
            await self._store.put_step_down(step)
        except RetryableError as exc:
            if step.loop not in self._unsaved:
                log.error("quality_step_down_not_stored", loop=step.loop, error=str(exc))
            self._unsaved.add(step.loop)
            return
        if step.loop in self._unsaved:
            log.info("quality_step_down_stored", loop=step.loop)
        self._unsaved.discard(step.loop)

    async def _maybe_step_down(self, loop: str, tests: set[str]) -> None:
        config = self._loops[loop]
        if loop in self._steps or config.mode != "closed_loop" or not config.quality.step_down:
            return
        for health in self._health[loop][0]:
            if steps_down(health, config.quality) and health.test in tests:
                step = step_down_for(loop, health, self._clock.now())
                self._steps[loop] = step  # in force at once, whether or not quality.db takes it
                await self._save_step_down(step)
                body = {"loop": loop, "model": step.model, "version": step.version,
                        "test": step.test, "reason": step.reason, "since": step.since,
                        "figures": {"product": health.product, "n": health.n,
                                    "bias": health.bias, "raw_bias": health.raw_bias,
                                    "rmse": health.rmse, "raw_rmse": health.raw_rmse,
                                    "declared_rmse": health.declared_rmse,
                                    "in_a_row": health.streak}}  # fmt: skip
                await self._audit("quality_step_down", body, loop)
                await self.emit([{"kind": "quality_step_down", **body}])
                log.warning("quality_step_down", **body)
                return
