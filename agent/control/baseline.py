"""The operator's baseline and its auto-expiry (plant-model 3 D: "if there is no new
confirmation within T, the agent stops adjusting and leaves the operator's SP").

Owns: `Confirmation`: when the operator last confirmed the loop's baseline (the grant that
took the baseline is the first confirmation, at the grant's own time: a handshake refused
for a moment, or a restart, under the same grant renews nothing; after it, every change of
the value of the loop's `baseline_confirm_tag`, seen Good, is one: a counter the HMI
increments or a toggle), and whether the baseline has expired (`baseline_expiry_s` since the
last confirmation).
Must not: do I/O, read a clock or log; decide what the loop does when it expired
(agent.control.loop holds: no write, no suggestion, the setpoint stays where it is).
Invariants: without `baseline_expiry_s` nothing expires; a confirmation is never in the future
of the cycle that sees it (a source time ahead of the cycle counts as the cycle's time); the
first value seen of the confirm tag (after a start) is not a confirmation, only a change is;
a new grant is a fresh confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.domain.samples import Quality, Sample

__all__ = ["Confirmation"]


@dataclass
class Confirmation:
    """When the operator last confirmed the baseline (None: no baseline held)."""

    expiry_s: float | None
    at: float | None = None
    _last_value: object = None

    def taken(self, granted_at: float) -> None:
        """A baseline was taken under the grant the PLC shows since `granted_at` (RemoteActive's
        source time): a grant newer than the last confirmation is one. A baseline taken again
        under the same grant (after a refused handshake, a restart) confirms nothing."""
        self.at = granted_at if self.at is None else max(self.at, granted_at)

    def see(self, sample: Sample | None, now: float) -> bool:
        """The confirm tag's latest sample this cycle: True when it is a new confirmation."""
        if sample is None or sample.quality is not Quality.GOOD:
            return False
        previous, self._last_value = self._last_value, sample.value
        if previous is None or previous == sample.value or self.at is None:
            return False
        self.at = min(now, max(self.at, sample.source_time))
        return True

    def expired(self, now: float) -> bool:
        return self.expiry_s is not None and self.at is not None and now - self.at > self.expiry_s

    def reason(self, now: float) -> str:
        age = 0.0 if self.at is None else now - self.at
        return (
            f"baseline expired: no operator confirmation for {age:.0f} s "
            f"(baseline_expiry_s {self.expiry_s:g}); the operator's setpoint stays"
        )
