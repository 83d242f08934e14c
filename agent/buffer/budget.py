"""The buffer's outage budget: how long it can hold out without the cloud, and what it lost.

Owns: ``Counters`` (the immutable figures agent.buffer.store publishes after every
operation), ``OutageBudget`` (the figures /status, /metrics, the systemd status line and the
remote ``buffer_stats`` diagnostic show) and computing it from the store's published
counters, the put-rate meter and the time, including ``problem``: the one line that says the
buffer cannot keep what it is given (a full disk), or None.
Must not: do I/O, touch SQLite, read a clock or log (pure: the time comes in as arguments).
Invariants: ``outage_budget`` is a function of its arguments alone; ``problem`` is not None
exactly while ``disk_full`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.buffer.retention import RateMeter, db_cap_bytes, hours_left

__all__ = ["Counters", "OutageBudget", "outage_budget"]


@dataclass(frozen=True)
class Counters:
    """What the store publishes after every operation (agent.buffer.store fills it)."""

    bytes_used: int
    blocks_pending: int
    samples_pending: int
    oldest_created: float | None
    evictions: Mapping[str, int]
    quarantined: int
    next_seq: int
    dropped_samples: Mapping[str, int]
    dropped_blocks: Mapping[str, int]
    disk_full: bool
    disk_free_bytes: int | None
    capacity_bytes: int | None  # what the cap and the disk let the database use


@dataclass(frozen=True)
class OutageBudget:
    """How long the buffer can hold out without the cloud, from in-memory counters.

    bytes_used: pages in use in the database file; max_bytes: the configured cap (the WAL's
    share and a small reserve are kept out of it before evicting); blocks_pending and
    samples_pending: neither acked nor quarantined; oldest_unsent_age_s: age of the oldest
    pending block (None when none); bytes_per_hour: the put rate over the last 10 minutes;
    hours_left: until the cap (or the disk) starts evicting at that rate (None when nothing
    is put); evictions: blocks removed unsent, by reason, since the store was created;
    quarantined: blocks kept but never offered again; dropped_samples / dropped_blocks:
    what could not be stored at all, by reason, since the process started; disk_full: the
    disk rather than the cap limits the buffer now (it evicts early or drops);
    disk_free_bytes: free space on its filesystem at the last put; capacity_bytes: what the
    database may use now (the cap, or less on a full disk); problem: one line for people
    while disk_full, else None.
    """

    bytes_used: int
    max_bytes: int
    blocks_pending: int
    samples_pending: int
    oldest_unsent_age_s: float | None
    bytes_per_hour: float
    hours_left: float | None
    evictions: Mapping[str, int]
    quarantined: int
    dropped_samples: Mapping[str, int]
    dropped_blocks: Mapping[str, int]
    disk_full: bool
    disk_free_bytes: int | None
    capacity_bytes: int | None
    problem: str | None


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def outage_budget(
    c: Counters, *, max_bytes: int, page_size: int, meter: RateMeter, now: float, mono: float
) -> OutageBudget:
    """The budget now: ``now`` is unix time (ages), ``mono`` monotonic time (the rate)."""
    rate = meter.bytes_per_hour(mono)
    cap = db_cap_bytes(max_bytes, page_size)
    if c.capacity_bytes is not None:
        cap = min(cap, c.capacity_bytes)
    age = None if c.oldest_created is None else max(0.0, now - c.oldest_created)
    problem = None
    if c.disk_full:
        dropped = sum(c.dropped_samples.values())
        problem = (
            f"disk full: {_mb(c.disk_free_bytes)} free, the buffer can hold"
            f" {_mb(c.capacity_bytes)} of its {_mb(max_bytes)} cap: oldest blocks evicted,"
            f" {dropped} samples dropped since start"
        )
    return OutageBudget(
        bytes_used=c.bytes_used,
        max_bytes=max_bytes,
        blocks_pending=c.blocks_pending,
        samples_pending=c.samples_pending,
        oldest_unsent_age_s=age,
        bytes_per_hour=rate,
        hours_left=hours_left(cap - c.bytes_used, rate),
        evictions=c.evictions,
        quarantined=c.quarantined,
        dropped_samples=dict(c.dropped_samples),  # plain dicts: JSON-ready (buffer_stats)
        dropped_blocks=dict(c.dropped_blocks),
        disk_full=c.disk_full,
        disk_free_bytes=c.disk_free_bytes,
        capacity_bytes=c.capacity_bytes,
        problem=problem,
    )
