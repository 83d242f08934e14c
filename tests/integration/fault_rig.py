"""The control rig for fault tests, and what they look for in the audit log.

Owns: `fault_rig` (control_rig with the limestone loop moving every 3 s), the audit queries
of the fault tests (`cycles`, `last_seq`, `blocked`, `normal`, `first`) and their waits
(`running_normally`, `assert_blocked_without_writes`, `more_cycles`, `recovers`), shared by
test_control_faults.py and test_control_faults_plc.py.

Must not: wait other than by polling observed progress (audit records, cycles), through
control_rig.wait_for.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from tests.integration.control_rig import Rig, control_rig, wait_for
from tests.support.config import ConfigDoc

LOOPS = ("separator", "limestone")
SETPOINTS = ("SeparatorSpeedSetpoint", "LimestoneShareSetpoint")
Record = dict[str, Any]


def fault_rig(
    folder: Path,
    *,
    edit: Callable[[ConfigDoc], object] = lambda config: None,
    feature_window_s: float = 60.0,
    readback_timeout_s: float = 5.0,
    max_rate_per_h: float = 1.5,
    time_scale: float = 30.0,
) -> AbstractAsyncContextManager[Rig]:
    """The control rig where the limestone loop moves every 3 s in normal operation (three
    moves of 0.5 %, up to 13.5 %), so 'no write while the fault lasts' means something.
    (Up to its envelope_max of 14 %, the noisy share's 14.0119 % training maximum refuses
    cycles now and then, which would mask the fault under test.)"""
    return control_rig(
        folder,
        time_scale=time_scale,
        edit=edit,
        min_interval_s=3.0,
        max_rate_per_h=max_rate_per_h,
        feature_window_s=feature_window_s,
        readback_timeout_s=readback_timeout_s,
    )


def cycles(rig: Rig, loop: str, after: int = 0) -> list[Record]:
    return [r for r in rig.records("cycle", loop) if r["seq"] > after]


def last_seq(rig: Rig) -> int:
    records = rig.records()
    return records[-1]["seq"] if records else 0


def blocked(gate: str, *words: str) -> Callable[[Record], bool]:
    """A cycle refused at `gate` whose reason contains every word."""

    def match(r: Record) -> bool:
        last = r["verdicts"][-1] if r["verdicts"] else {}
        return (
            r["outcome"] == "blocked"
            and last.get("gate") == gate
            and not last.get("ok")
            and all(w in str(r["reason"]) for w in words)
        )

    return match


def normal(r: Record) -> bool:
    return bool(r["outcome"] != "blocked")


async def first(
    rig: Rig, loop: str, after: int, check: Callable[[Record], bool], timeout_s: float, what: str
) -> Record:
    """The first cycle of `loop` after seq `after` that satisfies `check`."""

    def found() -> Record | None:
        return next((r for r in cycles(rig, loop, after) if check(r)), None)

    rec: Record = await wait_for(found, timeout_s, f"{loop}: {what}")
    return rec


async def running_normally(rig: Rig) -> int:
    """Wait until both loops had a normal cycle; the audit seq at that point."""
    for loop in LOOPS:
        await first(rig, loop, 0, normal, 40, "a normal cycle")
    return last_seq(rig)


async def assert_blocked_without_writes(
    rig: Rig, gate: str, *words: str, timeout_s: float = 25, cycles_held: int = 3
) -> dict[str, Record]:
    """Both loops refuse at `gate` (reason with `words`), then keep refusing for
    `cycles_held` more cycles, and neither the audit nor the PLC shows a write meanwhile.
    Returns each loop's first refused cycle."""
    mark = last_seq(rig)
    firsts = {
        lp: await first(rig, lp, mark, blocked(gate, *words), timeout_s, gate) for lp in LOOPS
    }
    held = {sp: rig.plant.mill.read(sp).value for sp in SETPOINTS}
    since = min(r["seq"] for r in firsts.values())
    await more_cycles(rig, {lp: r["seq"] for lp, r in firsts.items()}, cycles_held)
    for lp in LOOPS:
        later = cycles(rig, lp, firsts[lp]["seq"])
        assert all(blocked(gate, *words)(r) for r in later), [r["reason"] for r in later]
        assert not any("write" in r for r in cycles(rig, lp, since)), lp
    assert {sp: rig.plant.mill.read(sp).value for sp in SETPOINTS} == held
    return firsts


async def more_cycles(rig: Rig, after: dict[str, int], n: int) -> None:
    """Wait until each loop in `after` had n cycles after its seq."""
    await wait_for(
        lambda: all(len(cycles(rig, lp, seq)) >= n for lp, seq in after.items()),
        n + 15,
        f"{n} more cycles",
    )


async def recovers(rig: Rig, timeout_s: float = 30) -> None:
    """After a fault is cleared, both loops come back to normal cycles by themselves."""
    mark = last_seq(rig)
    for loop in LOOPS:
        await first(rig, loop, mark, normal, timeout_s, "a normal cycle after the fault")
