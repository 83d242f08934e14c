"""Baseline auto-expiry against the simulated mill over real OPC UA (plant-model 3 D): without
a fresh operator confirmation a writing loop stops adjusting and leaves the setpoint where it
is; a confirmation on the HMI (a change of `baseline_confirm_tag`) lets it act again, and a
restart does not renew the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.control_rig import control_rig, wait_for
from tests.support.config import ConfigDoc

pytestmark = pytest.mark.timeout(480)  # a hang guard: the waits (control_rig.BUSY) fail first

EXPIRED = "baseline expired"


def _confirm_on_the_hmi(config: ConfigDoc) -> None:
    config.add("loops[name=limestone].baseline_confirm_tag", "AdviceAck")


def _expired(r: dict[str, Any]) -> bool:
    return str(r.get("reason", "")).startswith(EXPIRED)


async def test_the_baseline_expires_and_an_operator_confirmation_renews_it(
    tmp_path: Path,
) -> None:
    async with control_rig(tmp_path, min_interval_s=2.0, max_rate_per_h=1000.0,
                           baseline_expiry_s=8.0, edit=_confirm_on_the_hmi) as rig:  # fmt: skip
        mill = rig.plant.mill
        await wait_for(lambda: any(_expired(r) for r in rig.records("cycle", "limestone")), 60,
                       "the limestone loop's baseline to expire")  # fmt: skip
        records = rig.records("cycle", "limestone")
        first = next(i for i, r in enumerate(records) if _expired(r))
        confirmed = records[first]["baseline_confirmed_at"]
        assert confirmed is not None and records[first]["outcome"] == "hold"
        assert records[first]["decided_at"] - confirmed > 8.0
        setpoint = mill.read("LimestoneShareSetpoint").value
        seen = len(records)
        # It stays expired: held, nothing written, the setpoint where the operator has it.
        await wait_for(lambda: len(rig.records("cycle", "limestone")) >= seen + 3, 30,
                       "three more cycles")  # fmt: skip
        held = rig.records("cycle", "limestone")[first:]
        assert all(_expired(r) and "write" not in r for r in held), [r["reason"] for r in held]
        assert mill.read("LimestoneShareSetpoint").value == setpoint
        # The operator confirms on the HMI: the loop decides again from that confirmation.
        mill.operator("ack_advice", value=4242)
        seen = len(rig.records("cycle", "limestone"))

        def renewed() -> dict[str, Any] | None:
            return next((r for r in rig.records("cycle", "limestone")[seen:]
                         if not _expired(r) and r["baseline_confirmed_at"] > confirmed), None)  # fmt: skip

        after = await wait_for(renewed, 60, "a cycle after the confirmation that is not expired")
        assert after["baseline"] is not None


async def test_a_restart_does_not_renew_an_expired_baseline(tmp_path: Path) -> None:
    async with control_rig(tmp_path, min_interval_s=2.0, max_rate_per_h=1000.0,
                           baseline_expiry_s=8.0) as rig:  # fmt: skip
        await wait_for(lambda: any(_expired(r) for r in rig.records("cycle", "limestone")), 60,
                       "the limestone loop's baseline to expire")  # fmt: skip
        confirmed = next(r for r in rig.records("cycle", "limestone") if _expired(r))[
            "baseline_confirmed_at"
        ]
        await rig.stop()
        seen = len(rig.records("cycle", "limestone"))
        await rig.start()
        await wait_for(lambda: sum(map(_expired, rig.records("cycle", "limestone")[seen:])) >= 2,
                       60, "two expired cycles after the restart")  # fmt: skip
        after = rig.records("cycle", "limestone")[seen:]
        # Before its heartbeat runs the new process is refused by gate 1 (blocked); once it
        # passes, the baseline it takes under the same grant is still the expired one.
        assert all(_expired(r) or r["outcome"] == "blocked" for r in after), after
        assert all("write" not in r for r in after)
        assert {r["baseline_confirmed_at"] for r in after if _expired(r)} == {confirmed}
