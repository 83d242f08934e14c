"""PLC emulation of the simulated mill: local/remote selection, watchdog, clamp, ramp, trip state.

Owns: the remote (agent) and local (operator) setpoints, the effective setpoints after selection,
clamp and ramp, the handshake (Heartbeat, HeartbeatEcho, WatchdogFault, RemoteEnable,
RemoteActive) and the Running flag (plant-model.md 1.2 and 1.3, "PLC emulation").
Must not: model the process, validate OPC UA write types, draw random numbers, or know about
faults other than through the plain flags it exposes (echo_stalled, remote_enable).
Invariants:
- remote_active == remote_enable and not wd_fault and running, after every tick() and trip();
- wd_fault latches only while remote_enable is True (the PLC watches the heartbeat whenever the
  operator permits remote), and only enable_remote(True) (an operator action) clears it;
- every effective setpoint lies inside the tag's hard range and moves at most RAMPS[i]*dt per
  tick; while not running the effective feed is 0 (the feeders are interlocked off);
- bumpless both ways: on losing RemoteActive, local := effective (hold); on gaining it,
  remote := local (the remote setpoint tracks the operator's, so a stale agent value never
  takes over by itself; the agent must write a fresh setpoint);
- a product change loads the recipe (load_recipe): the local AND remote setpoints of the
  separator and the limestone share jump to the recipe's values; the effective ones ramp there.
"""

from __future__ import annotations

from agent.demo.dynamics import NOMINAL_SP
from agent.demo.tags import BY_NAME

MV_TAGS: tuple[str, ...] = (
    "FeedRateSetpoint",
    "SeparatorSpeedSetpoint",
    "WaterInjectionSetpoint",
    "FanSpeedSetpoint",
    "GrindingAidSetpoint",
    "LimestoneShareSetpoint",
)
"""Setpoint tags in PLC order (the same order as dynamics.NOMINAL_SP)."""

RAMPS: tuple[float, ...] = (1.0, 2.0, 0.1, 0.5, 10.0, 0.05)
"""Ramp limits of the effective setpoints per second: feed 1 t/h/s, separator 2 rpm/s (spec);
water 0.1 m3/h/s, fan 0.5 %/s, grinding aid 10 g/t/s, limestone 0.05 %/s (chosen: a normal-range
move completes in 10-60 s, well inside the process time constants)."""


class Plc:
    """The PLC logic. Times are sim unix seconds; call tick(t) once per dt before the process."""

    def __init__(self, start_time: float, dt: float, wd_timeout_s: float) -> None:
        if not wd_timeout_s > 0.0:
            raise ValueError(f"wd_timeout_s must be > 0, got {wd_timeout_s}")
        self.dt = dt
        self.wd_timeout = wd_timeout_s
        self.lo = [BY_NAME[name].hard[0] for name in MV_TAGS]
        self.hi = [BY_NAME[name].hard[1] for name in MV_TAGS]
        self.steps = [r * dt for r in RAMPS]
        self.remote = list(NOMINAL_SP)
        self.local = list(NOMINAL_SP)
        self.eff = list(NOMINAL_SP)
        self.remote_enable = True
        self.wd_fault = False
        self.running = True
        self.remote_active = True
        self.heartbeat = 0
        self.echo = 0
        self.hb_changed = start_time
        self.echo_stalled = False
        self.remote_tracked = False  # set when tracking overwrote `remote`; the mill republishes

    def tick(self, t: float) -> None:
        """One PLC scan at time t."""
        if self.remote_enable and not self.wd_fault and t - self.hb_changed > self.wd_timeout:
            self.wd_fault = True
        self._select()
        src = self.remote if self.remote_active else self.local
        eff, lo, hi, steps = self.eff, self.lo, self.hi, self.steps
        for i in range(6):
            target = min(max(src[i], lo[i]), hi[i])
            e = eff[i]
            s = steps[i]
            eff[i] = e + s if target > e + s else e - s if target < e - s else target
        if not self.running:
            eff[0] = 0.0
        if not self.echo_stalled:
            self.echo = self.heartbeat

    def _select(self) -> None:
        active = self.remote_enable and not self.wd_fault and self.running
        if active == self.remote_active:
            return
        if active:
            self.remote[:] = self.local
            self.remote_tracked = True
        else:
            self.local[:] = self.eff
        self.remote_active = active

    def write_heartbeat(self, value: int, t: float) -> None:
        """The agent's heartbeat write; a changed value restarts the watchdog timer."""
        if value != self.heartbeat:
            self.heartbeat = value
            self.hb_changed = t

    def enable_remote(self, enable: bool, t: float) -> None:
        """Operator's remote-enable switch. Enabling clears a latched watchdog fault and restarts
        the heartbeat timer (the operator acknowledges; the agent must then keep beating)."""
        if enable:
            self.wd_fault = False
            self.hb_changed = t
        self.remote_enable = enable
        self._select()

    def load_recipe(self, recipe: dict[str, float]) -> None:
        """A product change: these setpoints (tag -> value) jump, local and remote alike."""
        for name, x in recipe.items():
            i = MV_TAGS.index(name)
            self.local[i] = self.remote[i] = x
        self.remote_tracked = True  # the mill republishes the remote setpoints

    def trip(self) -> None:
        """Trip: Running false, feed interlocked to 0, RemoteActive false (bumpless hold)."""
        self.running = False
        self._select()
        self.eff[0] = 0.0

    def reset_trip(self) -> None:
        """Operator's trip reset: Running again; the feed ramps up from 0."""
        self.running = True
        self._select()
