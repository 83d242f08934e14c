"""The truth loop: lab results in (tags, CSV folder, the cloud through `ingest`), joined with
the predictions recorded for their sample windows, models judged and corrected, closed loops
stepped down when their model is degraded (issue 14; plant-model 3 C, 4.2, 4.4).

Owns: `TruthLoop`, the engine of the shared spec (offsets, step_down, record, restore, report,
observe, ingest, run), the join of a stored result with every loop's predictions, the tag
path's queue, the hourly pruning and the CSV folder it runs.
Must not: import the control loop, the buffer or the cloud (audit and events are injected
callables), raise for an unknown loop name, or block the event loop (quality.db runs on its
worker thread; `observe` only queues).
Invariants: everything it knows is in quality.db, so `open` rebuilds the same state (a restart
keeps step-downs and offsets); a result of a test a loop monitors (`quality.tests`) joins the
loop's predictions of the result's product whose time is in its window, per (model, version,
role) (agent.quality.monitor.join); a correction rewrites the result's residuals whole; a
duplicate changes nothing and is not forwarded; new and corrected results go to `events`. A
result stays `pending` in quality.db from its storing until its join, judgement and forwarding
are done: delivered again after a crash or a failure in between (the CSV file read again, the
cloud page fetched again, the tag queue retried), it is finished then, so a stored result is
always joined and forwarded at least once (the event carries sample id, test and revision:
a receiver keeps one per key).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.config.quality_settings import QualitySection
from agent.config.settings import Loop
from agent.domain.clock import Clock
from agent.domain.errors import RetryableError
from agent.domain.logger import get_logger
from agent.domain.samples import Sample
from agent.quality.csv_folder import CsvFolder
from agent.quality.monitor import LoopQualityReport, SeriesKey, StepDown, join
from agent.quality.results import Ingested, LabResult, Prediction, Residual
from agent.quality.standing import AuditSink, Declared, EventSink, Standing
from agent.quality.store import QUALITY_FILE, QualityStore
from agent.quality.tags import PAIR_S, LabTags

__all__ = [
    "PRUNE_INTERVAL_S",
    "QUALITY_FILE",
    "RETRY_S",
    "AuditSink",
    "Declared",
    "EventSink",
    "TruthLoop",
]

PRUNE_INTERVAL_S = 3600.0
RETRY_S = 30.0  # the tag queue's next try after quality.db failed

log = get_logger(__name__)


class TruthLoop:
    """One agent's truth loop; `await TruthLoop.open(...)`, then `run()` as a task."""

    def __init__(self, settings: QualitySection, loops: Sequence[Loop], store: QualityStore, *,
                 clock: Clock, declared: Declared, audit: AuditSink,
                 events: EventSink | None, plc_products: bool = False) -> None:  # fmt: skip
        self.settings, self.store, self._clock, self._audit = settings, store, clock, audit
        self._loops = {loop.name: loop for loop in loops}
        self._standing = Standing(settings, self._loops, store, clock=clock, declared=declared,
                                  audit=audit, events=events)  # fmt: skip
        # With products from the PLC, a lab tag's result is of the product ground in its window.
        self._tags = LabTags(settings.tags, "" if plc_products else settings.default_product)
        self._queue: list[LabResult] = []
        self._wake = asyncio.Event()
        self._ingesting = asyncio.Lock()
        self.product_at: Callable[[float], str | None] | None = None
        """The product ground at a time, from the PLC's product tag (agent.control.products;
        set by agent.control.setup with a product table): `_product_of`'s second source."""
        self.unmatched = 0  # results of a monitored test that no prediction window held
        self.pruned_predictions = self.pruned_results = 0

    @classmethod
    async def open(cls, path: Path, settings: QualitySection, loops: Sequence[Loop], *,
                   clock: Clock, declared: Declared, audit: AuditSink,
                   events: EventSink | None, plc_products: bool = False) -> TruthLoop:  # fmt: skip
        """Open quality.db at `path` and rebuild the monitors and offsets from it
        (`plc_products`: the product comes from the PLC's product tag, see `_product_of`)."""
        store = await QualityStore.open(path, clock=clock)
        truth = cls(settings, loops, store, clock=clock, declared=declared, audit=audit,
                    events=events, plc_products=plc_products)  # fmt: skip
        try:
            await truth._standing.load()
        except BaseException:
            await store.close()
            raise
        return truth

    async def close(self) -> None:
        await self.store.close()

    # -- the control side (never raises for a missing loop) ---------------------------------

    def offsets(self, loop: str) -> Mapping[str, float]:
        """Output -> the offset in force ({}: none)."""
        return self._standing.offsets(loop)

    def step_down(self, loop: str) -> StepDown | None:
        return self._standing.step_down(loop)

    async def record(self, prediction: Prediction) -> None:
        """Store a prediction (active or challenger; bounded by `max_predictions`)."""
        dropped = await self.store.record(prediction, self.settings.max_predictions)
        self.pruned_predictions += dropped
        await self._standing.saw(prediction)

    async def restore(self, loop: str, *, operator: str, reason: str) -> StepDown | None:
        """The operator's step-up (audited "quality_step_up"); what was cleared, or None."""
        return await self._standing.restore(loop, operator=operator, reason=reason)

    def report(self, loop: str) -> LoopQualityReport:
        return self._standing.report(loop)

    # -- ingestion -------------------------------------------------------------------------

    def observe(self, batch: Sequence[Sample]) -> None:
        """The tag path: queue the results a driver batch completes (`run` ingests them)."""
        found = self._tags.observe(batch, self._clock.monotonic())
        if found:
            self._queue.extend(found)
            self._wake.set()

    async def ingest(self, results: Sequence[LabResult]) -> list[Ingested]:
        """Store results; forward new and corrected ones; join, judge, correct, step down.
        One batch at a time (the tag queue, the CSV folder and the cloud feed all call it):
        a correction is never joined with the value it replaced."""
        async with self._ingesting:
            return await self._ingest(results)

    async def _ingest(self, results: Sequence[LabResult]) -> list[Ingested]:
        outcomes: list[Ingested] = []
        forward: list[Mapping[str, Any]] = []
        touched: set[SeriesKey] = set()
        done: list[tuple[str, str]] = []
        for given in results:
            result = given
            if not result.product:
                result = dataclasses.replace(given, product=await self._product_of(given))
            put = await self.store.put_result(result)
            outcomes.append(put.outcome)
            if put.outcome is Ingested.DUPLICATE and not put.pending:
                continue
            stored = put.result
            done.append((stored.sample_id, stored.test))
            forward.append(stored.as_event())
            if put.outcome is Ingested.CORRECTION:
                body = {"sample_id": stored.sample_id, "test": stored.test,
                        "value": stored.value, "previous": put.previous,
                        "revision": stored.revision, "source": stored.source}  # fmt: skip
                await self._audit("lab_result_corrected", body, None)
            touched |= await self._join(stored)
        await self._standing.emit(forward)
        for name in sorted({key.loop for key in touched}):
            await self._standing.refresh(name, {k.test for k in touched if k.loop == name})
        await self.store.settle(done)
        return outcomes

    async def _product_of(self, result: LabResult) -> str:
        """The product of a lab tag's result when the PLC says what is ground: the product the
        loops ran in its window (their recorded predictions, the most of them; after a restart
        too), else the product the PLC's tag said was ground at its sample time (changes seen
        since the agent started), else the default product."""
        counts: Counter[str] = Counter()
        for name in self._loops:
            for p in await self.store.predictions(name, result.window_start, result.sample_time):
                if p.role == "active":
                    counts[p.product] += 1
        if counts:
            return counts.most_common(1)[0][0]
        if self.product_at is not None and (seen := self.product_at(result.sample_time)):
            return seen
        return self.settings.default_product

    async def _join(self, result: LabResult) -> set[SeriesKey]:
        found: list[Residual] = []
        monitored = False
        for name, loop in self._loops.items():
            if result.test not in loop.quality.tests:
                continue
            monitored = True
            groups: dict[tuple[str, str, str], list[Prediction]] = {}
            for p in await self.store.predictions(name, result.window_start, result.sample_time):
                groups.setdefault((p.model, p.version, p.role), []).append(p)
            found += [r for g in groups.values() if (r := join(result, g)) is not None]
        if monitored and not found:
            # A correction of a result whose predictions were pruned meanwhile (a 28-day result
            # corrected a week later): its residuals keep their predictions, with the new value.
            kept = await self.store.residuals_of(result.sample_id, result.test)
            found = [dataclasses.replace(r, value=result.value) for r in kept]
        if monitored and not found:
            self.unmatched += 1
        await self.store.replace_residuals(result.sample_id, result.test, found)
        return self._standing.replace(result, found)

    # -- the background work ---------------------------------------------------------------

    async def run(self) -> None:
        """The tag queue, the tag path's pairing timer, the CSV folder and hourly pruning."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._drain())
            group.create_task(self._pair_timer())
            group.create_task(self._prune_hourly())
            if self.settings.csv is not None:
                folder = CsvFolder(self.settings.csv, store=self.store, ingest=self.ingest,
                                   clock=self._clock,
                                   default_product=self.settings.default_product)  # fmt: skip
                group.create_task(folder.run())

    async def _drain(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            try:
                await self.ingest(batch)
            except RetryableError as exc:  # quality.db: keep them, try again later
                self._queue[:0] = batch
                (log.debug if failing else log.warning)("lab_results_not_stored", error=str(exc))
                failing = True
                await self._clock.sleep(RETRY_S)
                self._wake.set()
                continue
            except BaseException:  # cancelled or a bug: the results stay queued for the next run
                self._queue[:0] = batch
                raise
            if failing:
                log.info("lab_results_stored_again", results=len(batch))
            failing = False

    async def _pair_timer(self) -> None:
        while True:
            await self._clock.sleep(PAIR_S)
            found = self._tags.due(self._clock.monotonic())
            if found:
                self._queue.extend(found)
                self._wake.set()

    async def _prune_hourly(self) -> None:
        failing = False
        while True:
            await self._clock.sleep(PRUNE_INTERVAL_S)
            try:
                await self.prune()
            except RetryableError as exc:  # quality.db: try again in an hour
                (log.debug if failing else log.warning)("quality_prune_failed", error=str(exc))
                failing = True
                continue
            if failing:
                log.info("quality_prune_recovered")
            failing = False

    async def prune(self) -> None:
        """One pruning pass (hourly in `run`), counted in pruned_predictions / pruned_results."""
        s = self.settings
        pruned = await self.store.prune(
            prediction_retention_days=s.prediction_retention_days,
            max_predictions=s.max_predictions,
            result_retention_days=s.result_retention_days,
        )
        self.pruned_predictions += pruned.predictions
        self.pruned_results += pruned.results
        if pruned.results:
            for name in self._loops:
                await self._standing.reload(name)
