"""One control loop: every cadence, gates -> model -> candidates -> guard -> act -> audit.

Owns: the loop's schedule (monotonic clock), its memory of moves, operator's baseline and
safety stop (read back from the audit log at start, so a restart resets neither the guard's
rate and interval nor the baseline, and does not clear a safety stop), the record of every
write the PLC may have applied (made before the read-back wait), the one audit record
every cycle leaves (design "Control loops and safety", 1-7), and the log lines of a blocked
loop: one `loop_blocked` warning per reason that lasts (agent.control.loop_blocked), one
`loop_unblocked` when it acts again; every cycle's reason is in its audit record.
Must not: decide what is safe (agent.control.gates and agent.control.guard do), choose targets
(agent.control.optimizer) or talk to the PLC except through its drivers; acting on a decision
(write, read-back, advisory tags) is agent.control.act.
Invariants: nothing is written unless every gate of this cycle passed in this cycle; a
write is never retried or replayed; after a safety stop the loop writes nothing until the
agent restarts and the PLC has been back in local control; the record is strict JSON; a
loop with mode "off" never cycles.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agent.config.settings import Loop, Tag
from agent.control.act import Actor
from agent.control.audit import AuditLog
from agent.control.gates import Verdict, check_handshake
from agent.control.guard import RATE_WINDOW_S, GuardLimits, MoveHistory, guard
from agent.control.heartbeat import Heartbeat
from agent.control.loop_blocked import BlockedEpisode
from agent.control.loop_stats import LoopStats
from agent.control.predict import (
    BlockedError,
    LoopInputs,
    features_for,
    infer,
    sample_record,
)
from agent.domain.clock import Clock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.logger import get_logger
from agent.domain.samples import Driver, Quality, Sample
from agent.packages.manager import ModelManager
from agent.packages.manifest import ModelRejectedError

__all__ = ["ControlLoop"]

log = get_logger(__name__)
_LAST_KEYS = ("outcome", "reason", "suggestion", "target", "write", "model", "predicted")


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
    ) -> None:
        self.loop, self._latest, self._models, self._audit = loop, latest, models, audit
        self._health, self._clock, self.heartbeat = health, clock, heartbeat
        self.stats = LoopStats(loop.name, loop.mode, "off" if loop.mode == "off" else "starting")
        self._episode = BlockedEpisode()
        self.stopped: str | None = None
        self._stop_clears_on_local = False
        self._feasible = True
        self.baseline: float | None = None
        self.history = MoveHistory()
        self.inputs = LoopInputs(loop)
        self.act = Actor(loop, tags=tags, drivers=drivers, latest=latest, clock=clock)

    def observe(self, batch: Sequence[Sample]) -> None:
        """Every driver batch passes here (on the event loop)."""
        self.inputs.observe(batch)

    async def run(self) -> None:
        """Cycle every cadence_s until cancelled (mode off: wait quietly, never act)."""
        if self.loop.mode == "off":  # agent.control.setup gives an off loop no task
            await asyncio.Event().wait()
        await self._recover(self._clock.now())
        name = f"loop:{self.loop.name}"
        self._health.watch(
            name,
            now=self._clock.monotonic(),
            max_silence_s=max(60.0, 3 * self.loop.cadence_s) + self.loop.readback_timeout_s,
        )
        self.stats.state = "running" if self.stopped is None else f"stopped: {self.stopped}"
        mono = self._clock.monotonic
        due = mono() + min(self.loop.cadence_s, 5.0)  # let the first samples arrive
        while True:  # scheduled on the monotonic clock: a wall-clock step changes nothing
            await self._clock.sleep(max(0.0, due - mono()))
            await self.cycle()
            self._health.beat(name, mono())
            due = max(due + self.loop.cadence_s, mono())

    async def _recover(self, now: float) -> None:
        """What a restart must not forget, from the audit log: the last hour's moves (rate
        and interval), the operator's baseline, and a safety stop (which then holds until the
        PLC has been back in local control, i.e. until a person gave remote again)."""
        moves = await self._audit.moves(self.loop.name, now - RATE_WINDOW_S)
        last = await self._audit.last("cycle", self.loop.name)
        baseline = None
        if last is not None:
            guard_rec = last.get("guard") or {}
            baseline = guard_rec.get("baseline") if last.get("handshake") else None
            if str(last.get("reason", "")).startswith(("safety stop", "safety_stop")):
                self.stopped = "safety stop before the restart; waiting for the PLC to go local"
                self._stop_clears_on_local = True
        self.baseline = baseline if isinstance(baseline, int | float) else None
        if moves:
            self.history = MoveHistory(tuple(moves), moves[-1][0], None)

    async def _moved(self, frm: float, to: float) -> None:
        """The PLC may have applied a write: count it and record it before anything else."""
        now = self._clock.now()
        self.history = MoveHistory(
            (*(m for m in self.history.moves if m[0] > now - RATE_WINDOW_S), (now, frm, to)),
            now,
            self.history.baseline,
        )
        body = {"tag": self.loop.target_tag, "from": frm, "value": to}
        await asyncio.shield(self._audit.record("setpoint_write", body, loop=self.loop.name,
                                                move=(frm, to)))  # fmt: skip

    async def cycle(self) -> dict[str, Any]:
        """One decision, recorded; returns the audit record."""
        started = time.perf_counter()
        now = self._clock.now()
        lp, st = self.loop, self.stats
        rec: dict[str, Any] = {
            "mode": lp.mode,
            "decided_at": now,
            "verdicts": [],
            "outcome": "blocked",
        }
        try:
            await self._decide(now, rec, started)
        except BlockedError as blocked:
            rec["verdicts"].append(vars(blocked.verdict))
            rec["reason"] = f"{blocked.verdict.gate}: {blocked.verdict.reason}"
        st.cycles += 1
        st.outcomes[rec["outcome"]] += 1
        for v in rec["verdicts"]:
            st.verdicts[(v["gate"], "pass" if v["ok"] else "refuse")] += 1
        st.last = {"time": now, **{k: rec.get(k) for k in _LAST_KEYS}}
        if self.stopped is not None:
            st.state = f"stopped: {self.stopped}"
        if said := self._episode.cycle(rec["outcome"] == "blocked", str(rec.get("reason"))):
            say = log.warning if said.event == "loop_blocked" else log.info
            say(said.event, loop=lp.name, reason=said.reason, cycles=said.cycles)
        return await self._audit.record("cycle", rec, loop=lp.name)

    def _pass(self, rec: dict[str, Any], verdict: Verdict) -> None:
        if not verdict.ok:
            raise BlockedError(verdict)
        rec["verdicts"].append(vars(verdict))

    async def _decide(self, now: float, rec: dict[str, Any], started: float) -> None:
        lp = self.loop
        if self.stopped is not None:
            remote = self._latest.get(lp.enable_tag or "")
            local = remote is not None and remote.quality is Quality.GOOD and not remote.value
            if not (self._stop_clears_on_local and local):
                raise BlockedError(Verdict("safety_stop", False, self.stopped))
            why = "cleared: the PLC went back to local control after the stop"
            rec["verdicts"].append(vars(Verdict("safety_stop", True, why)))
            self.stopped, self._stop_clears_on_local, self.baseline = None, False, None
            self.stats.state = "running"
        writes = lp.mode in ("advisory", "closed_loop")
        if writes:
            hs = self._handshake(now)
            rec["handshake"] = {
                "remote": sample_record(self._latest.get(lp.enable_tag or "")),
                "echo": sample_record(self._latest.get(lp.heartbeat_echo_tag or "")),
                "sent": self.heartbeat.sent if self.heartbeat else None,
            }
            if not hs.ok:
                self.baseline = None  # a new grant takes a new baseline
            self._pass(rec, hs)
        session = self._models.session(lp.model)
        if session is None:
            raise BlockedError(Verdict("model", False, f"no valid version of model '{lp.model}'"))
        m = session.manifest
        rec["model"] = {"name": m.name, "version": m.version, "sha256": m.model.sha256}
        x = features_for(
            lp,
            session,
            latest=self._latest,
            windows=self.inputs.windows,
            bias=self.inputs.bias,
            mean=self.inputs.mean,
            now=now,
            rec=rec,
        )
        t0 = time.perf_counter()
        try:
            rows, choice = infer(lp, x, session, self._latest)
        except ModelRejectedError as exc:
            await self._models.report(lp.model, m.version, False, str(exc))
            raise BlockedError(Verdict("inference", False, str(exc))) from None
        self.stats.inference_s.append(time.perf_counter() - t0)
        await self._models.report(lp.model, m.version, True, "ok")
        rec["verdicts"].append(vars(Verdict("inference", True, f"{rows} rows, finite")))
        rec.update(choice)
        feasible = (choice.get("candidates") or {}).get("feasible", True)
        if not feasible and self._feasible:  # plant-model 2.3 step 6: alarm, once an episode
            log.warning("loop_no_feasible_candidate", loop=lp.name,
                        reason=choice["candidates"]["reason"])  # fmt: skip
        self._feasible = bool(feasible)
        target = choice["target"]
        current = self.act.current()
        if current is None:
            raise BlockedError(Verdict("readback", False, "the effective setpoint is not readable"))
        if self.baseline is None:
            self.baseline = current
        result = guard(
            current=current,
            target=target,
            limits=self._limits(),
            now=now,
            history=MoveHistory(self.history.moves, self.history.last_move_time, self.baseline),
        )
        rec["guard"] = {
            "current": current,
            "target": target,
            "baseline": self.baseline,
            "value": result.value,
            "clamped": result.clamped,
        }
        rec["verdicts"].extend(vars(v) for v in result.verdicts)
        rec["decision_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        if result.value is None:
            rec["outcome"], rec["reason"] = "hold", f"guard: {result.reason}"
            return None
        rec["suggestion"] = result.value
        return await self._act(current, result.value, choice, rec, now=now, started=started)

    async def _act(
        self,
        current: float,
        value: float,
        choice: dict[str, Any],
        rec: dict[str, Any],
        *,
        now: float,
        started: float,
    ) -> None:
        """Shadow: log; advisory: show and wait for the ack; closed loop (or acked): write."""
        lp = self.loop
        if lp.mode == "shadow":
            rec["outcome"], rec["reason"] = "shadow", "shadow mode: suggestion logged only"
            return None
        if lp.mode == "advisory" and not await self.act.advise(value, choice, rec, now):
            return None
        # Whenever the PLC may have applied the value, self._moved has counted and recorded the
        # move before the read-back wait (the guard's rate and interval see it, also after a
        # restart), whatever the read-back then says.
        outcome = await self.act.write(current, value, rec, started, self._moved)
        self.stats.writes[outcome] += 1
        if outcome == "readback_mismatch":
            self._safety_stop(rec["write"]["reason"])
            rec["outcome"], rec["reason"] = "blocked", f"safety stop: {rec['write']['reason']}"
        elif outcome != "ok":
            rec["reason"] = f"write: {rec['write']['reason']}"
        else:
            rec["outcome"] = "write"

    def _handshake(self, now: float) -> Verdict:
        lp = self.loop
        hb = self.heartbeat
        if hb is not None and hb.stopped is not None:
            return Verdict("handshake", False, f"heartbeat stopped: {hb.stopped}")
        return check_handshake(
            remote_active=self._latest.get(lp.enable_tag or ""),
            heartbeat_sent=hb.sent if hb is not None else None,
            heartbeat_echo=self._latest.get(lp.heartbeat_echo_tag or ""),
            now=now,
            max_age_s=lp.heartbeat_max_age_s,
            echo_lag_max=lp.heartbeat_echo_lag_max,
            counter_modulus=hb.counter.size if hb is not None else None,
            remote_max_age_s=lp.enable_max_age_s if lp.enable_max_age_s else math.inf,
        )

    def _limits(self) -> GuardLimits:
        lp = self.loop
        lo, hi = self.act.hard_limits()
        return GuardLimits(
            lp.envelope_min,
            lp.envelope_max,
            lp.max_step,
            lp.max_rate_per_h,
            lp.min_interval_s,
            lp.deadband,
            lp.max_deviation_from_baseline,
            lo,
            hi,
        )

    def _safety_stop(self, reason: str) -> None:
        self.stopped = reason
        self.stats.state = f"stopped: {reason}"
        log.error("loop_safety_stop", loop=self.loop.name, reason=reason)
        if self.heartbeat is not None:
            self.heartbeat.stop(f"loop {self.loop.name}: {reason}")
