"""A control loop's side of the truth loop: the step-down, the correction, the predictions kept.

Owns: what a cycle asks of the truth loop (agent.quality.truth) and hands to it: the mode the
loop acts in (a closed loop whose model was judged degraded acts as advisory: it proposes, the
operator acknowledges, nothing is written unacknowledged), the offsets in force on the model's
outputs (the bias correction), the prediction of the cycle's production it records (active
model, raw and corrected, per output), the challenger version's prediction on the same
features (shadow: recorded, never acted on), and the part of the cycle record that says so.
Must not: judge a model (agent.quality.monitor does), change the loop's configured mode, or
write to the PLC.
Invariants: without a truth loop (no `[quality]` results configured) nothing changes: mode as
configured, no offsets, nothing recorded; a failed challenger inference is logged and leaves
the cycle as it was (the challenger never blocks the loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from agent.config.settings import Loop
from agent.control.record_quality import QualityRecord
from agent.domain.errors import RetryableError
from agent.domain.logger import get_logger
from agent.packages.manifest import ModelRejectedError
from agent.quality.results import Prediction

if TYPE_CHECKING:
    from agent.control.predict import Inference, Vector
    from agent.packages.session import ModelSession
    from agent.quality.truth import TruthLoop

__all__ = ["TruthLink"]

log = get_logger(__name__)


class TruthLink:
    """One loop's link to the truth loop (`truth` None: the loop has none)."""

    def __init__(self, loop: Loop, truth: TruthLoop | None, default_product: str) -> None:
        self.loop, self.truth = loop, truth
        self.product = loop.quality.product or default_product
        self._challenger_failed: str | None = None
        self._record_failing = False
        self.fresh = False
        """The loop runs another product or model than the truth loop's standing was built
        for (a product switch): no offsets until its first prediction is recorded (which
        re-judges the standing for it)."""

    def mode(self) -> tuple[str, QualityRecord | None]:
        """The mode this cycle acts in, and the record's quality part (None: no truth loop)."""
        lp, truth = self.loop, self.truth
        if truth is None:
            return lp.mode, None
        stepped = truth.step_down(lp.name)
        offsets = dict(truth.offsets(lp.name)) if lp.quality.correction and not self.fresh else {}
        part = QualityRecord(product=self.product, offsets=offsets)
        if stepped is not None and lp.mode == "closed_loop":
            part.step_down = stepped.reason
            part.stepped_down_since = stepped.since
            return "advisory", part
        return lp.mode, part

    def recheck(self, mode: str, part: QualityRecord | None) -> str:
        """The mode again right before acting (the caller does not await between this and the
        write): a step-down stored while the cycle predicted holds for this cycle already; a
        step-up waits for the next cycle."""
        lp, truth = self.loop, self.truth
        if truth is None or part is None or mode != "closed_loop" or lp.mode != "closed_loop":
            return mode
        stepped = truth.step_down(lp.name)
        if stepped is None:
            return mode
        part.step_down, part.stepped_down_since = stepped.reason, stepped.since
        return "advisory"

    async def record(
        self,
        part: QualityRecord | None,
        session: ModelSession,
        result: Inference,
        *,
        x: Vector,
        challenger: ModelSession | None,
        now: float,
    ) -> None:
        """Record the cycle's predictions (active, then the challenger's on the same x)."""
        if self.truth is None or part is None or result.raw is None:
            return
        m = session.manifest
        part.raw = dict(result.raw)
        part.corrected = dict(result.corrected or {})
        lp = self.loop.name
        active = Prediction(lp, m.name, m.version, "active", self.product, now, part.raw,
                            part.corrected)  # fmt: skip
        if not await self._record(active):
            return
        self.fresh = False
        if challenger is None or challenger.manifest.version == m.version:
            return
        c = challenger.manifest
        try:
            y = challenger.predict(x[None, :].astype(np.float32))
        except ModelRejectedError as exc:
            if self._challenger_failed != str(exc):
                log.warning("challenger_inference_failed", loop=self.loop.name,
                            model=c.name, version=c.version, reason=str(exc))  # fmt: skip
            self._challenger_failed = str(exc)
            return
        self._challenger_failed = None
        raw = {o.name: round(float(y[0, k]), 4) for k, o in enumerate(c.outputs)}
        part.challenger = {"version": c.version, "raw": raw}
        await self._record(
            Prediction(self.loop.name, c.name, c.version, "challenger", self.product, now, raw)
        )

    async def _record(self, prediction: Prediction) -> bool:
        """Store a prediction; quality.db failing costs that prediction, never the cycle."""
        assert self.truth is not None
        try:
            await self.truth.record(prediction)
        except RetryableError as exc:
            if not self._record_failing:
                log.warning("prediction_not_recorded", loop=self.loop.name, error=str(exc))
            self._record_failing = True
            return False
        if self._record_failing:
            log.info("prediction_recorded_again", loop=self.loop.name)
        self._record_failing = False
        return True

    def offsets(self, part: QualityRecord | None) -> Mapping[str, float]:
        return {} if part is None else part.offsets
