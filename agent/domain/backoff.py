"""The one backoff policy for every reconnect, retry and restart in the agent.

Owns: how long to wait before attempt ``n`` of something that keeps failing: drivers
reconnecting to a PLC, the uploader retrying the cloud, the supervisor restarting a task.

Must not: sleep, read a clock, draw random numbers or import anything beyond the standard
library (pure: the caller supplies ``rand`` and does the waiting). No per-caller variants:
a component that needs other numbers gets another ``Backoff`` value, not another policy.

The policy (exponential, capped, symmetric multiplicative jitter):

    base(n)  = min(max_s, initial_s * multiplier ** n)          n = attempt, 0 for the first retry
    delay(n) = base(n) * (1 + jitter * (2 * rand - 1))          rand in [0, 1)

So ``delay`` lies in ``[base * (1 - jitter), base * (1 + jitter))``, its mean is exactly
``base`` (jitter spreads a fleet of agents reconnecting after a plant-wide outage without
making anyone wait longer on average), and the jitter stays in force at the cap so agents
that all reached ``max_s`` do not synchronise. Chosen over "equal jitter" (base/2 + rand *
base/2), which halves the mean and makes the first retry unpredictably short.

Invariants (property-tested): ``0 < delay <= max_s * (1 + jitter)``; for a fixed ``rand`` the
delay never decreases as ``attempt`` grows; ``rand = 0.5`` gives exactly ``base``; huge
attempts saturate at the cap instead of overflowing. ``delay_with_hint`` is never below
``delay`` and never above ``max(max_s * (1 + jitter), max_hint_s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with symmetric jitter; see the module docstring for the formula.

    initial_s: delay before the first retry (attempt 0), before jitter.
    max_s: cap on the delay before jitter.
    multiplier: growth factor per attempt (>= 1).
    jitter: fraction of the delay randomised either side, in [0, 1).
    max_hint_s: cap on a server's Retry-After hint, so a bogus hint cannot park a retry loop
        for days (15 minutes by default: the buffer rides out far longer outages).
    """

    initial_s: float = 0.5
    max_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_hint_s: float = 900.0

    def __post_init__(self) -> None:
        for name in ("initial_s", "max_s", "multiplier", "jitter", "max_hint_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Backoff.{name} must be finite, got {getattr(self, name)}")
        if self.initial_s <= 0:
            raise ValueError(f"Backoff.initial_s must be > 0, got {self.initial_s}")
        if self.max_s < self.initial_s:
            raise ValueError(f"Backoff.max_s ({self.max_s}) must be >= initial_s")
        if self.multiplier < 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1), got {self.jitter}")
        if self.max_hint_s < 0:
            raise ValueError(f"Backoff.max_hint_s must be >= 0, got {self.max_hint_s}")

    def base(self, attempt: int) -> float:
        """The delay before attempt ``attempt`` (0 = first retry) without jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            grown = self.initial_s * self.multiplier**attempt
        except OverflowError:
            return self.max_s
        return min(self.max_s, grown)

    def delay(self, attempt: int, rand: float) -> float:
        """The jittered delay before attempt ``attempt``; ``rand`` is uniform in [0, 1)."""
        if not 0 <= rand < 1:
            raise ValueError(f"rand must be in [0, 1), got {rand}")
        return self.base(attempt) * (1 + self.jitter * (2 * rand - 1))

    def delay_with_hint(self, attempt: int, rand: float, retry_after_s: float | None) -> float:
        """Like ``delay``, but never sooner than the peer asked (hint capped at ``max_hint_s``).

        A missing, negative or NaN hint is ignored; an infinite one is capped.
        """
        computed = self.delay(attempt, rand)
        if retry_after_s is None or math.isnan(retry_after_s):
            return computed
        return max(computed, min(retry_after_s, self.max_hint_s))
