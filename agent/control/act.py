"""Acting on a control decision: the setpoint write with its read-back, and advisory tags.

Owns: reading the effective setpoint (`current`), the target tag's hard limits, the write
protocol of plant-model 3 E (write once, check the status, then wait for the effective
setpoint to follow within readback_timeout_s and readback_tolerance; a mismatch while the
PLC still grants remote is a safety event; remote withdrawn during the wait is not), and
advisory mode (write the suggestion, its id and its predicted effect to HMI tags; act only
when the operator writes that id to the acknowledgement tag before it expires).
Must not: decide whether to write (agent.control.loop runs the gates and the guard first),
retry a write, or replay a suggestion after a restart (pending advice lives in memory only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent.config.settings import Loop, Tag
from agent.domain.clock import Clock
from agent.domain.errors import ConnectionLostError, RetryableError, WriteRejectedError
from agent.domain.latest import LatestValues
from agent.domain.logger import get_logger
from agent.domain.samples import Driver, Quality

__all__ = ["READBACK_POLL_S", "Actor"]

READBACK_POLL_S = 0.05
log = get_logger(__name__)


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
        self.pending: dict[str, Any] | None = None  # the advice waiting for an ack
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
        rec: dict[str, Any],
        started: float,
        on_move: Callable[[float, float], Awaitable[None]],
    ) -> str:
        """The write protocol; fills rec["write"]; returns ok / rejected / connection_lost /
        unknown / readback_mismatch / remote_withdrawn. `on_move` runs as soon as the PLC may
        have applied the value, before the read-back wait (which a shutdown may cut short)."""
        lp = self.loop
        issued = time.perf_counter()
        self.decision_s.append(issued - started)
        del self.decision_s[:-1000]
        before = self._latest.get(self.readback)  # a read-back must be a newer sample
        status, problem = await self._write(lp.target_tag, value)
        w: dict[str, Any] = {
            "tag": lp.target_tag,
            "from": current,
            "value": value,
            "decision_ms": round((issued - started) * 1000, 3),
        }
        rec["write"] = w
        if status in ("rejected", "not_sent"):
            w.update(status="rejected" if status == "rejected" else "connection_lost")
            w["reason"] = problem
            log.warning("setpoint_write_failed", loop=lp.name, value=value, error=problem)
            return str(w["status"])
        await on_move(current, value)
        if status == "unknown":
            w.update(status="unknown", reason=f"{problem} (the value may have been applied)")
            log.warning("setpoint_write_unknown", loop=lp.name, value=value, error=problem)
            return "unknown"
        w["status"] = "accepted"
        sent = self._clock.monotonic()
        deadline = sent + lp.readback_timeout_s
        seen: float | None = None
        while True:
            s = self._latest.get(self.readback)
            seen = self._value(self.readback)
            fresh = s is not None and s is not before  # judged on the PLC's samples only
            if seen is not None and abs(seen - value) <= lp.readback_tolerance and fresh:
                w.update(readback=seen, readback_s=round(self._clock.monotonic() - sent, 3))
                log.info(
                    "setpoint_written",
                    loop=lp.name,
                    tag=lp.target_tag,
                    value=value,
                    previous=current,
                    readback=seen,
                )
                return "ok"
            if not self._remote():
                w.update(readback=seen, reason="the PLC withdrew remote during the read-back")
                return "remote_withdrawn"
            if self._clock.monotonic() >= deadline:
                break
            await self._clock.sleep(READBACK_POLL_S)
        reason = (
            f"read-back mismatch: {self.readback} = {seen} after {lp.readback_timeout_s:g} s,"
            f" expected {value:g} +- {lp.readback_tolerance:g}"
        )
        w.update(readback=seen, reason=reason)
        return "readback_mismatch"

    async def advise(
        self, value: float, choice: Mapping[str, Any], rec: dict[str, Any], now: float
    ) -> bool:
        """Advisory mode: publish the suggestion; True when the operator acknowledged it."""
        lp, pending = self.loop, self.pending
        ack = self._latest.get(lp.ack_tag) if lp.ack_tag else None
        if pending is not None and now - pending["time"] > lp.advice_expiry_s:
            rec["advice_expired"] = pending
            pending = self.pending = None
        acked = (
            pending is not None
            and ack is not None
            and ack.quality is Quality.GOOD
            and ack.value == pending["id"]
            and ack.source_time >= pending["time"] - 1.0
        )
        if acked and pending is not None and ack is not None:
            rec["advice"] = {**pending, "acknowledged": True, "ack_time": ack.source_time}
            self.pending = None
            if abs(pending["value"] - value) > max(lp.deadband, 1e-9):
                rec["outcome"], rec["reason"] = "hold", "acknowledged advice is out of date"
                return False
            return True
        if pending is not None and abs(pending["value"] - value) <= max(lp.deadband, 1e-9):
            rec["advice"] = {**pending, "acknowledged": False}
            rec["outcome"], rec["reason"] = "advise", "waiting for the operator"
            return False
        ident = int(now) % 2**31
        effect = choice.get("candidates", {}).get("best", {}).get("s28")
        advice = {"id": ident, "value": value, "time": now, "effect_s28": effect}
        for tag, v in (
            (lp.advice_value_tag, value),
            (lp.advice_id_tag, ident),
            (lp.advice_effect_tag, effect),
        ):
            if tag is not None and v is not None:
                status, problem = await self._write(tag, v)
                if status != "accepted":
                    rec["outcome"], rec["reason"] = "blocked", f"advice write: {problem}"
                    rec["advice"] = advice
                    return False
        self.pending = advice
        rec["advice"] = {**advice, "acknowledged": False}
        rec["outcome"], rec["reason"] = "advise", "suggestion shown to the operator"
        return False
