"""Sensor faults of plant-model 1.5 against the control loops over real OPC UA.

Each test starts the simulated mill (x30) and the real agent, waits for normal cycles,
injects one fault on a critical model input of both demo loops, and asserts what lands in
the audit log: the cycle is blocked at the right gate with a reason naming the feature and
the cause, no setpoint is written while the fault lasts (audit and PLC agree), and once the
fault is cleared the loops run normally again. The PLC-side faults (handshake, writes,
session loss, read-back) are in test_control_faults_plc.py; both use fault_rig.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.fault_rig import (
    assert_blocked_without_writes,
    fault_rig,
    first,
    last_seq,
    recovers,
    running_normally,
)

pytestmark = pytest.mark.timeout(960)  # slow under a loaded CI: the waits inside fail first

Record = dict[str, Any]


def input_record(rec: Record, feature: str) -> Record:
    row: Record = rec["inputs"][feature]
    return row


async def test_freeze_makes_the_input_stale(tmp_path: Path) -> None:
    # freeze: value and SourceTimestamp stop; the server has nothing new to publish, so the
    # agent sees the last sample age until max_age_s (10 s) passes.
    async with fault_rig(tmp_path) as rig:
        await running_normally(rig)
        rig.plant.mill.inject("freeze", "FeedRate")
        firsts = await assert_blocked_without_writes(rig, "inputs", "feed_rate is", "s old")
        row = input_record(firsts["limestone"], "feed_rate")
        assert row["tag"] == "FeedRate" and row["critical"] and not row["ok"]
        assert row["status"] == 0  # still Good: only its age gives it away
        rig.plant.mill.clear("freeze", "FeedRate")
        await recovers(rig)


async def test_flatline_is_refused(tmp_path: Path) -> None:
    # flatline: the value stays put while SourceTimestamp advances. The simulator republishes
    # it (the timestamp changed), but OPC UA subscriptions report data changes on status or
    # value only (DataChangeTrigger StatusValue), so the agent receives nothing new and the
    # input goes stale (after max_age_s = 10 s) rather than frozen: the agent's frozen check
    # (frozen_after_samples identical values) never sees a repeated value over a subscription.
    async with fault_rig(tmp_path) as rig:
        await running_normally(rig)
        rig.plant.mill.inject("flatline", "MillPower")
        firsts = await assert_blocked_without_writes(rig, "inputs", "mill_power is", "s old")
        row = input_record(firsts["separator"], "mill_power")
        assert row["status"] == 0 and not row["ok"], row  # Good, but nothing new arrives
        rig.plant.mill.clear("flatline", "MillPower")
        await recovers(rig)


async def test_bad_uncertain_and_local_override_block_the_loops(tmp_path: Path) -> None:
    async with fault_rig(tmp_path) as rig:
        mill = rig.plant.mill
        await running_normally(rig)
        mill.inject("bad", "SeparatorSpeed")  # Bad_SensorFailure, value null
        firsts = await assert_blocked_without_writes(rig, "inputs", "separator_speed is Bad")
        row = input_record(firsts["separator"], "separator_speed")
        assert row["value"] is None and row["status"] == 0x808C0000, row
        mill.clear("bad")
        await recovers(rig)

        mill.inject("uncertain", "MillPower", code="UncertainLastUsableValue")
        await assert_blocked_without_writes(rig, "inputs", "mill_power is Uncertain (0x40900000)")
        mill.clear("uncertain")
        await recovers(rig)

        mill.inject("local_override", "SeparatorSpeed")  # Good_LocalOverride: suspend the loop
        firsts = await assert_blocked_without_writes(
            rig, "inputs", "separator_speed: local override"
        )
        assert input_record(firsts["limestone"], "separator_speed")["status"] == 0x00960000
        mill.clear("local_override")
        await recovers(rig)


async def test_clock_skew_is_refused(tmp_path: Path) -> None:
    # 300 sim s at x30 put every source timestamp 10 s of wall time into the future. Samples
    # carry the skew as they change: an input may be refused first (gate 2), but the
    # heartbeat echo changes every second, so gate 1 refuses every cycle from then on.
    async with fault_rig(tmp_path) as rig:
        await running_normally(rig)
        rig.plant.mill.inject("clock_skew", offset_s=300.0)
        mark = last_seq(rig)
        rec = await first(rig, "limestone", mark, lambda r: "clock skew" in r.get("reason", ""),
                          20, "a clock-skew refusal")  # fmt: skip
        assert rec["outcome"] == "blocked" and "timestamp in the future by" in rec["reason"]
        if rec["verdicts"][-1]["gate"] == "inputs":
            rows = rec["inputs"].values()
            bad = [row["reason"] for row in rows if row["critical"] and not row["ok"]]
            assert rec["reason"].removeprefix("inputs: ") in bad, rec  # keys sorted in JSON
        await assert_blocked_without_writes(
            rig, "handshake", "HeartbeatEcho: timestamp in the future by", "(clock skew)"
        )
        rig.plant.mill.clear("clock_skew")
        await recovers(rig)


async def test_spikes_push_the_feature_out_of_the_training_range(tmp_path: Path) -> None:
    # spike adds `magnitude` to one 0.1 s sample every period_s. At x30 the simulator
    # publishes every ~30th sample, so which spikes reach the agent is a matter of phase
    # (often none): this test runs the mill in real time, where every sample is published.
    # The agent has no rate-of-change check of its own: spiked samples enter the feature
    # window and are refused once the window's mean (5 s here) leaves the model's training
    # range (950 + 1500 / 7 or 8 > 1050; a single spike would move it by 30 rpm only).
    # SeparatorSpeed, not FeedRate: spiked feed samples would also sit in the 30 min window
    # of the grindability estimate, which in a young agent blocks long after the spikes.
    async with fault_rig(tmp_path, feature_window_s=5.0, time_scale=1.0) as rig:
        await running_normally(rig)
        rig.plant.mill.inject("spike", "SeparatorSpeed", magnitude=1500.0, period_s=0.7)
        firsts = await assert_blocked_without_writes(
            rig, "inputs", "separator_speed = ", "is out of the training range [849.847, 1050.19]"
        )
        assert input_record(firsts["limestone"], "separator_speed")["status"] == 0  # Good
        rig.plant.mill.clear("spike")
        await recovers(rig)
