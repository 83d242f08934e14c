"""The simulated cement mill as its PLC publishes it: the public face of the demo plant.

Owns: the one seeded random generator, sim time, the published state of every tag (value and
source time, sampled at each tag's update period with measurement noise), remote writes with
their status codes, operator actions, and fault injection (plant-model.md 1.2-1.5). It wires
dynamics.Process (physics), plc.Plc (selection, watchdog, ramps, trip state), lab.Lab
(composites, analyser, the record of results entered), faults.FaultSet and drift (plant-model
4.3) together; products (plant-model 4.1: the product table, recipes, changes, the routing of
material to the lab's samples) live in mill_products.MillProducts.
Must not: do I/O, sleep, open sockets or know about OPC UA/Modbus objects (the servers read and
write through this API and map status names to their own codes), or use wall-clock time.
Invariants: deterministic for a given seed and call sequence (every draw comes from two
numpy Generators seeded from `seed`: the main one, and one for the strength lab's noise and
entry delays so that the 4-hourly composites never shift the process's random sequence; draws
depend on the tick count only, never on reads); read() never changes
state; with noise=False nothing is drawn and the plant sits exactly at its nominal steady state
until something moves it. noise=False zeroes measurement noise, lab noise, the inlet-temperature
jitter and the disturbance innovations (grindability and clinker reactivity stay at their means);
the strength lab's entry delays are drawn all the same. Every lab tag `<Tag>` has a
`<Tag>SampleTime` companion, set to the result's sample time together with the value.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from agent.demo.drift import apply_drift
from agent.demo.dynamics import TRUTH_NAMES, Process
from agent.demo.faults import DRIFT_KINDS, Fault, FaultSet, Value, check_kind, validate
from agent.demo.lab import Lab
from agent.demo.lab_record import LabRecord
from agent.demo.mill_products import MillProducts
from agent.demo.plc import MV_TAGS, Plc
from agent.demo.products import TRANSITION_S
from agent.demo.published import FAST_TAGS, INDEX, LAB_TAGS, Reading, initial_value
from agent.demo.tags import ALL_TAGS, BY_NAME, LAB_RESULT_TAGS, Kind

__all__ = ["FAST_TAGS", "INDEX", "LAB_TAGS", "PRODUCT", "START_TIME", "TRUTH_NAMES",
           "LabRecord", "Mill", "Reading", "backfill"]  # fmt: skip
START_TIME = 1_767_225_600.0
"""The default sim start: 2026-01-01 00:00 UTC."""
PRODUCT = "CEM II/A-LL 42.5 R"
"""The product the mill starts on (product 2 of products.PRODUCTS) unless the constructor names
another of the table (the mill then starts at that product's recipe)."""

_STATUS = ("HeartbeatEcho", "RemoteEnable", "RemoteActive", "WatchdogFault", "Running")
_I_PF = INDEX["ProductFineness"]
_SAMPLE_TIME = {name: INDEX[f"{name}SampleTime"] for name in LAB_RESULT_TAGS}
_I_SP = tuple(INDEX[name] for name in MV_TAGS)
_INT32 = (-(2**31), 2**31 - 1)
_NO_Z = (0.0, 0.0, 0.0)


class Mill:
    """The simulated vertical roller mill with its PLC, lab and fault injection."""

    def __init__(
        self, seed: int = 0, *, start_time: float = START_TIME, lab_time_scale: float = 1.0,
        wd_timeout_s: float = 15.0, has_online_psd: bool = True, dt: float = 0.1,
        noise: bool = True, lab_noise: bool | None = None, product: str = PRODUCT,
        transition_s: float = TRANSITION_S,
    ) -> None:  # fmt: skip
        self._rng = np.random.default_rng(seed)
        self._lab_rng = np.random.default_rng([seed, 14])
        self._zbuf: list[float] = []
        self._zi = 0
        self._noise = noise
        self._start = float(start_time)
        self._dt = float(dt)
        self._k = 0
        self._t = self._start
        self._psd = has_online_psd
        self._proc = Process(self._dt)
        self._plc = Plc(self._start, self._dt, wd_timeout_s)
        self._products = MillProducts(product, start_time=self._start, transition_s=transition_s,
                                      proc=self._proc, plc=self._plc)  # fmt: skip
        perfect_lab = not (noise if lab_noise is None else lab_noise)
        lab_rng = self._lab_rng
        self._lab = Lab(
            self._start, lab_time_scale, (lambda: 0.0) if perfect_lab else self._z,
            product=self._products.line.routed_name, uniform=lab_rng.random,
            strength_normal=(lambda: 0.0 * lab_rng.standard_normal()) if perfect_lab
            else lab_rng.standard_normal,
        )  # fmt: skip
        self._faults = FaultSet()
        self._skew = 0.0
        self._down_until: float | None = None
        self.trip_reason: str | None = None
        """Why the mill last tripped ("vibration/dp", "fault"), None before any trip."""
        self._val: list[Value] = [initial_value(t.kind, t.nominal) for t in ALL_TAGS]
        self._time: list[float] = [self._start] * len(ALL_TAGS)
        for i in _SAMPLE_TIME.values():
            self._val[i] = self._start  # the nominal lab values describe the start
        self._fast_idx = [INDEX[name] for name in FAST_TAGS]
        self._fast_sigma = [BY_NAME[name].noise_sigma if noise else 0.0 for name in FAST_TAGS]
        self._fast_period = [BY_NAME[name].update_s or self._dt for name in FAST_TAGS]
        self._fast_due = [self._start + p for p in self._fast_period]
        self._status_idx = [INDEX[name] for name in _STATUS]
        self._products.start(self._val, self._time)
        if self._plc.remote_tracked:  # started on another product's recipe
            self._sync_plc()

    # --- time ---------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Current sim time, unix seconds."""
        return self._t

    @property
    def dt(self) -> float:
        """Sim seconds per tick."""
        return self._dt

    @property
    def rng(self) -> np.random.Generator:
        """The simulator's one random generator (backfill's excitation plan draws from it)."""
        return self._rng

    def step(self, ticks: int = 1) -> None:
        """Advance ticks * dt."""
        if ticks < 0:
            raise ValueError(f"ticks must be >= 0, got {ticks}")
        for _ in range(ticks):
            self._tick()

    def _z(self) -> float:
        if self._zi >= len(self._zbuf):
            self._zbuf = self._rng.standard_normal(4096).tolist()
            self._zi = 0
        self._zi += 1
        return self._zbuf[self._zi - 1]

    def _tick(self) -> None:
        self._k += 1
        t = self._t = self._start + self._k * self._dt
        plc, proc = self._plc, self._proc
        plc.tick(t)
        z = (self._z(), self._z(), self._z()) if self._noise else _NO_Z
        if proc.tick(t - self._start, plc.eff, plc.running, z):
            self.trip_reason = "vibration/dp"
            plc.trip()
        values = (*proc.measured(), plc.eff[0], plc.eff[1])
        val, tim, due, period, sigma = (
            self._val, self._time, self._fast_due, self._fast_period, self._fast_sigma,
        )  # fmt: skip
        spikes = self._faults.spike_tags
        for j, i in enumerate(self._fast_idx):
            if t >= due[j] - 1e-9:
                x = values[j]
                if sigma[j]:
                    x += sigma[j] * self._z()
                if spikes and ALL_TAGS[i].name in spikes:
                    x = self._faults.spike(ALL_TAGS[i].name, x, t)
                val[i] = x
                tim[i] = t
                nxt = due[j] + period[j]
                due[j] = nxt if nxt > t + 1e-9 else t + period[j]
        self._sync_plc()
        results = self._lab.tick(
            t, plc.running, b=proc.b, r45=proc.r45, s2=proc.s2, s7=proc.s7, s28=proc.s28,
            c3s=proc.c3s,
        )  # fmt: skip
        for name, x, ts in results:
            val[INDEX[name]] = self._faults.spike(name, x, t) if name in spikes else x
            tim[INDEX[name]] = ts
            if (i_st := _SAMPLE_TIME.get(name)) is not None:
                val[i_st] = tim[i_st] = ts
        if self._down_until is not None and t >= self._down_until:
            self._faults.remove("server_down")
            self._down_until = None

    def _sync_plc(self) -> None:
        """Publish PLC-owned tags that changed (status flags, echo, tracked remote SPs)."""
        plc, val, tim, t = self._plc, self._val, self._time, self._t
        state = (plc.echo, plc.remote_enable, plc.remote_active, plc.wd_fault, plc.running)
        for i, v in zip(self._status_idx, state, strict=True):
            if val[i] != v or type(val[i]) is not type(v):
                val[i] = v
                tim[i] = t
        if plc.remote_tracked:
            plc.remote_tracked = False
            for j, i in enumerate(_I_SP):
                if val[i] != plc.remote[j]:
                    val[i] = plc.remote[j]
                    tim[i] = t

    # --- reads ----------------------------------------------------------------------------
    def read(self, name: str) -> Reading:
        """The published reading of a tag, faults applied. KeyError for unknown names."""
        i = INDEX[name]
        if i == _I_PF and not self._psd:
            return Reading(None, "BadNoCommunication", self._start + self._skew)
        value, status, ts = self._faults.transform(name, self._val[i], self._time[i])
        return Reading(value, status, ts + self._skew)

    def snapshot(self) -> dict[str, Reading]:
        """read() of every tag, in tags.ALL_TAGS order."""
        return {t.name: self.read(t.name) for t in ALL_TAGS}

    def raw_published(self) -> list[Value]:
        """Published values before read-time faults, in ALL_TAGS order (for backfill)."""
        return self._val

    def raw_source_times(self) -> list[float]:
        """Source times before read-time faults and clock skew, in ALL_TAGS order."""
        return self._time

    def truth(self) -> dict[str, float]:
        """Hidden noise-free state: dynamics.TRUTH_NAMES (B, B_eff, R45, S28, S2, CF, g, ...,
        P for the mill power) plus "MillPower", an alias of P."""
        truth = self._proc.truth()
        truth["MillPower"] = truth["P"]
        return truth

    def truth_row(self) -> tuple[float, ...]:
        """truth() values in TRUTH_NAMES order, without building a dict."""
        return self._proc.truth_row()

    @property
    def product(self) -> str:
        """The name of the product being ground now (lab results name the product their
        material is: products.routed(sample time))."""
        return self._products.product.name

    @property
    def products(self) -> MillProducts:
        """The product line: product (id, recipe), silo_id, routed(sample time)."""
        return self._products

    def change_product(self, product_id: int, silo_id: int) -> None:
        """The operator's product change: ProductId and SiloId change now, the PLC loads the
        recipe; the lab sees the new product after transition_s. ValueError for unknown ids."""
        self._products.change(self._t, product_id, silo_id, self._val, self._time)
        self._sync_plc()

    def lab_results(self, since_entry: float = -math.inf) -> list[LabRecord]:
        """Every lab result entered (published on its tag) so far with entry_time >
        since_entry, in entry order: what the LIMS would deliver, plus each one's hidden
        window-mean truth."""
        return self._lab.results(since_entry)

    def lab_scheduled(self) -> list[LabRecord]:
        """Every lab result the lab has taken but not entered yet (a 28-day test waits 28 days
        + 2-6 h), in entry order, with its hidden truth: the rest of the LIMS's future."""
        return self._lab.scheduled()

    # --- writes and operator actions --------------------------------------------------------
    def write(self, name: str, value: float | int | bool) -> str:
        """A remote (agent) write; returns a status code name. KeyError for unknown names."""
        spec = BY_NAME[name]
        if not spec.writable:
            return "BadNotWritable"
        if isinstance(value, bool):
            return "BadTypeMismatch"
        if spec.kind is Kind.INT32:
            if not isinstance(value, int):
                return "BadTypeMismatch"
            if not _INT32[0] <= value <= _INT32[1]:
                return "BadOutOfRange"
            if name == "Heartbeat":
                self._plc.write_heartbeat(value, self._t)
            self._val[INDEX[name]] = value
            self._time[INDEX[name]] = self._t
            return "Good"
        if not isinstance(value, int | float):
            return "BadTypeMismatch"
        reject = self._faults.get("plc_reject_writes")
        if reject is not None:
            return str(reject.params["code"])
        x = float(value)
        if not (math.isfinite(x) and spec.hard[0] <= x <= spec.hard[1]):
            return "BadOutOfRange"
        if name in MV_TAGS:
            self._plc.remote[MV_TAGS.index(name)] = x
        self._val[INDEX[name]] = x
        self._time[INDEX[name]] = self._t
        return "Good"

    def operator(
        self, action: str, value: float | bool | None = None, tag: str | None = None
    ) -> None:
        """Operator/HMI actions: "remote_enable" (value bool; True also acknowledges a latched
        watchdog fault), "reset_trip", "local_setpoint" (tag, value: the local SP),
        "ack_advice" (value: the suggestion id the operator accepts, written to AdviceAck)."""
        if action == "remote_enable":
            if not isinstance(value, bool):
                raise ValueError("remote_enable needs value=True or value=False")
            self._plc.enable_remote(value, self._t)
        elif action == "reset_trip":
            self._plc.reset_trip()
            self._proc.t_vib_high = 0.0
        elif action == "local_setpoint":
            if tag not in MV_TAGS:
                raise ValueError(f"local_setpoint needs tag in {MV_TAGS}, got {tag!r}")
            if isinstance(value, bool) or value is None or not math.isfinite(value):
                raise ValueError(f"local_setpoint needs a finite number, got {value!r}")
            self._plc.local[MV_TAGS.index(tag)] = float(value)
        elif action == "ack_advice":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"ack_advice needs the suggestion id, got {value!r}")
            self._val[INDEX["AdviceAck"]] = int(value)
            self._time[INDEX["AdviceAck"]] = self._t
        else:
            raise ValueError(f"unknown operator action {action!r}")
        self._sync_plc()

    # --- faults -----------------------------------------------------------------------------
    def inject(self, kind: str, tag: str | None = None, **params: float | str) -> None:
        """Inject a fault of plant-model.md 1.5; ValueError for unknown kinds, tags, params."""
        full = validate(kind, tag, params)
        if kind == "trip":  # an event, not a state
            self.trip_reason = "fault"
            self._plc.trip()
            self._sync_plc()
            return
        self.clear(kind, tag)
        fault = Fault(kind, tag, full, self._t)
        if tag is not None:
            fault.captured = (self._val[INDEX[tag]], self._time[INDEX[tag]])
        self._apply(fault, +1.0)
        self._faults.add(fault)

    def clear(self, kind: str | None = None, tag: str | None = None) -> None:
        """Clear matching faults (None matches any); clear() clears all."""
        if kind is not None:
            check_kind(kind)
        for fault in self._faults.remove(kind, tag):
            self._apply(fault, -1.0)

    def _apply(self, fault: Fault, sign: float) -> None:
        """Side effects of plant-wide faults; sign -1 undoes them."""
        on = sign > 0
        if fault.kind == "remote_disable":
            self._plc.enable_remote(not on, self._t)
        elif fault.kind == "watchdog_stall":
            self._plc.echo_stalled = on
        elif fault.kind == "server_down":
            self._down_until = self._t + fault.num("duration_s") if on else None
        elif fault.kind == "clock_skew":
            self._skew = fault.num("offset_s") if on else 0.0
        elif fault.kind == "grindability_step":
            self._proc.step_disturbance("g", sign * fault.num("delta"))
        elif fault.kind == "clinker_quality_step":
            self._proc.step_disturbance("S_clk", sign * fault.num("delta"))
        elif fault.kind in DRIFT_KINDS:
            apply_drift(self._proc, fault.kind, fault.params, on)
        self._sync_plc()

    def active_faults(self) -> list[tuple[str, str | None, dict[str, float | str]]]:
        """(kind, tag, params) of every active fault, in injection order."""
        return [(f.kind, f.tag, dict(f.params)) for f in self._faults.faults.values()]

    def server_down_until(self) -> float | None:
        """Sim time until which the server_down fault holds, else None."""
        return self._down_until


def backfill(
    days: float, *, dt: float = 10.0, seed: int = 0, excitation: bool = True,
    lab_time_scale: float = 1.0, product_id: int = 2,
) -> dict[str, NDArray[np.float64]]:  # fmt: skip
    """History and training data: see agent.demo.backfill.backfill (re-exported here)."""
    from agent.demo import backfill as _backfill

    return _backfill.backfill(days, dt=dt, seed=seed, excitation=excitation,
                              lab_time_scale=lab_time_scale, product_id=product_id)  # fmt: skip
