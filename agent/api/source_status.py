"""Each source's part of the status: its figures, its health now, and its JSON entry.

Owns: `DriverFigures` (what every driver kind reports the same way: state, samples,
reconnects, its tags by latest status; for Modbus the requests, exception responses,
timeouts and garbled answers summed over the units; plus its own counters), the verdict
`source_health` ("ok", "degraded", "down" and the problems now), and the /status entry of a
source. /status, /metrics and `edge-agent status` all read a source through here, so they
never disagree.
Must not: change, await or lock anything it reads, do I/O or log.
Invariants: a source is "down" when not connected, "degraded" when connected with some tag
whose latest status is Bad or Uncertain, "ok" otherwise; the error counters never decide the
verdict (they only grow: a source would stay degraded forever), they are shown beside it;
the entry holds only JSON-safe values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agent.domain.samples import Driver, DriverState, TagHealth
from drivers.modbus import ModbusDriver
from drivers.opcua import OpcUaDriver
from drivers.opcua_values import status_name

__all__ = ["ERRORS", "DriverFigures", "driver_figures", "source_entry", "source_health"]

ERRORS = ("requests", "exceptions", "timeouts", "garbled")
"""The error counters of a Modbus source, in the order they are shown."""


@dataclasses.dataclass(frozen=True)
class DriverFigures:
    """The counters every driver kind reports the same way, plus its own (JSON-safe)."""

    name: str
    kind: str
    state: str
    samples: int
    reconnects: int
    details: dict[str, Any]
    tags: TagHealth | None = None
    errors: dict[str, int] | None = None
    """Modbus: `ERRORS` summed over the units; None for a kind without them."""


def driver_figures(driver: Driver) -> DriverFigures:
    """Samples, reconnects, tags and the driver's own counters, whatever its kind."""
    if isinstance(driver, OpcUaDriver):
        c = driver.counters
        return DriverFigures(
            driver.name,
            "opcua",
            str(driver.state),
            c.samples_emitted,
            c.reconnects,
            dataclasses.asdict(c),
            driver.tag_health(),
        )
    if isinstance(driver, ModbusDriver):
        counters = driver.counters()
        details = dataclasses.asdict(counters)
        details["units"] = {str(k): v for k, v in details["units"].items()}
        units = counters.units.values()
        errors = {key: sum(getattr(u, key) for u in units) for key in ERRORS}
        return DriverFigures(
            driver.name,
            "modbus",
            str(driver.state),
            driver.samples_emitted,
            driver.reconnects,
            details,
            driver.tag_health(),
            errors,
        )
    return DriverFigures(driver.name, type(driver).__name__, str(driver.state), 0, 0, {})


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
    f = driver_figures(driver)
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
            {"tag": tag, "status": status_name(code), "code": f"0x{code:08X}"}
            for tag, code in (t.not_good if t is not None else ())
        ],
        **{f"{key}_total": errors.get(key) for key in ERRORS},
        "counters": f.details,
    }
