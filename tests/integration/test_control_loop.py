"""The control loops against the simulated mill over real OPC UA: normal operation and
weak clinker in closed loop, the audit chain, and no replay after a restart."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from agent.control.audit import verify_file
from tests.integration.control_rig import control_rig, wait_for
from tests.support.config import ConfigDoc

pytestmark = pytest.mark.timeout(480)  # a hang guard: the waits (control_rig.BUSY) fail first


async def test_normal_operation_spends_the_strength_margin_on_limestone(tmp_path: Path) -> None:
    async with control_rig(tmp_path, min_interval_s=3.0, max_rate_per_h=10.0) as rig:
        mill = rig.plant.mill
        start = float(mill.read("LimestoneShareSetpoint").value or 0.0)
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 2, 60, "two writes")
        writes = [r for r in rig.records("cycle", "limestone") if r["outcome"] == "write"]
        assert [w["write"]["value"] for w in writes[:2]] == [start + 0.5, start + 1.0]
        for w in writes:
            assert w["write"]["status"] == "accepted"
            assert abs(w["write"]["readback"] - w["write"]["value"]) <= 0.01
            best, now = w["candidates"]["best"], w["candidates"]["now"]
            assert best["co2_per_t"] < now["co2_per_t"]  # the reason to move
            assert best["strength_margin"] >= 0
        assert mill.read("LimestoneShareSetpoint").value == start + 1.0
        # The separator stays put: no strength problem to solve.
        assert rig.loop("separator").stats.writes["ok"] == 0
    report = verify_file(rig.state_dir / "audit.db")
    assert report.ok and report.records >= 4, report


def _latest_c3s_only(config: ConfigDoc) -> None:
    """The C3S input of both loops smoothed over 0.5 s: the latest lab result alone."""
    config.set("loops[*].inputs[feature=clinker_c3s].window_s", 0.5)


async def test_weak_clinker_is_corrected_with_separator_speed_in_limited_steps(
    tmp_path: Path,
) -> None:
    # x120: 10 min of settling is 5 s; the C3S window holds only the latest lab result.
    # A perfect lab (no sampling noise) keeps the story deterministic; sensors stay noisy.
    async with control_rig(tmp_path, time_scale=120.0, lab_time_scale=10.0, min_interval_s=5.0,
                           max_rate_per_h=1000.0, edit=_latest_c3s_only, lab_noise=False) as rig:  # fmt: skip
        plant, mill = rig.plant, rig.plant.mill
        target = 47.5
        # Normal operation first: the margin is spent on limestone.
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 2, 60, "limestone up")
        # Then the clinker turns weak (S_clk 48 MPa instead of 51) just before a 2-hourly
        # C3S sample, which the lab publishes 3 min later (30 min / lab_time_scale).
        await plant.pause()
        boundary = math.ceil((mill.time + 2.0) / 7200.0) * 7200.0
        mill.step(int((boundary - 1.0 - mill.time) / mill.dt))
        mill.inject("clinker_quality_step", delta=48.0 - mill.truth()["S_clk"])
        mill.step(int(240.0 / mill.dt))
        mill.operator("remote_enable", value=True)  # the watchdog latched meanwhile
        plant.resume()
        sep0 = mill.read("SeparatorSpeedSetpoint").value
        weak = mill.truth()["S28"]
        seen = len(rig.records("cycle", "separator"))

        def strength_restored() -> bool:
            recent = rig.records("cycle", "separator")[seen:][-5:]
            return len(recent) == 5 and all(
                r.get("predicted") and r["predicted"]["strength_margin"] >= 0 for r in recent)  # fmt: skip

        await wait_for(strength_restored, 90, "the predicted strength back above its margin")
        after = [r for r in rig.records("cycle", "separator")[seen:] if r.get("predicted")]
        margins = [r["predicted"]["strength_margin"] for r in after]
        assert min(margins[:10]) < 0, f"the agent saw no deficit: {margins}"
        writes = [r for r in rig.records("cycle", "separator")[seen:] if r["outcome"] == "write"]
        values = [sep0] + [w["write"]["value"] for w in writes]
        assert len(values) >= 2 and all(
            0 < b - a <= 20.0 for a, b in itertools.pairwise(values)), values  # fmt: skip
        times = [w["decided_at"] for w in writes]
        assert all(b - a >= 5.0 for a, b in itertools.pairwise(times)), times
        for w in writes:  # every separator move was made for strength
            assert w["candidates"]["now"]["strength_margin"] < 0 or (
                "strength" in w["candidates"]["binding"])  # fmt: skip
        # The simulated (hidden, true) 28-day strength is back above target.
        await wait_for(lambda: mill.truth()["S28"] >= target, 30, "true strength >= target")
        assert weak < target + 1.0


async def test_a_stopped_agent_lets_the_plc_fall_back_and_a_restart_replays_nothing(
    tmp_path: Path,
) -> None:
    async with control_rig(tmp_path, min_interval_s=4.0, max_rate_per_h=100.0) as rig:
        mill = rig.plant.mill
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 1, 40, "a write")
        last = [r for r in rig.records("cycle", "limestone") if r["outcome"] == "write"][-1]
        await rig.stop()  # SIGTERM's ordered shutdown: the heartbeat stops with the loops
        stopped = len(rig.records())
        # The PLC's watchdog (15 s) latches and the mill falls back to local control.
        await wait_for(lambda: mill.read("WatchdogFault").value is True, 25, "WatchdogFault")
        assert mill.read("RemoteActive").value is False
        assert rig.records()[stopped:] == []  # nothing after the stop, not even on the way down
        # The operator steers by hand meanwhile.
        mill.operator("local_setpoint", value=11.0, tag="LimestoneShareSetpoint")
        await rig.start()  # a new process on the same state directory
        await wait_for(lambda: len(rig.records("cycle", "limestone")) > 3 + len(
            [r for r in rig.records("cycle", "limestone") if r["decided_at"] < last["decided_at"] + 1]
        ), 20, "cycles after the restart")  # fmt: skip
        after = [
            r for r in rig.records("cycle", "limestone") if r["decided_at"] > last["decided_at"]
        ]
        # Still local: every cycle stops at the handshake and nothing is written.
        assert after and all(r["outcome"] == "blocked" for r in after)
        assert all(r["verdicts"][-1]["gate"] == "handshake" for r in after)
        assert mill.read("RemoteActive").value is False
        # The operator grants remote again: the remote setpoint takes the local one (bumpless),
        # and the agent's next move starts from there - the old write is not replayed.
        mill.operator("remote_enable", value=True)
        await wait_for(lambda: [r for r in rig.records("cycle", "limestone")
                                if r["outcome"] == "write" and r["decided_at"] > last["decided_at"]],
                       30, "a fresh write")  # fmt: skip
        fresh = next(r for r in rig.records("cycle", "limestone") if r["outcome"] == "write"
                     and r["decided_at"] > last["decided_at"])  # fmt: skip
        assert fresh["write"]["from"] == 11.0
        assert fresh["guard"]["baseline"] == 11.0
        assert fresh["write"]["value"] != last["write"]["value"]
    assert verify_file(rig.state_dir / "audit.db").ok  # one chain across both processes


def _advisory_limestone(config: ConfigDoc) -> None:
    """The limestone loop in advisory mode, on the simulated operator screen."""
    config.set("loops[name=limestone].mode", "advisory")
    for key, tag in (("advice_value_tag", "AdviceValue"), ("advice_id_tag", "AdviceId"),
                     ("advice_effect_tag", "AdviceEffect"), ("ack_tag", "AdviceAck")):  # fmt: skip
        config.add(f"loops[name=limestone].{key}", tag)


async def test_advisory_mode_shows_the_suggestion_and_writes_only_after_the_ack(
    tmp_path: Path,
) -> None:
    async with control_rig(tmp_path, edit=_advisory_limestone, min_interval_s=2.0) as rig:
        mill = rig.plant.mill
        start = mill.read("LimestoneShareSetpoint").value
        await wait_for(lambda: mill.read("AdviceId").value, 30, "a suggestion on the screen")
        advice_id, value = mill.read("AdviceId").value, mill.read("AdviceValue").value
        assert value == float(start or 0.0) + 0.5
        assert 45.0 < float(mill.read("AdviceEffect").value or 0.0) < 60.0  # predicted S28
        # Nobody acknowledged: cycles keep advising, the setpoint does not move.
        await wait_for(lambda: len([r for r in rig.records("cycle", "limestone")
                                    if r["outcome"] == "advise"]) >= 3, 20, "advice cycles")  # fmt: skip
        assert mill.read("LimestoneShareSetpoint").value == start
        assert rig.loop("limestone").stats.writes["ok"] == 0
        # An acknowledgement of another id does nothing.
        mill.operator("ack_advice", value=int(advice_id or 0) + 1)
        await wait_for(lambda: len([r for r in rig.records("cycle", "limestone")
                                    if r["outcome"] == "advise"]) >= 5, 20, "more advice")  # fmt: skip
        assert mill.read("LimestoneShareSetpoint").value == start
        # The operator accepts this suggestion: the agent writes it, once, and reads it back.
        mill.operator("ack_advice", value=int(advice_id or 0))
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 1, 20, "the write")
        write = next(r for r in rig.records("cycle", "limestone") if r["outcome"] == "write")
        assert write["advice"]["id"] == advice_id and write["advice"]["acknowledged"]
        assert write["write"]["value"] == value and write["write"]["readback"] == value
        assert mill.read("LimestoneShareSetpoint").value == value


async def test_a_plc_clock_a_few_seconds_behind_does_not_fail_the_read_back(
    tmp_path: Path,
) -> None:
    # At x30, -90 s of plant time is 3 s of wall time: inputs stay young enough (10 s) and
    # the echo too (5 s); the read-back is judged on the PLC's own samples, not on our clock.
    async with control_rig(tmp_path, min_interval_s=3.0, max_rate_per_h=100.0) as rig:
        rig.plant.mill.inject("clock_skew", offset_s=-90.0)
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 2, 60, "two writes")
        assert rig.loop("limestone").stopped is None
        assert rig.loop("limestone").stats.writes["readback_mismatch"] == 0
