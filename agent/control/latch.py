"""What a control loop carries over a restart: its safety latch and the operator's baseline.

Owns: the safety stop as a typed value (`SafetyStop`: a `StopCode`, the reason in words and
when it was decided), `carried`: what a restarted loop takes over from the JSON of its
last cycle record (agent.control.record writes `safety_stop` and `baseline` into every
cycle record, null when none; the handshake's RemoteActive source time says which grant
the baseline belongs to), and `same_grant`: whether the grant the PLC shows now is that one.
Must not: do I/O, read a clock, log, or decide whether a stop clears (agent.control.loop
does: a stop taken over from before a restart holds until the PLC has been back in local
control).
Invariants: `carried` reads the typed fields whenever the record has them, and never its
text; the previous version's text form (a `reason` beginning "safety stop") is read only for
a record written before the typed fields existed. Anything in the typed field but null
(`{}`, false, 0, "" and [] included) is a stop, `StopCode.UNKNOWN` when unreadable: a latch
fails closed. A carried baseline is kept only for the same grant: a RemoteActive sample
newer than the one the record saw (the operator gave remote again meanwhile, maybe after
moving the setpoint by hand), or no grant time to compare, takes a fresh baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Carried", "SafetyStop", "StopCode", "carried", "same_grant"]

Json = dict[str, Any]


class StopCode(StrEnum):
    """Why a loop stopped for safety (it then writes nothing until a person intervenes)."""

    READBACK_MISMATCH = "readback_mismatch"
    """The effective setpoint did not follow an accepted write while the PLC granted remote."""
    UNKNOWN = "unknown"
    """Recorded in a form this version cannot read: it holds all the same (fails closed)."""


@dataclass(frozen=True)
class SafetyStop:
    """A loop's safety stop: its code, what happened, and when it was decided (unix s)."""

    code: StopCode
    reason: str
    since: float

    def to_json(self) -> Json:
        return {"code": self.code.value, "reason": self.reason, "since": self.since}

    @classmethod
    def from_json(cls, raw: object, since: float) -> SafetyStop | None:
        """The typed field as stored (None: no stop); anything unreadable is a stop."""
        if raw is None:
            return None
        if isinstance(raw, dict):
            code, reason, at = raw.get("code"), raw.get("reason"), _number(raw.get("since"))
            if code in tuple(StopCode) and isinstance(reason, str) and at is not None:
                return cls(StopCode(code), reason, at)
        return cls(StopCode.UNKNOWN, f"unreadable safety stop in the record: {raw!r:.200}", since)


def _number(v: object) -> float | None:
    """A finite number (not a bool), else None."""
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


@dataclass(frozen=True)
class Carried:
    """What a restarted loop takes over from its last cycle record."""

    safety_stop: SafetyStop | None = None
    baseline: float | None = None
    granted_at: float | None = None
    """The source time of the RemoteActive sample the record's handshake saw (None: none)."""
    confirmed_at: float | None = None
    """When the operator last confirmed the baseline (the grant's time when the record
    predates `baseline_confirmed_at`): the baseline's auto-expiry runs on across a restart."""
    product: str | None = None
    """The product the loop ran in that cycle (None: no product table, or none known)."""


_LEGACY_STOP = ("safety stop", "safety_stop")
"""How the previous version's `reason` began when the loop was stopped for safety."""


def carried(body: Mapping[str, Any] | None) -> Carried:
    """The state a loop's last cycle record hands to the next process (None: no record)."""
    if body is None:
        return Carried()
    at = _number(body.get("decided_at")) or _number(body.get("time")) or 0.0
    granted_at = _granted_at(body.get("handshake"))
    if "safety_stop" in body:  # typed: this version and later
        stop = SafetyStop.from_json(body["safety_stop"], at)
        confirmed = _number(body.get("baseline_confirmed_at"))
        baseline = _number(body.get("baseline"))
        part = body.get("product")
        name = part.get("running") if isinstance(part, dict) else None
        product = name if isinstance(name, str) else None
        return Carried(stop, baseline, granted_at, confirmed or granted_at, product)
    # Written before the typed fields: the previous version's text form, read only here.
    guard = body.get("guard")
    baseline = guard.get("baseline") if isinstance(guard, dict) and body.get("handshake") else None
    reason = str(body.get("reason", ""))
    stop = None
    if reason.startswith(_LEGACY_STOP):
        code = StopCode.READBACK_MISMATCH if "read-back mismatch" in reason else StopCode.UNKNOWN
        stop = SafetyStop(code, reason, at)
    return Carried(stop, _number(baseline), granted_at, granted_at)


def _granted_at(handshake: object) -> float | None:
    remote = handshake.get("remote") if isinstance(handshake, dict) else None
    return _number(remote.get("source_time")) if isinstance(remote, dict) else None


def same_grant(granted_at: float | None, remote_source_time: float | None) -> bool:
    """Whether RemoteActive (its source time now) is still the grant a carried record saw: a
    subscription publishes it on change only, so a newer sample is a new grant; unknown on
    either side is not the same grant (the baseline is then taken afresh)."""
    if granted_at is None or remote_source_time is None:
        return False
    return remote_source_time <= granted_at
