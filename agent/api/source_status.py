"""Each source's part of the status: its health now, and its JSON entry.

Owns: the verdict `source_health` ("ok", "degraded", "down" and the problems now) and the
/status entry of a source, both read from the driver's `DriverFigures`
(agent.domain.samples: state, samples, reconnects, tags by latest status with their names,
the per-unit error counters of a kind that has units, its own counters). /status, /metrics
and `edge-agent status` all read a source through `Driver.figures()` and here, so they
never disagree, whatever the driver's kind.
Must not: change, await or lock anything it reads, do I/O or log, or know a driver's kind
(it reads only the `Driver` protocol: no module of `drivers` is imported).
Invariants: a source is "down" when not connected, "degraded" when connected with some tag
whose latest status is Bad or Uncertain, "ok" otherwise; the error counters never decide the
verdict (they only grow: a source would stay degraded forever), they are shown beside it;
the entry holds only JSON-safe values.
"""

from __future__ import annotations

from typing import Any

from agent.domain.samples import ERROR_COUNTERS, Driver, DriverFigures, DriverState

__all__ = ["source_entry", "source_health"]


def source_health(f: DriverFigures) -> tuple[str, list[str]]:
    """The verdict ("ok", "degraded" or "down") and the problems now, one phrase each."""
    connected = f.state == DriverState.CONNECTED
    problems = [] if connected else [f"not connected ({f.state})"]
    t = f.tags
    if t is not None:
        problems += [
            f"{count} of {t.total} tags {quality}"
            for count, quality in ((t.bad, "Bad"), (t.uncertain, "Uncertain"))
            if count
        ]
    return ("degraded" if problems else "ok") if connected else "down", problems


def source_entry(driver: Driver) -> dict[str, Any]:
    """The source's entry in /status."""
    f = driver.figures()
    health, problems = source_health(f)
    t, errors = f.tags, f.errors or {}
    tags = None
    if t is not None:
        tags = {"total": t.total, "good": t.good, "uncertain": t.uncertain, "bad": t.bad,
                "waiting": t.waiting}  # fmt: skip
    return {
        "name": f.name,
        "kind": f.kind,
        "state": f.state,
        "health": health,
        "problems": problems,
        "samples_total": f.samples,
        "reconnects_total": f.reconnects,
        "tags": tags,
        "not_good": [
            {"tag": p.tag, "status": p.status_name, "code": f"0x{p.status:08X}"} for p in f.not_good
        ],
        **{f"{key}_total": errors.get(key) for key in ERROR_COUNTERS},
        "counters": f.details,
    }
