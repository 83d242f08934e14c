"""One control loop: every cadence, gates -> model -> candidates -> guard -> act -> audit.

Owns: the loop's schedule (monotonic clock), its objective (agent.objectives.registry, from
`[loops.objective]`), its memory of moves, operator's baseline and safety stop (taken over
at start from the typed fields of its last audit record, agent.control.latch.carried, so
a restart resets neither the guard's rate and interval nor the baseline of the same grant,
and does not clear a safety stop: `recover`, which agent.control.setup runs before any task
of the agent starts, the audit's pruning included), the record of every write the PLC may
have applied (made before the read-back wait), the one typed record every cycle leaves
(design "Control loops and safety", 1-7; committed even when the loop is cancelled meanwhile,
and counted in `stats` only once stored), and the log lines of a blocked loop: one
`loop_blocked` warning per reason that lasts (agent.control.loop_blocked), one
`loop_unblocked` when it acts again.
Must not: decide what is safe (agent.control.gates and agent.control.guard do), choose targets
(agent.control.optimizer and the objective) or talk to the PLC except through its drivers;
acting on a decision (write, read-back, advisory tags) is agent.control.act. Every wait and
every measured duration is on the injected clock.
Invariants: nothing is written unless every gate of this cycle passed in this cycle; a
write is never retried or replayed; after a safety stop the loop writes nothing until the
agent restarts and the PLC has been back in local control (a shadow loop keeps the stop in
its records, so it is still there when the loop writes again, but computes and logs its
suggestion all the same: it writes nothing); the record is strict JSON; a loop with mode
"off" never cycles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agent.config.product_settings import Product, ProductSelection
from agent.config.settings import Loop, Tag
from agent.control.act import Actor, WriteOutcome
from agent.control.audit import AuditLog
from agent.control.baseline import Confirmation
from agent.control.gates import Verdict
from agent.control.guard import RATE_WINDOW_S, MoveHistory, guard
from agent.control.heartbeat import Heartbeat
from agent.control.latch import SafetyStop, StopCode, carried, same_grant
from agent.control.loop_blocked import BlockedEpisode
from agent.control.loop_inputs import guard_limits, handshake
from agent.control.loop_stats import LoopStats
from agent.control.predict import BlockedError, Inference, LoopInputs, features_for, infer
from agent.control.product_switch import ProductSwitch
from agent.control.record import CycleRecord, GuardRecord, Handshake, ModelRef, Outcome, Reading
from agent.control.truth_link import TruthLink
from agent.domain.clock import Clock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.logger import get_logger
from agent.domain.samples import Driver, Quality, Sample
from agent.objectives.registry import objective_for
from agent.packages.manager import ModelManager
from agent.packages.manifest import ModelRejectedError

if TYPE_CHECKING:
    from agent.quality.truth import TruthLoop

__all__ = ["ControlLoop"]

log = get_logger(__name__)
_LAST_KEYS = ("outcome", "reason", "suggestion", "target", "write", "model", "predicted", "product")
_RESTORED = "safety stop before the restart; waiting for the PLC to go local"


class ControlLoop:
    """A `[[loops]]` entry at run time."""

    def __init__(
        self,
        loop: Loop,
        *,
        tags: Mapping[str, Tag],
        drivers: Mapping[str, Driver],
        latest: LatestValues,
        models: ModelManager,
        audit: AuditLog,
        heartbeat: Heartbeat | None,
        health: Health,
        clock: Clock,
        truth: TruthLoop | None = None,
        default_product: str = "default",
        selection: ProductSelection | None = None,
        products: Sequence[Product] = (),
    ) -> None:
        self.loop, self._latest, self._models, self._audit = loop, latest, models, audit
        self._health, self._clock, self.heartbeat = health, clock, heartbeat
        self.stats = LoopStats(loop.name, loop.mode, "off" if loop.mode == "off" else "starting")
        self._episode = BlockedEpisode()
        self.stopped: SafetyStop | None = None
        self._stop_clears_on_local = False  # a stop taken over from before a restart
        self._feasible = True
        self.baseline: float | None = None
        self._recovered = False
        self._carried_grant: tuple[float | None] | None = None  # judged at the 1st handshake
        self._wrote: WriteOutcome | None = None  # this cycle's write, counted once recorded
        self.history = MoveHistory()
        self.objective = objective_for(loop.objective)
        self.inputs = LoopInputs(loop, self.objective)
        self.act = Actor(loop, tags=tags, drivers=drivers, latest=latest, clock=clock)
        self.last: CycleRecord | None = None  # the last cycle's record, typed
        self.link = TruthLink(loop, truth, default_product)
        self.confirm = Confirmation(loop.baseline_expiry_s)
        self.products = ProductSwitch(loop, selection, products, self._audit_product)

    def observe(self, batch: Sequence[Sample]) -> None:
        """Every driver batch passes here (on the event loop)."""
        self.inputs.observe(batch)
        self.products.observe(batch)

    async def _audit_product(self, kind: str, body: Mapping[str, Any]) -> None:
        await self._audit.record(kind, body, loop=self.loop.name)

    def _run_product(self, loop: Loop, *, keep_baseline: bool) -> None:
        """From now on the loop runs `loop` (a product's settings; agent.control.product_switch)."""
        self.loop = self.act.loop = self.link.loop = loop
        self.link.product = loop.quality.product or self.products.running_name() or ""
        self.objective.retarget(loop.objective)
        self.stats.mode = loop.mode
        self.act.pending = None  # an advice of the old product is not acted on
        if not keep_baseline:
            self.baseline = None  # the new product's recipe is the operator's new baseline
            self.link.fresh = True  # the old product's offsets are not this one's

    async def run(self) -> None:
        """Cycle every cadence_s until cancelled (mode off: wait quietly, never act)."""
        if self.loop.mode == "off":  # agent.control.setup gives an off loop no task
            await asyncio.Event().wait()
        await self.recover()
        name = f"loop:{self.loop.name}"
        self._health.watch(
            name,
            now=self._clock.monotonic(),
            max_silence_s=max(60.0, 3 * self.loop.cadence_s) + self.loop.readback_timeout_s,
        )
        self.stats.state = "running" if self.stopped is None else f"stopped: {self._stop_why()}"
        mono = self._clock.monotonic
        due = mono() + min(self.loop.cadence_s, 5.0)  # let the first samples arrive
        while True:  # scheduled on the monotonic clock: a wall-clock step changes nothing
            await self._clock.sleep(max(0.0, due - mono()))
            await self.cycle()
            self._health.beat(name, mono())
            due = max(due + self.loop.cadence_s, mono())

    async def recover(self) -> None:
        """What a restart must not forget (once per process): the last hour's moves (rate and
        interval) from the audit's move rows, the operator's baseline (kept at the first
        handshake only for the same grant: agent.control.latch.same_grant) and a safety stop
        from the typed fields of the last cycle record (a stop then holds until the PLC has
        been back in local control, i.e. until a person gave remote again)."""
        if self._recovered:
            return
        self._recovered = True
        now = self._clock.now()
        moves = await self._audit.moves(self.loop.name, now - RATE_WINDOW_S)
        state = carried(await self._audit.last("cycle", self.loop.name))
        if state.safety_stop is not None:
            self.stopped, self._stop_clears_on_local = state.safety_stop, True
        self.baseline = state.baseline
        self.products.carried = state.product
        self.confirm.at = None if state.baseline is None else state.confirmed_at
        self._carried_grant = None if state.baseline is None else (state.granted_at,)
        if moves:
            self.history = MoveHistory(tuple(moves), moves[-1][0], None)

    def _stop_why(self) -> str:
        if self.stopped is None:
            return ""
        return _RESTORED if self._stop_clears_on_local else self.stopped.reason

    async def _moved(self, frm: float, to: float) -> None:
        """The PLC may have applied a write: count it and record it before anything else."""
        now = self._clock.now()
        kept = tuple(m for m in self.history.moves if m[0] > now - RATE_WINDOW_S)
        self.history = MoveHistory((*kept, (now, frm, to)), now, self.history.baseline)
        body = {"tag": self.loop.target_tag, "from": frm, "value": to}
        await self._audit.record_whole("setpoint_write", body, loop=self.loop.name, move=(frm, to))

    async def cycle(self) -> dict[str, Any]:
        """One decision, recorded; returns the audit record."""
        started = self._clock.monotonic()
        now = self._clock.now()
        lp, st = self.loop, self.stats
        rec = CycleRecord(mode=lp.mode, decided_at=now)
        self._wrote = None
        try:
            await self._decide(now, rec, started)
        except BlockedError as blocked:
            rec.verdicts.append(blocked.verdict)
            rec.reason = f"{blocked.verdict.gate}: {blocked.verdict.reason}"
        lp = self.loop  # a product change may have switched it
        rec.safety_stop = self.stopped
        rec.baseline = self.baseline if lp.mode in ("advisory", "closed_loop") else None
        rec.baseline_confirmed_at = None if rec.baseline is None else self.confirm.at
        self.last = rec
        body = rec.to_json()
        if said := self._episode.cycle(rec.outcome is Outcome.BLOCKED, str(rec.reason)):
            say = log.warning if said.event == "loop_blocked" else log.info
            say(said.event, loop=lp.name, reason=said.reason, cycles=said.cycles)
        # Stored before it is counted: /status never shows a cycle audit.db does not hold yet.
        event = await self._audit.record_whole("cycle", body, loop=lp.name)
        if self._wrote is not None:
            st.writes[self._wrote.value] += 1
        st.cycles += 1
        st.outcomes[rec.outcome.value] += 1
        for v in rec.verdicts:
            st.verdicts[(v.gate, "pass" if v.ok else "refuse")] += 1
        st.last = {"time": now, **{k: body.get(k) for k in _LAST_KEYS}}
        if self.stopped is not None:
            st.state = f"stopped: {self._stop_why()}"
        return event

    async def _product(self, now: float, rec: CycleRecord) -> bool:
        """The product step (agent.control.product_switch): True when the cycle holds (a
        transition, or the loop off for this product); raises BlockedError on a stop."""
        step = await self.products.step(now)
        rec.product = step.record
        if step.stop is not None:
            raise BlockedError(Verdict("product", False, step.stop))
        if step.switch is not None:
            self._run_product(step.switch, keep_baseline=step.keep_baseline)
            rec.mode = self.loop.mode
        if step.hold is not None or self.loop.mode == "off":
            why = step.hold or f"loop off while {self.link.product} is ground"
            rec.outcome, rec.reason = Outcome.HOLD, f"product: {why}"
            return True
        return False

    def _pass(self, rec: CycleRecord, verdict: Verdict) -> None:
        if not verdict.ok:
            raise BlockedError(verdict)
        rec.verdicts.append(verdict)

    async def _decide(self, now: float, rec: CycleRecord, started: float) -> None:
        lp, mono = self.loop, self._clock.monotonic
        if self.stopped is not None:
            remote = self._latest.get(lp.enable_tag or "")
            local = remote is not None and remote.quality is Quality.GOOD and not remote.value
            if self._stop_clears_on_local and local:
                why = "cleared: the PLC went back to local control after the stop"
                rec.verdicts.append(Verdict("safety_stop", True, why))
                self.stopped, self._stop_clears_on_local, self.baseline = None, False, None
                self.stats.state = "running"
            elif lp.mode == "shadow":  # writes nothing: suggest, and keep the stop recorded
                why = f"held, shadow mode writes nothing: {self._stop_why()}"
                rec.verdicts.append(Verdict("safety_stop", True, why))
            else:
                raise BlockedError(Verdict("safety_stop", False, self._stop_why()))
        if await self._product(now, rec):
            return
        lp = self.loop
        if lp.mode in ("advisory", "closed_loop"):
            hs = handshake(lp, self._latest, self.heartbeat, now)
            rec.handshake = Handshake(
                Reading.of(self._latest.get(lp.enable_tag or "")),
                Reading.of(self._latest.get(lp.heartbeat_echo_tag or "")),
                self.heartbeat.sent if self.heartbeat else None,
            )
            carried_grant, self._carried_grant = self._carried_grant, None
            seen = rec.handshake.remote.source_time if rec.handshake.remote else None
            if not hs.ok or (carried_grant and not same_grant(carried_grant[0], seen)):
                self.baseline = None  # a new grant takes a new baseline
            self._pass(rec, hs)
        mode, rec.quality = self.link.mode()
        rec.effective_mode = mode if mode != lp.mode else None
        result = await self._predict(now, rec)
        mode = self.link.recheck(mode, rec.quality)  # no await from here to the write
        if (gone := self.products.moved_on(now)) is not None:
            rec.outcome, rec.reason = Outcome.HOLD, f"product: {gone}"
            return
        rec.effective_mode = mode if mode != lp.mode else None
        current = self.act.current()
        if current is None:
            raise BlockedError(Verdict("readback", False, "the effective setpoint is not readable"))
        if self.baseline is None:
            self.baseline = current
            grant = rec.handshake.remote if rec.handshake is not None else None
            self.confirm.taken(grant.source_time if grant is not None else now)
        if lp.mode in ("advisory", "closed_loop"):
            self.confirm.see(self._latest.get(lp.baseline_confirm_tag or ""), now)
            if self.confirm.expired(now):
                rec.outcome, rec.reason = Outcome.HOLD, self.confirm.reason(now)
                return
        moved = guard(
            current=current,
            target=result.target,
            limits=guard_limits(lp, self.act.hard_limits()),
            now=now,
            history=MoveHistory(self.history.moves, self.history.last_move_time, self.baseline),
        )
        rec.guard = GuardRecord(current, result.target, self.baseline, moved.value, moved.clamped)
        rec.verdicts.extend(moved.verdicts)
        rec.decision_ms = round((mono() - started) * 1000.0, 3)
        if moved.value is None:
            rec.outcome, rec.reason = Outcome.HOLD, f"guard: {moved.reason}"
            return
        rec.suggestion = moved.value
        await self._act(mode, current, moved.value, rec, now=now, started=started)

    async def _predict(self, now: float, rec: CycleRecord) -> Inference:
        """Gates 2 and 3 and the candidate search: the model's answer (raises BlockedError)."""
        lp, mono = self.loop, self._clock.monotonic
        session = self._models.session(lp.model)
        if session is None:
            raise BlockedError(Verdict("model", False, f"no valid version of model '{lp.model}'"))
        m = session.manifest
        rec.model = ModelRef(m.name, m.version, m.model.sha256)
        x = features_for(lp, session, latest=self._latest, inputs=self.inputs, now=now, rec=rec)
        t0 = mono()
        try:
            offsets = self.link.offsets(rec.quality)
            result = infer(lp, x, session, self._latest, self.objective, offsets=offsets)
        except ModelRejectedError as exc:
            await self._models.report(lp.model, m.version, False, str(exc))
            raise BlockedError(Verdict("inference", False, str(exc))) from None
        took = mono() - t0
        self.stats.inference_s.append(took)
        rec.inference_ms = round(took * 1000.0, 3)
        await self._models.report(lp.model, m.version, True, "ok")
        rec.verdicts.append(Verdict("inference", True, f"{result.rows} rows, finite"))
        rec.target, rec.candidates = result.target, result.candidates
        rec.predicted = result.predicted
        challenger = self._models.challenger(lp.model) if lp.quality.challenger_version else None
        point = x if result.point is None else result.point  # the row `raw` was predicted at
        await self.link.record(rec.quality, session, result, x=point, challenger=challenger,
                               now=now)  # fmt: skip
        feasible = result.candidates is None or result.candidates.feasible
        if not feasible and self._feasible and result.candidates is not None:
            # plant-model 2.3 step 6: alarm, once an episode
            log.warning("loop_no_feasible_candidate", loop=lp.name,
                        reason=result.candidates.reason)  # fmt: skip
        self._feasible = feasible
        return result

    async def _act(
        self, mode: str, current: float, value: float, rec: CycleRecord, *, now: float,
        started: float,
    ) -> None:  # fmt: skip
        """Shadow: log; advisory (configured, or a closed loop stepped down by the truth loop):
        show and wait for the ack; closed loop (or acked): write."""
        if mode == "shadow":
            rec.outcome, rec.reason = Outcome.SHADOW, "shadow mode: suggestion logged only"
            return
        if mode == "advisory":
            best = rec.candidates.best if rec.candidates is not None else {}
            effect = self.objective.effect
            step = await self.act.advise(value, (effect, best.get(effect)), now)
            rec.advice, rec.advice_expired = step.advice, step.expired
            if not step.act:
                rec.outcome, rec.reason = step.outcome or Outcome.ADVISE, step.reason
                return
        # Whenever the PLC may have applied the value, self._moved has counted and recorded the
        # move before the read-back wait (the guard's rate and interval see it, also after a
        # restart), whatever the read-back then says.
        outcome, rec.write = await self.act.write(current, value, started, self._moved)
        self._wrote = outcome
        if outcome is WriteOutcome.READBACK_MISMATCH:
            reason = str(rec.write.reason)
            self._safety_stop(SafetyStop(StopCode.READBACK_MISMATCH, reason, now))
            rec.outcome, rec.reason = Outcome.BLOCKED, f"safety stop: {reason}"
        elif outcome is not WriteOutcome.OK:
            rec.reason = f"write: {rec.write.reason}"
        else:
            rec.outcome = Outcome.WRITE

    def _safety_stop(self, stop: SafetyStop) -> None:
        self.stopped = stop
        self.stats.state = f"stopped: {stop.reason}"
        log.error("loop_safety_stop", loop=self.loop.name, reason=stop.reason, code=stop.code)
        if self.heartbeat is not None:
            self.heartbeat.stop(f"loop {self.loop.name}: {stop.reason}")
