"""Process physics of the simulated vertical roller mill (plant-model.md 1.3, actuators onwards).

Owns: the hidden, noise-free process state (actuator lags, transport delays, grindability and
clinker-reactivity disturbances, fineness, overload, powers, pressures, temperatures, quality)
and its per-tick update from the PLC's effective setpoints; the trip *condition*.
Must not: draw random numbers itself (the caller passes standard-normal innovations so that one
generator drives the whole simulator), know about tags, statuses, faults, the lab or servers.
Invariants: every lag is the exact operator x <- a*x + (1-a)*u with a = exp(-dt/tau), so the
update is stable and consistent at any dt; every delay is a ring buffer of max(1, round(theta/dt))
samples; the disturbance processes are Ornstein-Uhlenbeck steps as written in the spec; with zero
innovations and nominal setpoints the state stays exactly at the nominal steady state.
Drift (plant-model 4.3, set by the mill's faults): the strengths use the strength potential
S_pot = S_clk + s_offset + wear instead of S_clk, while C3S (the observable proxy) follows S_clk
only; `wear` grows by `wear_rate` every tick; the limestone feeder tracks its setpoint with a
scale that reads `ls_scale` x the true share, so the true share is SP / ls_scale and the
measured one LS x ls_scale.
Products (plant-model 4.1, set by the mill at a product change): every deviation that was taken
from 12 % limestone is taken from the product's nominal share (`ref`: carried with the limestone,
see _Carried, so a change moves no deviation by itself), the clinker factor is relative to the
product's nominal `cf_nom`, the strength potential gets the product's
`s_base`, and the gypsum share follows the product's (feeder lag 8 s). The defaults are today's
constants (12 %, 0.83, 0, 5 %), so a mill that never changes product computes exactly as before.
"""

from __future__ import annotations

import math

NOMINAL_SP: tuple[float, ...] = (180.0, 950.0, 2.0, 85.0, 400.0, 12.0)
"""Nominal effective setpoints, PLC order: feed, separator, water, fan, grinding aid, limestone."""

GYPSUM = 5.0
P_MAX_KW = 3800.0
IDLE_POWER_KW = 400.0
IDLE_VIBRATION = 0.5
VIB_TRIP = 8.0
VIB_TRIP_S = 5.0
DP_TRIP = 70.0
G_MEAN = 1.0
S_CLK_MEAN = 51.0

TRUTH_NAMES: tuple[str, ...] = (
    "B", "B_ss", "B_eff", "B_dem", "R45", "S28", "S2", "CF", "C3S", "g", "S_clk", "L", "F_max",
    "e_ss", "k_GA", "F", "F_m", "n", "n_e", "W", "fan", "GA", "LS", "LS_m", "GY", "T_in", "P",
    "P_sep", "P_be", "P_fan", "dp", "T_out", "vib", "S7", "LS_meas",
)  # fmt: skip
"""Keys of Process.truth(), in the order of Process.truth_row(). S7 (est., issue 14):
0.78 S_pot (CF/0.83)^1.1 + 0.011 (B_eff - 3800), between the 2-day and 28-day equations;
LS_meas is the limestone share the feeder's scale reports (LS x ls_scale)."""


def _a(dt: float, tau: float) -> float:
    return math.exp(-dt / tau)


def _k_ga(ga: float) -> float:
    return (1.0 - 0.08 * (1.0 - math.exp(-ga / 300.0))) / (
        1.0 - 0.08 * (1.0 - math.exp(-400.0 / 300.0))
    )


class _Delay:
    """Pure transport delay: a ring buffer of max(1, round(theta/dt)) samples."""

    __slots__ = ("buf", "i", "n")

    def __init__(self, theta: float, dt: float, init: float) -> None:
        self.n = max(1, round(theta / dt))
        self.buf = [init] * self.n
        self.i = 0

    def push(self, u: float) -> float:
        """Store u and return the sample pushed n ticks ago."""
        i = self.i
        out = self.buf[i]
        self.buf[i] = u
        self.i = 0 if i + 1 == self.n else i + 1
        return out


class _Carried:
    """The product's nominal limestone share as the limestone carries it: it ramps like the
    PLC's limestone setpoint (0.05 %/s), lags like the feeder (8 s) and reaches the mill like
    the limestone (105 s), so deviations from it do not jump at a product change. x: at the
    feeder (like LS), m: in the mill (like LS_m). Still (no arithmetic at all) when settled."""

    __slots__ = ("a", "delay", "e", "left", "m", "step", "target", "x")

    def __init__(self, x: float, dt: float) -> None:
        self.target = self.e = self.x = self.m = x
        self.delay = _Delay(105.0, dt, x)
        self.a, self.step, self.left = _a(dt, 8.0), 0.05 * dt, 0

    def set(self, target: float, settled: bool = False) -> None:
        self.target = target
        self.left = self.delay.n + 1
        if settled:
            self.e = self.x = self.m = target
            self.delay.buf = [target] * self.delay.n
            self.left = 0

    def tick(self) -> None:
        if not self.left:
            return
        e, s, tg = self.e, self.step, self.target
        e = self.e = e + s if tg > e + s else e - s if tg < e - s else tg
        x = self.a * self.x + (1.0 - self.a) * e
        self.x = e if abs(x - e) < 1e-9 else x
        self.m = self.delay.push(self.x)
        self.left = self.left - 1 if self.x == tg else self.delay.n + 1


class Process:
    """The mill's continuous process. Call tick() once per dt with the effective setpoints."""

    def __init__(self, dt: float) -> None:
        if not dt > 0.0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.dt = dt
        self.a_f, self.a_w, self.a_fan = _a(dt, 8.0), _a(dt, 4.0), _a(dt, 10.0)
        self.a_ga, self.a_ls = _a(dt, 30.0), _a(dt, 8.0)
        self.a_bf, self.a_bs = _a(dt, 180.0), _a(dt, 300.0)
        self.a_p, self.a_sep, self.a_be = _a(dt, 90.0), _a(dt, 5.0), _a(dt, 60.0)
        self.a_dp, self.a_tout, self.a_vib = _a(dt, 60.0), _a(dt, 120.0), _a(dt, 20.0)
        self.decay_l = _a(dt, 120.0)
        self.n_step = 20.0 * dt  # separator VFD rate limit, 20 rpm/s
        self.ou_g = (dt / (4 * 3600.0), 0.05 * math.sqrt(2 * dt / (4 * 3600.0)))
        self.ou_s = (dt / (12 * 3600.0), 1.5 * math.sqrt(2 * dt / (12 * 3600.0)))
        self.d_f = _Delay(45.0, dt, 180.0)
        self.d_n = _Delay(60.0, dt, 950.0)
        self.d_ls = _Delay(105.0, dt, 12.0)
        self.g_mu, self.s_mu = G_MEAN, S_CLK_MEAN
        self.g, self.s_clk = G_MEAN, S_CLK_MEAN
        self.f, self.f_m, self.n, self.n_e = 180.0, 180.0, 950.0, 950.0
        self.w, self.fan, self.ga, self.ls, self.ls_m = 2.0, 85.0, 400.0, 12.0, 12.0
        self.t_in, self.c3s = 210.0, 60.0
        self.dbf, self.dbs = 0.0, 0.0
        self.b_ss = self.b = self.b_eff = self.b_dem = 3800.0
        self.r45, self.cf, self.s28, self.s2, self.s7 = 4.0, 0.83, 51.0, 25.5, 0.78 * 51.0
        self.s_offset = 0.0  # drift faults on the strength potential (reactivity, SO3), MPa
        self.wear, self.wear_rate = 0.0, 0.0  # table wear: MPa so far, MPa per tick
        self.ls_scale = 1.0  # the limestone scale's reading / the true share (scale drift)
        self.k_ga, self.f_max, self.e_ss, self.load = 1.0, P_MAX_KW / 18.0, 18.0, 0.0
        self.p, self.p_sep, self.p_be = 3240.0, 40.0 + 0.085 * 950.0, 76.0
        self.p_fan = 0.0021 * 1.15 * 85.0**3
        self.dp, self.t_out, self.vib_x, self.vib = 41.6, 95.0, 2.0, 2.0
        self.t_vib_high = 0.0
        self.ref, self.cf_nom, self.s_base = _Carried(12.0, dt), 0.83, 0.0  # the product's
        self.gy = self.gy_sp = GYPSUM
        self.a_gy = _a(dt, 8.0)

    def set_product(self, ls_nom: float, cf_nom: float, s_base: float, gypsum: float) -> None:
        """A product change: the quality equations' reference point and the gypsum share."""
        self.ref.set(ls_nom)
        self.cf_nom, self.s_base, self.gy_sp = cf_nom, s_base, gypsum

    def settle(self, sp: list[float]) -> None:
        """Put the state at the steady state of setpoints sp with nominal disturbances (a mill
        that starts grinding another product than the default); only the separator, limestone
        and gypsum may differ from nominal."""
        n, ls = sp[1], sp[5]
        self.n = self.n_e = n
        self.d_n.buf = [n] * self.d_n.n
        self.ls = self.ls_m = ls
        self.d_ls.buf = [ls] * self.d_ls.n
        self.gy = self.gy_sp
        self.ref.set(self.ref.target, settled=True)
        self.dbf, self.dbs = 1.3 * (n - 950.0), 60.0 * (ls - self.ref.m)
        self._grinding()
        self.p = self.f_m * self.e_ss
        self.p_sep = 40.0 + 0.085 * n
        self.p_be = 40.0 + 0.2 * self.f_m * (self.b_dem / 3800.0) ** 4
        self.dp = 20.0 + 0.12 * self.f_m + 0.015 * (self.b_ss - 3800.0)
        self._outputs(True)

    def tick(
        self, t_rel: float, sp: list[float], running: bool, z: tuple[float, float, float]
    ) -> bool:
        """Advance one dt. sp: effective setpoints (NOMINAL_SP order); z: N(0,1) innovations
        for grindability, clinker reactivity and the inlet-temperature jitter. Returns True when
        the trip condition (vibration > 8 mm/s for 5 s, or dp > 70 mbar) holds while running."""
        self._actuators(sp, running)
        self._disturbances(t_rel, z)
        self._grinding()
        return self._outputs(running)

    def _actuators(self, sp: list[float], running: bool) -> None:
        a = self.a_f
        self.f = a * self.f + (1.0 - a) * (sp[0] if running else 0.0)
        self.f_m = self.d_f.push(self.f)
        dn = sp[1] - self.n
        step = self.n_step
        self.n += step if dn > step else -step if dn < -step else dn
        self.n_e = self.d_n.push(self.n)
        a = self.a_w
        self.w = a * self.w + (1.0 - a) * sp[2]
        a = self.a_fan
        self.fan = a * self.fan + (1.0 - a) * sp[3]
        a = self.a_ga
        self.ga = a * self.ga + (1.0 - a) * sp[4]
        a = self.a_ls
        self.ls = a * self.ls + (1.0 - a) * sp[5] / self.ls_scale  # the feeder tracks its scale
        self.ls_m = self.d_ls.push(self.ls)
        self.ref.tick()
        if self.gy != self.gy_sp:  # only after a product change: today's 5 % never moves
            a = self.a_gy
            gy = a * self.gy + (1.0 - a) * self.gy_sp
            self.gy = self.gy_sp if abs(gy - self.gy_sp) < 1e-9 else gy

    def _disturbances(self, t_rel: float, z: tuple[float, float, float]) -> None:
        k, s = self.ou_g
        self.g += (self.g_mu - self.g) * k + s * z[0]
        k, s = self.ou_s
        self.s_clk += (self.s_mu - self.s_clk) * k + s * z[1]
        self.t_in = 210.0 + 8.0 * math.sin(2.0 * math.pi * t_rel / 300.0) + 0.3 * z[2]
        self.c3s = 60.0 + 1.33 * (self.s_clk - 51.0)

    def _grinding(self) -> None:
        """Fineness, capacity, overload integrator and specific energy."""
        f_m, n_e, ls_m, ga, g, w = self.f_m, self.n_e, self.ls_m, self.ga, self.g, self.w
        ls_nom = self.ref.m
        dbf_ss = 1.3 * (n_e - 950.0) - 5.0 * (self.fan - 85.0)
        dbs_ss = (
            -4.0 * (f_m - 180.0) + 60.0 * (ls_m - ls_nom) + 0.3 * (ga - 400.0)
            - 400.0 * (g - 1.0) - 15.0 * max(0.0, w - 2.5)
        )  # fmt: skip
        a = self.a_bf
        self.dbf = a * self.dbf + (1.0 - a) * dbf_ss
        a = self.a_bs
        self.dbs = a * self.dbs + (1.0 - a) * dbs_ss
        b_ss = self.b_ss = 3800.0 + dbf_ss + dbs_ss
        k_ga = self.k_ga = _k_ga(ga)
        b_dem = self.b_dem = 3800.0 + 1.3 * (n_e - 950.0)
        f_max = self.f_max = P_MAX_KW / (18.0 * g * (max(b_dem, 1.0) / 3800.0) ** 1.4 * k_ga)
        if f_m > f_max:
            self.load += self.dt * (f_m / f_max - 1.0) / 300.0
        else:
            self.load *= self.decay_l  # exact solution of dL/dt = -L/120 s
        b = self.b = 3800.0 + self.dbf + self.dbs - 600.0 * self.load
        self.r45 = 4.0 - 0.004 * (b - 3800.0) + 0.15 * (self.ls - self.ref.x)
        self.e_ss = (
            18.0 * g * (max(b_ss - 60.0 * (ls_m - ls_nom), 1.0) / 3800.0) ** 1.4 * k_ga
            * (1.0 - 0.005 * (ls_m - ls_nom))
        )  # fmt: skip

    def _outputs(self, running: bool) -> bool:
        """Powers, pressure, temperature, vibration, quality; the trip condition."""
        f_m, fan, w, load = self.f_m, self.fan, self.w, self.load
        if running:
            p = max(IDLE_POWER_KW, min(f_m * self.e_ss * (1.0 + 0.2 * load), 1.05 * P_MAX_KW))
            dp = 20.0 + 0.12 * f_m + 0.015 * (self.b_ss - 3800.0) + 0.25 * (fan - 85.0)
            vib = 2.0 + 0.8 * max(0.0, 1.5 - w) + 0.02 * max(0.0, 150.0 - f_m) + 15.0 * load
        else:  # tripped: rollers lifted, main drive idling, only gas flows
            p, dp, vib = IDLE_POWER_KW, 20.0 + 0.25 * (fan - 85.0), IDLE_VIBRATION
        a = self.a_p
        self.p = a * self.p + (1.0 - a) * p
        a = self.a_sep
        self.p_sep = a * self.p_sep + (1.0 - a) * (40.0 + 0.085 * self.n)
        self.p_fan = 0.0021 * 1.15 * fan * fan * fan
        a = self.a_be
        be = 40.0 + 0.2 * f_m * (self.b_dem / 3800.0) ** 4 * (1.0 + load)
        self.p_be = a * self.p_be + (1.0 - a) * be
        a = self.a_dp
        dp = self.dp = a * self.dp + (1.0 - a) * (dp + 60.0 * load)
        a = self.a_tout
        tout = (
            95.0 + 0.15 * (self.t_in - 210.0) - 3.0 * (w - 2.0) - 0.10 * (f_m - 180.0)
            + 0.2 * (fan - 85.0)
        )  # fmt: skip
        self.t_out = a * self.t_out + (1.0 - a) * tout
        a = self.a_vib
        self.vib_x = a * self.vib_x + (1.0 - a) * vib
        vib = self.vib = abs(self.vib_x)

        ls = self.ls
        cf = self.cf = (100.0 - ls - self.gy) / 100.0
        b_eff = self.b_eff = self.b - 60.0 * (ls - self.ref.x)
        self.wear += self.wear_rate
        s_pot = self.s_clk + self.s_offset + self.wear + self.s_base  # C3S sees s_clk only
        rel = cf / self.cf_nom
        self.s28 = s_pot * rel + 0.012 * (b_eff - 3800.0)
        self.s2 = 0.5 * s_pot * rel**1.2 + 0.010 * (b_eff - 3800.0)
        self.s7 = 0.78 * s_pot * rel**1.1 + 0.011 * (b_eff - 3800.0)

        if not running:
            self.t_vib_high = 0.0
            return False
        self.t_vib_high = self.t_vib_high + self.dt if vib > VIB_TRIP else 0.0
        return self.t_vib_high >= VIB_TRIP_S - 1e-9 or dp > DP_TRIP

    def step_disturbance(self, which: str, delta: float) -> None:
        """Shift a disturbance ("g" or "S_clk") and its OU mean by delta (fault injection)."""
        if which == "g":
            self.g += delta
            self.g_mu += delta
        else:
            self.s_clk += delta
            self.s_mu += delta

    def truth_row(self) -> tuple[float, ...]:
        """The hidden state in TRUTH_NAMES order."""
        return (
            self.b, self.b_ss, self.b_eff, self.b_dem, self.r45, self.s28, self.s2, self.cf,
            self.c3s, self.g, self.s_clk, self.load, self.f_max, self.e_ss, self.k_ga, self.f,
            self.f_m, self.n, self.n_e, self.w, self.fan, self.ga, self.ls, self.ls_m, self.gy,
            self.t_in, self.p, self.p_sep, self.p_be, self.p_fan, self.dp, self.t_out, self.vib,
            self.s7, self.ls * self.ls_scale,
        )  # fmt: skip

    def truth(self) -> dict[str, float]:
        """The hidden state by name (see TRUTH_NAMES)."""
        return dict(zip(TRUTH_NAMES, self.truth_row(), strict=True))

    def measured(self) -> tuple[float, ...]:
        """Noise-free values of the fast measured tags, in mill.FAST_TAGS order."""
        return (
            self.f, self.n, self.w, self.fan, self.ls * self.ls_scale, self.gy, self.p, self.p_sep,
            self.p_be, self.p_fan, self.dp, self.t_in, self.t_out, self.vib,
        )  # fmt: skip
