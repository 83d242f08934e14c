"""Acting on a control decision: the setpoint write with its read-back, and advisory tags.

Owns: reading the effective setpoint (`current`), the target tag's hard limits, the write
protocol of plant-model 3 E (write once, check the status, then wait for the effective
setpoint to follow within readback_timeout_s and readback_tolerance; a mismatch while the
PLC still grants remote is a safety event; remote withdrawn during the wait is not), and
advisory mode (write the suggestion, its id and its predicted effect to HMI tags; act only
when the operator writes that id to the acknowledgement tag before it expires). Each
step answers with typed record parts (agent.control.record): the write with its read-back,
the advice; durations are measured on the injected clock.
Must not: decide whether to write (agent.control.loop runs the gates and the guard first),
retry a write, replay a suggestion after a restart (pending advice lives in memory only),
or name what the advice's effect is (the loop's objective does).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from agent.config.settings import Loop, Tag
from agent.control.record import Advice, Outcome, ReadBack, WriteRecord, WriteStatus
from agent.domain.clock import Clock
from agent.domain.errors import ConnectionLostError, RetryableError, WriteRejectedError
from agent.domain.latest import LatestValues
from agent.domain.logger import get_logger
from agent.domain.samples import Driver, Quality

__all__ = ["READBACK_POLL_S", "Actor", "AdviceStep", "WriteOutcome"]

READBACK_POLL_S = 0.05
log = get_logger(__name__)


class WriteOutcome(StrEnum):
    """How a write ended (the loop counts them in `LoopStats.writes`)."""

    OK = "ok"  # accepted and read back
    REJECTED = "rejected"
    CONNECTION_LOST = "connection_lost"
    UNKNOWN = "unknown"
    READBACK_MISMATCH = "readback_mismatch"
    REMOTE_WITHDRAWN = "remote_withdrawn"


@dataclass(frozen=True)
class AdviceStep:
    """What advisory mode did this cycle: `act` (the operator acknowledged this value: write
    it), else the cycle's outcome and reason; the advice shown and the advice that expired."""

    act: bool
    advice: Advice | None = None
    expired: Advice | None = None
    outcome: Outcome | None = None
    reason: str | None = None


class Actor:
    """Writes for one loop through the drivers of its tags."""

    def __init__(
        self,
        loop: Loop,
        *,
        tags: Mapping[str, Tag],
        drivers: Mapping[str, Driver],
        latest: LatestValues,
        clock: Clock,
    ) -> None:
        self.loop, self._tags, self._drivers = loop, tags, drivers
        self._latest, self._clock = latest, clock
        self.readback = loop.readback_tag or loop.target_tag
        self.pending: Advice | None = None  # the advice waiting for an ack
        self.decision_s: list[float] = []

    def _value(self, tag: str | None) -> float | None:
        s = self._latest.get(tag) if tag else None
        if s is None or s.quality is not Quality.GOOD or isinstance(s.value, bool):
            return None
        v = s.value
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    def current(self) -> float | None:
        """The effective setpoint now (Good and finite), or None."""
        return self._value(self.readback)

    def hard_limits(self) -> tuple[float, float]:
        tag = self._tags[self.loop.target_tag]
        lo = tag.write_min if tag.write_min is not None else -math.inf
        hi = tag.write_max if tag.write_max is not None else math.inf
        return lo, hi

    def _remote(self) -> bool:
        s = self._latest.get(self.loop.enable_tag) if self.loop.enable_tag else None
        return s is not None and s.quality is Quality.GOOD and s.value in (True, 1)

    async def _write(self, tag: str, value: float | int) -> tuple[str, str | None]:
        """Write once: ("accepted", None); ("rejected", why) or ("not_sent", why): not
        applied; ("unknown", why): the request may have reached the PLC (a timeout or a
        connection lost mid-request), so it may have been applied."""
        try:
            await self._drivers[tag].write(tag, value)
        except WriteRejectedError as exc:
            return "rejected", str(exc)
        except ConnectionLostError as exc:
            text = str(exc)
            return ("not_sent" if "not connected" in text else "unknown"), text
        except RetryableError as exc:
            return "unknown", str(exc)
        return "accepted", None

    async def write(
        self,
        current: float,
        value: float,
        started: float,
        on_move: Callable[[float, float], Awaitable[None]],
    ) -> tuple[WriteOutcome, WriteRecord]:
        """The write protocol: how it ended, and its record. `started` is the cycle's start
        on the clock's monotonic time; `on_move` runs as soon as the PLC may have applied the
        value, before the read-back wait (which a shutdown may cut short)."""
        lp, mono = self.loop, self._clock.monotonic
        issued = mono()
        self.decision_s.append(issued - started)
        del self.decision_s[:-1000]
        before = self._latest.get(self.readback)  # a read-back must be a newer sample
        status, problem = await self._write(lp.target_tag, value)
        w = WriteRecord(lp.target_tag, current, value, round((issued - started) * 1000, 3),
                        WriteStatus.ACCEPTED)  # fmt: skip
        if status in ("rejected", "not_sent"):
            rejected = status == "rejected"
            w = replace(w, reason=problem, status=WriteStatus.REJECTED if rejected else
                        WriteStatus.CONNECTION_LOST)  # fmt: skip
            log.warning("setpoint_write_failed", loop=lp.name, value=value, error=problem)
            return (WriteOutcome.REJECTED if rejected else WriteOutcome.CONNECTION_LOST), w
        await on_move(current, value)
        if status == "unknown":
            w = replace(w, status=WriteStatus.UNKNOWN,
                        reason=f"{problem} (the value may have been applied)")  # fmt: skip
            log.warning("setpoint_write_unknown", loop=lp.name, value=value, error=problem)
            return WriteOutcome.UNKNOWN, w
        sent = mono()
        deadline = sent + lp.readback_timeout_s
        seen: float | None = None
        while True:
            s = self._latest.get(self.readback)
            seen = self._value(self.readback)
            fresh = s is not None and s is not before  # judged on the PLC's samples only
            if seen is not None and abs(seen - value) <= lp.readback_tolerance and fresh:
                w = replace(w, readback=ReadBack(seen, round(mono() - sent, 3)))
                log.info(
                    "setpoint_written",
                    loop=lp.name,
                    tag=lp.target_tag,
                    value=value,
                    previous=current,
                    readback=seen,
                )
                return WriteOutcome.OK, w
            if not self._remote():
                why = "the PLC withdrew remote during the read-back"
                return WriteOutcome.REMOTE_WITHDRAWN, replace(w, readback=ReadBack(seen),
                                                               reason=why)  # fmt: skip
            if mono() >= deadline:
                break
            await self._clock.sleep(READBACK_POLL_S)
        reason = (
            f"read-back mismatch: {self.readback} = {seen} after {lp.readback_timeout_s:g} s,"
            f" expected {value:g} +- {lp.readback_tolerance:g}"
        )
        return WriteOutcome.READBACK_MISMATCH, replace(w, readback=ReadBack(seen), reason=reason)

    async def advise(
        self, value: float, effect: tuple[str, float | None], now: float
    ) -> AdviceStep:
        """Advisory mode: publish the suggestion with its predicted effect (the objective's
        metric name and value); `act` when the operator acknowledged it."""
        lp, pending = self.loop, self.pending
        ack = self._latest.get(lp.ack_tag) if lp.ack_tag else None
        expired = None
        if pending is not None and now - pending.time > lp.advice_expiry_s:
            expired, pending = pending, None
            self.pending = None
        acked = (
            pending is not None
            and ack is not None
            and ack.quality is Quality.GOOD
            and ack.value == pending.id
            and ack.source_time >= pending.time - 1.0
        )
        if acked and pending is not None and ack is not None:
            shown = replace(pending, acknowledged=True, ack_time=ack.source_time)
            self.pending = None
            if abs(pending.value - value) > max(lp.deadband, 1e-9):
                return AdviceStep(False, shown, expired, Outcome.HOLD,
                                  "acknowledged advice is out of date")  # fmt: skip
            return AdviceStep(True, shown, expired)
        if pending is not None and abs(pending.value - value) <= max(lp.deadband, 1e-9):
            return AdviceStep(False, replace(pending, acknowledged=False), expired,
                              Outcome.ADVISE, "waiting for the operator")  # fmt: skip
        advice = Advice(int(now) % 2**31, value, now, effect[0], effect[1])
        # The id last: an HMI (and an operator) that sees a new id sees its value and effect.
        for tag, v in (
            (lp.advice_value_tag, value),
            (lp.advice_effect_tag, advice.effect),
            (lp.advice_id_tag, advice.id),
        ):
            if tag is not None and v is not None:
                status, problem = await self._write(tag, v)
                if status != "accepted":
                    return AdviceStep(False, advice, expired, Outcome.BLOCKED,
                                      f"advice write: {problem}")  # fmt: skip
        self.pending = advice
        return AdviceStep(False, replace(advice, acknowledged=False), expired, Outcome.ADVISE,
                          "suggestion shown to the operator")  # fmt: skip
