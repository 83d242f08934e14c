"""The demo's story: a timeline of phases, each announced on screen as it happens.

Owns: what happens when (in plant time: 6 h of plant in the demo's wall duration) and the
actions of each phase on the plant, the cloud receiver and the agent: normal operation, a
drop in clinker quality, a cloud outage and its drain, the agent stopping (heartbeat gone,
PLC falls back to local), the agent restarting and the operator granting remote again.
Must not: draw anything (it calls `announce`), compute the summary, or act on the agent
other than through the stage (start, stop) and on the plant other than as an operator, a
fault or the weather would.
Invariants: every announcement key in `KEYS` is made exactly once in a complete run, in
that order except `backlog_drained`, which comes whenever the backlog is gone (after
`cloud_back`); the clinker step lands at an exact plant time (5 plant minutes before the
2-hourly C3S spot sample), so the plant's path is the same at every duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable

from agent.demo.cloud_faults import Fault
from agent.demo.stage import PLANT_SPAN_S, Stage, until

KEYS = (
    "normal", "remote_granted", "clinker_drop", "cloud_outage", "cloud_back",
    "backlog_drained", "agent_stopped", "plc_local", "agent_back", "remote_regranted", "end",
)  # fmt: skip
C3S_PERIOD_S = 2 * 3600.0
CLINKER_LEAD_S = 300.0
CLINKER_LEVEL_MPA = 47.3
"""The clinker's 28-day strength after the drop (design 51): with the usual recipe the
cement falls short of 47.5 MPa; the C3S it implies stays inside the model's training range."""
OUTAGE = (0.42, 0.52)
AGENT_STOP = 0.68
MIN_DURATION_S = 75.0

Announce = Callable[[str, str], None]


async def _at_plant(stage: Stage, plant_s: float) -> None:
    await until(lambda: stage.plant_s >= plant_s)


def _heartbeat_echoed(stage: Stage) -> bool:
    app = stage.app
    if app is None or app.control is None:
        return False
    sent = {lp.heartbeat.sent for lp in app.control.loops if lp.heartbeat is not None}
    echo = app.latest.get("HeartbeatEcho")
    return echo is not None and echo.value in sent


async def play(stage: Stage, announce: Announce, *,
               recipe: tuple[float, float] = (12.0, 950.0)) -> None:  # fmt: skip
    """Run the whole story; returns at its end with the agent still running. `recipe`
    (limestone %, separator rpm): the operators' recipe the mill runs in local control before
    the agent starts, as on the baseline's mill (agent.demo.baseline)."""
    mill = stage.plant.mill
    mill.operator("remote_enable", value=False)
    limestone, separator = recipe
    mill.operator("local_setpoint", value=limestone, tag="LimestoneShareSetpoint")
    mill.operator("local_setpoint", value=separator, tag="SeparatorSpeedSetpoint")
    announce("normal", f"Normal operation. The mill runs on its operators' recipe (separator "
             f"{separator:.0f} rpm, limestone {limestone:.1f} %, for a 28-day mean of 48 MPa); "
             "the agent starts, reads the tags over OPC UA and Modbus and predicts the 28-day "
             "strength every cycle.")  # fmt: skip
    await stage.start_agent()
    await until(lambda: _heartbeat_echoed(stage), 20.0)
    mill.operator("remote_enable", value=True)
    announce("remote_granted", "The PLC echoes the agent's heartbeat; the operator grants remote. "
             "The loop keeps the predicted 28-day strength 2.5 model RMSE above the class's "
             "lower limit (42.5 MPa): where the operators' recipe holds more margin, it "
             "spends it on limestone, 0.5 %-point at a time, less clinker, less CO2.")  # fmt: skip
    drained = asyncio.create_task(_announce_drain(stage, announce))
    try:
        await _clinker_drop(stage, announce)
        await _at_plant(stage, OUTAGE[0] * PLANT_SPAN_S)
        stage.cloud.faults.add(Fault.error(503), times=1_000_000)
        announce("cloud_outage", "The cloud is unreachable (every upload answers 503). "
                 "Control goes on; every sample stays in the agent's SQLite buffer: watch "
                 "it grow.")  # fmt: skip
        await _at_plant(stage, OUTAGE[1] * PLANT_SPAN_S)
        stage.cloud.faults.clear()
        announce(
            "cloud_back",
            "The cloud is back: the agent sends live data first and drains "
            "the backlog behind it; the receiver drops nothing and stores nothing twice.",
        )
        await _at_plant(stage, AGENT_STOP * PLANT_SPAN_S)
        await _restart(stage, announce)
        await _at_plant(stage, PLANT_SPAN_S)
        await until(drained.done, 30.0)
    finally:
        drained.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drained
    announce("end", "End of the story: the agent shuts down in order and its last block is sent.")


async def _clinker_drop(stage: Stage, announce: Announce) -> None:
    plant, mill = stage.plant, stage.plant.mill
    when = math.floor((stage.start_time + 0.25 * PLANT_SPAN_S) / C3S_PERIOD_S + 1) * C3S_PERIOD_S
    when -= CLINKER_LEAD_S + stage.start_time
    await until(lambda: stage.plant_s >= when - 0.5 * plant.time_scale)  # 0.5 s wall early
    await plant.pause()
    try:
        ticks = round((when - stage.plant_s) / mill.dt)
        mill.step(max(0, ticks))
        delta = round(CLINKER_LEVEL_MPA - mill.truth()["S_clk"], 6)
        stage.inject("clinker_quality_step", delta=delta)
    finally:
        plant.resume()
    announce("clinker_drop", f"A weaker clinker arrives: its strength drops by {-delta:.1f} MPa "
             f"to {CLINKER_LEVEL_MPA} MPa. Nobody sees it until the lab's 2-hourly C3S result "
             "(5 plant minutes later, published 3 min after); then the model predicts a "
             "deficit and the loop grinds finer (separator +20 rpm per move) and takes "
             "limestone back.")  # fmt: skip


async def _restart(stage: Stage, announce: Announce) -> None:
    mill = stage.plant.mill
    await stage.stop_agent()
    announce("agent_stopped", "The agent stops (an upgrade, a crash): ordered shutdown, no write "
             "on the way down, and its heartbeat stops.")  # fmt: skip
    await until(lambda: mill.read("WatchdogFault").value is True, 40.0)
    announce(
        "plc_local",
        "The simulated PLC saw no heartbeat for 15 s: WatchdogFault latched, "
        "RemoteActive off. The mill runs on in local control at the setpoints it had.",
    )
    await stage.start_agent()
    await until(lambda: _heartbeat_echoed(stage), 20.0)
    announce("agent_back", "The agent is back on the same state directory (the audit chain "
             "continues). Its heartbeat is echoed, but the PLC stays in local until the "
             "operator acknowledges: the handshake gate refuses every cycle.")  # fmt: skip
    await asyncio.sleep(2.0)
    mill.operator("remote_enable", value=True)
    announce("remote_regranted", "The operator acknowledges the fault and grants remote. The "
             "loops start fresh from the operator's setpoints as their baseline; no old write "
             "is replayed.")  # fmt: skip


async def _announce_drain(stage: Stage, announce: Announce) -> None:
    """`backlog_drained` once the cloud is back and the buffer holds at most the live block."""
    await _at_plant(stage, OUTAGE[1] * PLANT_SPAN_S)

    def drained() -> bool:
        app = stage.app
        return app is not None and app.buffer is not None and (
            app.buffer.budget().blocks_pending <= 2)  # fmt: skip

    await asyncio.sleep(1.0)
    await until(drained)
    announce(
        "backlog_drained",
        "Backlog drained: everything buffered during the outage has reached the cloud.",
    )
