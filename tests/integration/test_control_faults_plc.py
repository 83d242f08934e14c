"""PLC-side faults of plant-model 1.5 against the control loops over real OPC UA.

Remote mode withdrawn, the heartbeat echo stalled, writes refused, the OPC UA session lost,
and a read-back that does not confirm a write (plant-model 3 E: a safety event that stops
the loop and its heartbeat, so the PLC's watchdog drops the mill to local). Each test
asserts the audit records and the simulated PLC's state; helpers are shared with
test_control_faults.py (sensor faults).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.integration.control_rig import wait_for
from tests.integration.fault_rig import (
    LOOPS,
    assert_blocked_without_writes,
    blocked,
    cycles,
    fault_rig,
    first,
    last_seq,
    more_cycles,
    recovers,
    running_normally,
)

pytestmark = pytest.mark.timeout(960)  # slow under a loaded CI: the waits inside fail first


async def test_remote_disable_stops_writes_until_the_operator_enables_remote(
    tmp_path: Path,
) -> None:
    async with fault_rig(tmp_path) as rig:
        mill = rig.plant.mill
        await running_normally(rig)
        mill.inject("remote_disable")  # the operator drops RemoteEnable on the HMI
        await assert_blocked_without_writes(
            rig, "handshake", "RemoteActive is False: the PLC does not grant remote"
        )
        assert mill.read("RemoteActive").value is False
        assert mill.read("WatchdogFault").value is False  # the agent kept its heartbeat
        mill.clear("remote_disable")  # the operator enables remote again
        await recovers(rig)


async def test_watchdog_stall_blocks_at_the_handshake(tmp_path: Path) -> None:
    # The PLC stops echoing: the echo's age (heartbeat_max_age_s = 5 s; an unchanged echo is
    # not republished) or its lag behind the counter (> 5 beats) fails gate 1, whichever
    # comes first. The heartbeat itself still changes, so the PLC's watchdog does not latch.
    async with fault_rig(tmp_path) as rig:
        mill = rig.plant.mill
        await running_normally(rig)
        mill.inject("watchdog_stall")
        firsts = await assert_blocked_without_writes(rig, "handshake", "HeartbeatEcho")
        reason = firsts["limestone"]["reason"]
        assert "does not follow the heartbeat" in reason or "s old" in reason, reason
        echo = firsts["limestone"]["handshake"]["echo"]["value"]
        assert firsts["limestone"]["handshake"]["sent"] > echo
        assert mill.read("WatchdogFault").value is False and mill.read("RemoteActive").value
        mill.clear("watchdog_stall")
        await recovers(rig)


async def test_rejected_writes_are_recorded_and_the_loop_carries_on(tmp_path: Path) -> None:
    # Refused writes are no moves: each cycle decides (and tries) again; the budget is
    # for the accepted moves around the two faults.
    async with fault_rig(tmp_path, max_rate_per_h=3.0) as rig:
        mill, limestone = rig.plant.mill, rig.loop("limestone")
        await running_normally(rig)
        for code in ("BadUserAccessDenied", "BadOutOfRange"):
            held = mill.read("LimestoneShareSetpoint").value
            mark = last_seq(rig)
            mill.inject("plc_reject_writes", code=code)
            rec = await first(rig, "limestone", mark,
                              lambda r: r.get("write", {}).get("status") == "rejected",
                              20, "a rejected write")  # fmt: skip
            w = rec["write"]
            assert w["tag"] == "LimestoneShareSetpoint" and w["from"] == held, w
            # The PLC's status name, e.g. "... is not writable on the server
            # (BadUserAccessDenied)" or "writing ... = 13.0 was refused: BadOutOfRange".
            assert "LimestoneShareSetpoint" in w["reason"] and code in w["reason"], w
            assert rec["outcome"] == "blocked" and rec["reason"] == f"write: {w['reason']}"
            assert all(v["ok"] for v in rec["verdicts"]), rec["verdicts"]
            assert mill.read("LimestoneShareSetpoint").value == held
            # No safety stop: the loop keeps cycling and deciding, the heartbeat keeps going.
            await more_cycles(rig, {"limestone": rec["seq"]}, 2)
            assert limestone.stopped is None and limestone.stats.state == "running"
            assert limestone.heartbeat.stopped is None
            assert not any(blocked("safety_stop")(r) for r in cycles(rig, "limestone", mark))
            mill.clear("plc_reject_writes")
        mark = last_seq(rig)
        assert mill.read("RemoteActive").value is True
        await first(rig, "limestone", mark, lambda r: r["outcome"] == "write", 20, "a write")


async def test_server_down_blocks_then_the_agent_reconnects_by_itself(tmp_path: Path) -> None:
    # 240 sim s at x30: 8 s of wall time without the OPC UA server, under the 15 s watchdog.
    async with fault_rig(tmp_path) as rig:
        mill, heartbeat = rig.plant.mill, rig.loop("limestone").heartbeat
        await running_normally(rig)
        mill.inject("server_down", duration_s=240.0)
        firsts = await assert_blocked_without_writes(rig, "handshake", timeout_s=15)
        for lp in LOOPS:
            # The driver marks what it can no longer read Bad_NoCommunication.
            remote = firsts[lp]["handshake"]["remote"]
            assert (
                remote["status"] == 0x80310000 and "RemoteActive is BAD" in firsts[lp]["reason"]
            ), firsts[lp]
        assert heartbeat.failures > 0 or heartbeat.sent is None
        await wait_for(lambda: not mill.active_faults(), 15, "the server back")
        await recovers(rig)
        assert mill.read("WatchdogFault").value is False  # the heartbeat resumed in time


async def test_session_loss_beyond_the_watchdog_waits_for_the_operator(tmp_path: Path) -> None:
    # 540 sim s: 18 s of wall time without heartbeat writes, past the PLC's 15 s watchdog,
    # which latches and drops to local; no automatic return to remote (plant-model 3 A).
    async with fault_rig(tmp_path) as rig:
        mill = rig.plant.mill
        mark = await running_normally(rig)
        mill.inject("server_down", duration_s=540.0)
        await wait_for(lambda: mill.read("WatchdogFault").value is True, 25, "WatchdogFault")
        await wait_for(lambda: not mill.active_faults(), 15, "the server back")
        # Reconnected (the heartbeat is accepted again), but the PLC stays local.
        back = last_seq(rig)
        await assert_blocked_without_writes(
            rig, "handshake", "RemoteActive is False: the PLC does not grant remote"
        )
        rec = await first(rig, "limestone", back, lambda r: r["handshake"]["sent"] is not None,
                          10, "a heartbeat accepted again")  # fmt: skip
        assert rec["handshake"]["remote"] == {**rec["handshake"]["remote"], "status": 0}
        assert blocked("handshake", "RemoteActive is False")(rec)
        assert mill.read("WatchdogFault").value is True
        assert not any("write" in r for lp in LOOPS for r in cycles(rig, lp, mark))
        mill.operator("remote_enable", value=True)  # acknowledges the fault
        await recovers(rig)


async def test_readback_mismatch_is_a_safety_stop(tmp_path: Path) -> None:
    # The limestone loop reads its setpoint back from the setpoint node itself, which the
    # PLC updates at once; a frozen read-back node is a PLC that accepts a write and does not
    # show it. (A separator move would only be provoked through a strength deficit, minutes
    # of wall time, and its 2 rpm/s ramp takes 0.1 s of wall time per 6 rpm at x30.)
    async with fault_rig(tmp_path, readback_timeout_s=2.0) as rig:
        mill, limestone = rig.plant.mill, rig.loop("limestone")
        await wait_for(lambda: limestone.stats.writes["ok"] >= 1, 40, "a first write")
        mark = last_seq(rig)
        mill.inject("freeze", "LimestoneShareSetpoint")
        rec = await first(rig, "limestone", mark, lambda r: "write" in r, 20, "the next write")
        w = rec["write"]
        assert w["status"] == "accepted" and w["readback"] == w["from"], w
        assert w["reason"] == (
            f"read-back mismatch: LimestoneShareSetpoint = {w['from']} after 2 s,"
            f" expected {w['value']:g} +- 0.01"
        )
        assert rec["outcome"] == "blocked" and rec["reason"] == f"safety stop: {w['reason']}"
        latch = {"code": "readback_mismatch", "reason": w["reason"], "since": rec["decided_at"]}
        assert rec["safety_stop"] == latch  # the typed latch a restart takes over
        assert limestone.stats.state.startswith("stopped: read-back mismatch")
        assert limestone.heartbeat.stopped is not None
        # The heartbeat stopped: the PLC's watchdog (15 s) latches and drops to local.
        await wait_for(lambda: mill.read("WatchdogFault").value is True, 25, "WatchdogFault")
        assert mill.read("RemoteActive").value is False
        # Even when the operator grants remote again, the stopped agent writes nothing.
        mill.clear("freeze")
        mill.operator("remote_enable", value=True)
        assert mill.read("RemoteActive").value is True
        stop = last_seq(rig)
        await more_cycles(rig, dict.fromkeys(LOOPS, stop), 3)
        later = cycles(rig, "limestone", rec["seq"])
        assert later and all(blocked("safety_stop", "read-back mismatch")(r) for r in later)
        others = cycles(rig, "separator", rec["seq"])
        assert all(blocked("handshake", "heartbeat stopped: loop limestone")(r) for r in others)
        assert not any("write" in r for lp in LOOPS for r in cycles(rig, lp, rec["seq"]))
        assert mill.read("LimestoneShareSetpoint").value == w["value"]  # the one write, as sent
        # The PLC accepted that write (and applied it), so the audit must keep it as a move:
        # after the restart that a safety stop requires, the guard reads its rate budget and
        # minimum interval from these rows (AuditLog.record: "`move` = (from, to) of a
        # setpoint write the PLC accepted").
        db = sqlite3.connect(f"file:{rig.state_dir / 'audit.db'}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT move_from, move_to, seq FROM audit WHERE kind = 'setpoint_write' "
                "AND loop = 'limestone' ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        finally:
            db.close()
        # Recorded as soon as the PLC accepted it, before the read-back wait.
        assert row[:2] == (w["from"], w["value"]), f"accepted write not kept as a move: {row}"
        assert row[2] < rec["seq"]
        # A restart does not clear the stop while the PLC still grants remote: the stop holds
        # until the PLC has been back in local control (a person then gives remote again).
        await rig.stop()
        await rig.start()
        limestone = rig.loop("limestone")
        assert limestone.stopped is not None and mill.read("RemoteActive").value is True
        restart = last_seq(rig)
        await more_cycles(rig, {"limestone": restart}, 3)
        assert all(blocked("safety_stop", "before the restart")(r) and r["safety_stop"] == latch
                   for r in cycles(rig, "limestone", restart))  # fmt: skip
        assert mill.read("LimestoneShareSetpoint").value == w["value"]
        mill.operator("remote_enable", value=False)  # the operator takes over ...
        await wait_for(lambda: limestone.stopped is None, 20, "the stop cleared by local")
        mill.operator("remote_enable", value=True)  # ... and gives remote back
        await wait_for(lambda: limestone.stats.writes["ok"] >= 1, 40, "a write after all that")
