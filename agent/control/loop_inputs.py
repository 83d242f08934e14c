"""What a control loop hands the pure gates: gate 1's evidence and the guard's limits.

Owns: `handshake` (gate 1 on the loop's RemoteActive, heartbeat echo and the counter its
heartbeat last sent; a stopped heartbeat refuses) and `guard_limits` (the loop's
configured limits with the target tag's hard write limits).
Must not: decide anything itself (agent.control.gates and agent.control.guard do), write,
log or wait.
Invariants: reads only the latest samples and the heartbeat's state; a missing enable or
echo tag reads as no sample, which gate 1 refuses.
"""

from __future__ import annotations

import math

from agent.config.settings import Loop
from agent.control.gates import Verdict, check_handshake
from agent.control.guard import GuardLimits
from agent.control.heartbeat import Heartbeat
from agent.domain.latest import LatestValues

__all__ = ["guard_limits", "handshake"]


def handshake(lp: Loop, latest: LatestValues, hb: Heartbeat | None, now: float) -> Verdict:
    """Gate 1 for the loop `lp` now."""
    if hb is not None and hb.stopped is not None:
        return Verdict("handshake", False, f"heartbeat stopped: {hb.stopped}")
    return check_handshake(
        remote_active=latest.get(lp.enable_tag or ""),
        heartbeat_sent=hb.sent if hb is not None else None,
        heartbeat_echo=latest.get(lp.heartbeat_echo_tag or ""),
        now=now,
        max_age_s=lp.heartbeat_max_age_s,
        echo_lag_max=lp.heartbeat_echo_lag_max,
        counter_modulus=hb.counter.size if hb is not None else None,
        remote_max_age_s=lp.enable_max_age_s if lp.enable_max_age_s else math.inf,
    )


def guard_limits(lp: Loop, hard: tuple[float, float]) -> GuardLimits:
    """The guard's limits of the loop `lp`, with the target tag's hard limits `hard`."""
    return GuardLimits(lp.envelope_min, lp.envelope_max, lp.max_step, lp.max_rate_per_h,
                       lp.min_interval_s, lp.deadband, lp.max_deviation_from_baseline,
                       *hard)  # fmt: skip
