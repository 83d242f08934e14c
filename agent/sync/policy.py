"""The uploader's decisions, as plain functions over values (the sync API's rules).

Owns: what a receiver's answer means (ack, retry after a delay hint, or quarantine the block),
parsing ``Retry-After`` (seconds or an HTTP date), the order blocks go out in (catalogs, then
live blocks, then the backlog oldest first), how many requests may be in flight, the bandwidth
token bucket's arithmetic, the failure streak behind the retry gate, the backlog drain's
progress and ETA, and the alert recorded for a quarantined block.

Must not: do I/O, read a clock, sleep, or import httpx/asyncio: the uploader hands in times,
statuses and blocks, and does the waiting and the sending itself.

Invariants:
- 2xx is the only ack. 408, 425, 429, 5xx, any status outside 100..599, 1xx and 3xx are retried,
  and so are 401/403/404/407: they refuse the agent (token, permissions, URL, proxy), not the
  block, and quarantining every block on a configuration typo would empty the buffer. Every
  other 4xx quarantines that one block.
- A Retry-After hint is never negative; an unparseable one is ignored (None).
- ``pick_next`` returns a block that is not busy, ranked catalog < live < backlog, then by
  its failed attempts, then by ``seq``; it never invents a block and is deterministic.
- The token bucket never holds more than ``capacity`` tokens; a block may overdraw it (so a
  block larger than the burst still goes out) and the debt is paid back at ``rate`` before the
  next one: bytes sent over any interval T stay below ``capacity + rate * T + one block``.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar

from agent.buffer.blocks import BlockKind

__all__ = [
    "BLOCK_MEDIA_TYPE",
    "BlockLike",
    "Drain",
    "DrainEvent",
    "Outcome",
    "Streak",
    "TokenBucket",
    "Verdict",
    "classify",
    "eta_s",
    "in_flight_limit",
    "is_backlog",
    "is_live",
    "live_window_s",
    "parse_retry_after",
    "pick_next",
    "quarantine_alert",
]

BLOCK_MEDIA_TYPE = "application/vnd.edge-agent.block"

_AGENT_REFUSALS = {
    401: "unauthorized: the receiver refused the token (check sync.token_file)",
    403: "forbidden: the receiver refused this agent (check its id and the token)",
    404: "not found: no sync endpoint at this address (check sync.url)",
    407: "proxy authentication required (check the proxy environment variables)",
}
_RETRYABLE_4XX = {408: "request timeout", 425: "too early", 429: "too many requests"}


class Verdict(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Outcome:
    """What to do with a block after one attempt. ``retry_after_s`` only for RETRY."""

    verdict: Verdict
    reason: str
    retry_after_s: float | None = None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110).

    now: unix seconds, to turn a date into a delay. A date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "¹" and "٣" are digits to str.isdigit, not to float
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete one may lack the zone
        return None
    return max(0.0, when.timestamp() - now)


def classify(status: int, retry_after: str | None, now: float) -> Outcome:
    """The verdict for an HTTP status (and its Retry-After header, if any)."""
    if 200 <= status < 300:
        return Outcome(Verdict.ACK, f"HTTP {status}")
    hint = parse_retry_after(retry_after, now)
    if status in _AGENT_REFUSALS:
        return Outcome(Verdict.RETRY, f"HTTP {status} {_AGENT_REFUSALS[status]}", hint)
    if status in _RETRYABLE_4XX:
        return Outcome(Verdict.RETRY, f"HTTP {status} {_RETRYABLE_4XX[status]}", hint)
    if 400 <= status < 500:
        return Outcome(Verdict.QUARANTINE, f"HTTP {status}: the receiver refused this block")
    if 500 <= status < 600:
        return Outcome(Verdict.RETRY, f"HTTP {status} server error", hint)
    if 300 <= status < 400:
        return Outcome(Verdict.RETRY, f"HTTP {status} redirect (check sync.url)", hint)
    return Outcome(Verdict.RETRY, f"HTTP {status} unexpected status", hint)


def quarantine_alert(
    *, seq: int, status: int, reason: str, detail: str, now: float
) -> dict[str, Any]:
    """The alert event recorded (and uploaded like any event) for a quarantined block."""
    return {
        "kind": "sync_block_quarantined",
        "time": now,
        "seq": seq,
        "status": status,
        "reason": reason,
        "detail": detail[:500],
    }


# -- scheduling ---------------------------------------------------------------------------


class BlockLike(Protocol):
    """What scheduling needs of a buffered block."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> BlockKind: ...
    @property
    def created(self) -> float: ...


B = TypeVar("B", bound=BlockLike)


def live_window_s(flush_interval_s: float) -> float:
    """How old (by creation time) a block may be and still count as live data."""
    return max(10.0, 5 * flush_interval_s)


def is_live(created: float, now: float, window_s: float) -> bool:
    """Whether a block created at ``created`` (unix s) is live at ``now``."""
    return now - created <= window_s


def _class(block: BlockLike, now: float, window_s: float) -> int:
    if block.kind == BlockKind.CATALOG:
        return 0
    return 1 if is_live(block.created, now, window_s) else 2


def is_backlog(block: BlockLike, now: float, window_s: float) -> bool:
    """A block that is neither a catalog nor live: it waits behind those."""
    return _class(block, now, window_s) == 2


def pick_next(
    candidates: Iterable[B],
    busy: Container[int],
    now: float,
    window_s: float,
    failures: Mapping[int, int] | None = None,
) -> B | None:
    """The block to send next: catalogs first (a telemetry block needs its catalog to be
    decoded), then live blocks, then the backlog; within each, blocks that failed fewer times
    first (one block the receiver keeps failing on must not hold back the rest), then oldest
    first (by ``seq``). ``failures``: failed attempts per seq."""
    failed = failures or {}
    best: B | None = None
    best_rank = (3, 0, 0)
    for block in candidates:
        if block.seq in busy:
            continue
        rank = (_class(block, now, window_s), failed.get(block.seq, 0), block.seq)
        if rank < best_rank:
            best, best_rank = block, rank
    return best


def in_flight_limit(concurrency: int, consecutive_failures: int) -> int:
    """Requests allowed in flight: one probe while failing, ``concurrency`` once healthy."""
    return 1 if consecutive_failures else max(1, concurrency)


def eta_s(remaining: float, rate_per_s: float | None) -> float | None:
    """Seconds to finish ``remaining`` at ``rate_per_s``; None when the rate is unknown."""
    if rate_per_s is None or not rate_per_s > 0 or not math.isfinite(rate_per_s):
        return None
    return max(0.0, remaining) / rate_per_s


# -- bandwidth ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenBucket:
    """Bytes allowed to go out: ``rate`` bytes/s (0 = unlimited), bursts up to ``capacity``."""

    rate: float
    capacity: float
    tokens: float
    stamp: float

    @classmethod
    def start(cls, rate: float, now: float, burst_s: float = 1.0) -> TokenBucket:
        """A full bucket for ``rate`` bytes/s with ``burst_s`` seconds of burst."""
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        capacity = rate * burst_s
        return cls(rate=rate, capacity=capacity, tokens=capacity, stamp=now)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def refilled(self, now: float) -> TokenBucket:
        if self.unlimited or now <= self.stamp:
            return self
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        return replace(self, tokens=tokens, stamp=now)

    def wait_s(self, nbytes: int, now: float) -> float:
        """Seconds until a block of ``nbytes`` may go out (0 = now)."""
        if self.unlimited:
            return 0.0
        needed = min(float(nbytes), self.capacity)
        tokens = self.refilled(now).tokens
        return 0.0 if tokens >= needed else (needed - tokens) / self.rate

    def took(self, nbytes: int, now: float) -> TokenBucket:
        """The bucket after sending ``nbytes`` at ``now`` (may go into debt)."""
        if self.unlimited:
            return self
        bucket = self.refilled(now)
        return replace(bucket, tokens=bucket.tokens - nbytes)


# -- failure streaks and backlog drains ---------------------------------------------------


@dataclass(frozen=True)
class Streak:
    """Consecutive failed attempts and the retry gate they set.

    generation: bumped at every counted failure and at recovery; an attempt remembers the
    generation it was sent in, so the other requests that were in flight when the receiver
    went away neither count as one more failure (growing the backoff) nor, when they
    succeed, end the streak and lift the gate early.
    gate: monotonic time before which no request starts.
    """

    failures: int = 0
    generation: int = 0
    gate: float = 0.0
    since: float = 0.0
    kind: str = ""

    def failed(self, *, sent_in: int, kind: str, delay_s: float, now: float) -> Streak | None:
        """The streak after a failure, or None when the attempt predates the last change."""
        if sent_in != self.generation:
            return None
        since = self.since if self.failures else now
        return Streak(self.failures + 1, self.generation + 1, now + delay_s, since, kind)

    def hold(self, until: float) -> Streak:
        """The gate kept closed until at least ``until`` (a stale failure's Retry-After)."""
        return replace(self, gate=max(self.gate, until))

    def is_news(self, previous: Streak) -> bool:
        """Whether this failure is logged at WARNING: first of a streak, or a new kind."""
        return self.failures == 1 or self.kind != previous.kind

    def succeeded(self, *, sent_in: int) -> Streak:
        """The streak after a 2xx: over, unless that request predates the last failure (then
        the gate stands: a ``Retry-After`` is about the agent, not about one block)."""
        if not self.failures or sent_in != self.generation:
            return self
        return Streak(generation=self.generation + 1)


DrainEvent = Literal["sync_backlog_draining", "sync_backlog_progress", "sync_backlog_drained"]


@dataclass(frozen=True)
class Drain:
    """A backlog being drained: since when, how many of its blocks were acked, next report."""

    active: bool = False
    started: float = 0.0
    acked: int = 0
    next_report: float = 0.0

    def picked(
        self, *, backlog: bool, idle: bool, now: float, every_s: float
    ) -> tuple[Drain, DrainEvent | None]:
        """After choosing the next block (``backlog``) or finding none with nothing in flight
        (``idle``): the new state and the log event due, if any."""
        if backlog and not self.active:
            return Drain(True, now, 0, now + every_s), "sync_backlog_draining"
        if backlog and now >= self.next_report:
            return replace(self, next_report=now + every_s), "sync_backlog_progress"
        if idle and self.active:
            return replace(self, active=False), "sync_backlog_drained"
        return self, None

    def acked_one(self) -> Drain:
        return replace(self, acked=self.acked + 1) if self.active else self

    def blocks_per_s(self, now: float) -> float | None:
        elapsed = now - self.started
        return self.acked / elapsed if self.active and self.acked and elapsed > 0 else None
