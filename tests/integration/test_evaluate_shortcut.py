"""Issue 15, the shortcut of `edge-agent evaluate`: the headless rig (the mill read and written
in process, agent.demo.headless) gives the same decisions as the networked path (the mill
behind the simulated PLC's real OPC UA server, the agent's real OPC UA driver subscribing and
writing), cycle by cycle, on the same seed over a few plant hours (tests.support.lockstep
steps the networked path in lockstep: before each tick and each cycle the agent's
LatestValues holds what the mill published).

Compared per cycle: the time, the loop, every gate's verdict, the inputs (value, status,
source time), the model's features, the candidates, the target, the guard's move, the
suggestion, the write and the outcome: the whole decision record except what measures the
machine (milliseconds) and the read-back's delay, which is wall-clock on the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.demo.headless.rig import Cycle, HeadlessRig, headless_rig
from tests.support.lockstep import networked_rig

pytestmark = pytest.mark.timeout(300)

SEED = 5
HOURS = 6.0
_MACHINE = frozenset({"inference_ms", "decision_ms", "readback_s"})


def _decision(value: Any) -> Any:
    """The record without what measures the machine rather than the plant."""
    if isinstance(value, dict):
        return {k: _decision(v) for k, v in value.items() if k not in _MACHINE}
    if isinstance(value, list):
        return [_decision(v) for v in value]
    return value


def _view(cycles: list[Cycle]) -> list[tuple[float, str, Any]]:
    out = []
    for c in cycles:
        body = _decision(c.record.to_json())
        handshake = body.get("handshake")
        if handshake is not None:  # the counter starts at random (agent.control.heartbeat)
            sent, echo = handshake.pop("sent"), handshake["echo"].pop("value")
            handshake["echo_lag"] = None if sent is None else sent - echo
        out.append((c.time, c.loop, body))
    return out


async def _run(rig: HeadlessRig) -> list[tuple[float, str, Any]]:
    await rig.run_for(HOURS * 3600.0)
    return _view(rig.cycles)


async def test_the_headless_shortcut_decides_as_the_networked_path(tmp_path: Path) -> None:
    async with headless_rig(tmp_path / "headless", seed=SEED) as rig:
        headless = await _run(rig)
        plant = rig.mill.truth()
    async with networked_rig(tmp_path / "networked", seed=SEED) as rig:
        networked = await _run(rig)
        end = rig.mill.truth()
    written = [d for d in headless if d[2]["outcome"] == "write"]
    print(f"{len(headless)} cycles, {len(written)} writes, outcomes "  # noqa: T201
          f"{sorted({d[2]['outcome'] for d in headless})}")  # fmt: skip
    assert written, "no write in the compared hours: the comparison would prove little"
    assert len(networked) == len(headless)
    for mine, theirs in zip(headless, networked, strict=True):
        assert mine == theirs
    assert end == plant, "the two mills ended in different states"
