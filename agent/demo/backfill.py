"""History and training data from the simulated mill, without servers (plant-model.md 1.4).

Owns: the random excitation plan (plant step tests: separator +-50 rpm every 1-3 h, feed
+-20 t/h every 2-4 h, limestone +-1 % once a day, grinding aid 300-500 g/t once a day), the
scripted operator who keeps the mill out of overload and restarts it after a trip, and the
recording of every published tag and hidden truth at every step.
Must not: use other equations than mill.Mill (it drives a Mill through its public API), draw
from any generator but the mill's, or do I/O.
Invariants: the result is a pure function of (days, dt, seed, excitation, lab_time_scale,
product_id, the bands, limestone_moves); every array has one row per step; truths are
recorded at every step.
Products (plant-model 4.1): the mill grinds `product_id` all along, starting at its recipe; the
separator and limestone bands are centred on the recipe (separator +-100 rpm, limestone +-2
%-points), so product 2 runs exactly the plan it always ran (850-1050 rpm, 10-14 %). A band
given by the caller (a model that must know the product's whole operating range, e.g. 9-20 %
limestone) replaces the centred one; the steps and their timing stay the same, or the
limestone draws a fresh level in its band once a day ("draw": a wide band is covered early).
Step tests run through the real PLC path: the plan writes remote setpoints while it keeps the
heartbeat alive, so the setpoint tags, their effective values and the PVs all carry the steps.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from agent.demo.dynamics import TRUTH_NAMES
from agent.demo.mill import INDEX, LAB_TAGS, Mill
from agent.demo.products import Product, by_id
from agent.demo.tags import ALL_TAGS, BY_NAME, DAY, HOUR

PLAN_TAGS = ("FeedRateSetpoint", "SeparatorSpeedSetpoint", "LimestoneShareSetpoint",
             "GrindingAidSetpoint")  # fmt: skip
_BANDS = ((150.0, 210.0), (850.0, 1050.0), (10.0, 14.0), (300.0, 500.0))
_STEPS = (20.0, 50.0, 1.0, 0.0)
_GAPS_H = ((2.0, 4.0), (1.0, 3.0), (24.0, 24.0), (24.0, 24.0))
VIB_GUARD = 4.5  # mm/s; the operator backs the feed off below the 5 mm/s alarm
GUARD_COOLDOWN_S = 5 * 60.0
RESTART_AFTER_S = 30 * 60.0


Band = tuple[float, float]
LIMESTONE_MOVES = ("walk", "draw")


def _start(recipe: float, band: Band, step: float) -> float:
    """The plan's first level: the recipe when it is in the band (the default bands are centred
    on it), else the band's level nearest to it on the band's grid of steps from its low end."""
    lo, hi = band
    if lo <= recipe <= hi:
        return recipe
    return lo if recipe < lo else lo + step * ((hi - lo) // step)


def _check_band(name: str, band: Band, step: float, limits: tuple[float, float]) -> Band:
    """The band as floats; ValueError unless it holds a step inside the setpoint's clamp range."""
    lo, hi = float(band[0]), float(band[1])
    if not (limits[0] <= lo and lo + step <= hi <= limits[1]):
        raise ValueError(f"{name} band must satisfy {limits[0]:g} <= low, low + {step:g} <= "
                         f"high <= {limits[1]:g}, got ({lo:g}, {hi:g})")  # fmt: skip
    return lo, hi


def plan_bands(
    product_id: int = 2, separator_band: Band | None = None, limestone_band: Band | None = None
) -> tuple[Band, Band]:
    """The excitation's (separator rpm, limestone %) bands for a backfill of this product: the
    ones given (checked), else the product's recipe +-100 rpm / +-2 %-points."""
    product = by_id(product_id)
    sep = separator_band or (product.separator_rpm - 100.0, product.separator_rpm + 100.0)
    ls = limestone_band or (product.limestone_pct - 2.0, product.limestone_pct + 2.0)
    return (_check_band("separator", sep, _STEPS[1], BY_NAME[PLAN_TAGS[1]].hard),
            _check_band("limestone", ls, _STEPS[2], BY_NAME[PLAN_TAGS[2]].hard))  # fmt: skip


class _Plan:
    """Levels of the four excited setpoints and the time of each one's next move."""

    def __init__(self, mill: Mill, product: Product, separator_band: Band,
                 limestone_band: Band, limestone_moves: str) -> None:  # fmt: skip
        self.rng = mill.rng
        self.limestone_moves = limestone_moves
        self.bands = list(_BANDS)
        self.bands[1], self.bands[2] = separator_band, limestone_band
        self.levels = [180.0, _start(product.separator_rpm, separator_band, _STEPS[1]),
                       _start(product.limestone_pct, limestone_band, _STEPS[2]), 400.0]  # fmt: skip
        t = mill.time
        self.next_at = [
            t + HOUR * (self.rng.uniform(lo, hi) if lo < hi else self.rng.uniform(0.0, hi))
            for lo, hi in _GAPS_H
        ]

    def move(self, j: int, t: float) -> None:
        lo, hi = self.bands[j]
        if _STEPS[j] == 0.0:  # grinding aid: a fresh level in the band
            self.levels[j] = float(self.rng.uniform(lo, hi))
        elif j == 2 and self.limestone_moves == "draw":  # a fresh level, 0.1 %-point grid
            self.levels[j] = round(float(self.rng.uniform(lo, hi)), 1)
        else:
            step = _STEPS[j] if self.rng.random() < 0.5 else -_STEPS[j]
            x = self.levels[j]
            self.levels[j] = x + step if lo <= x + step <= hi else x - step
        gap_lo, gap_hi = _GAPS_H[j]
        self.next_at[j] = t + HOUR * float(self.rng.uniform(gap_lo, gap_hi))

    def write(self, mill: Mill) -> None:
        for name, x in zip(PLAN_TAGS, self.levels, strict=True):
            mill.write(name, x)


def backfill(
    days: float, *, dt: float = 10.0, seed: int = 0, excitation: bool = True,
    lab_time_scale: float = 1.0, product_id: int = 2, separator_band: Band | None = None,
    limestone_band: Band | None = None, limestone_moves: str = "walk",
) -> dict[str, NDArray[np.float64]]:  # fmt: skip
    """Run the mill for `days` at step dt and return one array per series, one row per step:
    "time" (sim unix s after each step), every tag's published value (bools as 0/1, NaN where
    Bad), "<lab tag>_source_time" for ProductFineness and the Lab* tags (to join lab results to
    their sampling windows), and every hidden truth of dynamics.TRUTH_NAMES (B, S28, S2, g, ...).
    The mill grinds product `product_id` (products.PRODUCTS) from its recipe on.
    separator_band / limestone_band (low, high): the excitation's band of that setpoint (rpm,
    %); None: the recipe +-100 rpm / +-2 %-points. The plan starts at the recipe, or at the
    band's edge nearest to it when the recipe is outside the band. limestone_moves: "walk"
    (+-1 %-point a day, reflected at the band's edges) or "draw" (a fresh level in the band
    each day: a wide band is covered all along, so a time-ordered validation split holds out
    the same range it trains on).
    """
    if not days > 0.0:
        raise ValueError(f"days must be > 0, got {days}")
    bands = plan_bands(product_id, separator_band, limestone_band)
    if limestone_moves not in LIMESTONE_MOVES:
        raise ValueError(f"limestone_moves must be one of {', '.join(LIMESTONE_MOVES)}, "
                         f"got {limestone_moves!r}")  # fmt: skip
    product = by_id(product_id)
    mill = Mill(seed, dt=dt, lab_time_scale=lab_time_scale, wd_timeout_s=max(15.0, 3.0 * dt),
                product=product.name)  # fmt: skip
    n = max(1, round(days * DAY / dt))
    plan = _Plan(mill, product, *bands, limestone_moves)
    t0 = mill.time
    val, src = mill.raw_published(), mill.raw_source_times()
    lab_idx = [INDEX[name] for name in LAB_TAGS]
    i_vib, i_run, i_active = INDEX["Vibration"], INDEX["Running"], INDEX["RemoteActive"]
    tags = np.empty((n, len(ALL_TAGS)), order="F")
    times = np.empty((n, len(lab_idx)), order="F")
    truths = np.empty((n, len(TRUTH_NAMES)), order="F")
    guard_until = trip_at = -np.inf
    rewrite = plan.levels[1:3] != [product.separator_rpm, product.limestone_pct]  # out of band
    for k in range(n):
        t = mill.time
        mill.write("Heartbeat", k + 1)
        if excitation and t >= min(plan.next_at):
            for j in range(4):
                if t >= plan.next_at[j]:
                    plan.move(j, t)
            rewrite = True
        if rewrite and val[i_active]:
            plan.write(mill)
            rewrite = False
        mill.step()
        tags[k] = val
        times[k] = [src[i] for i in lab_idx]
        truths[k] = mill.truth_row()
        if not val[i_run]:
            if trip_at == -np.inf:
                trip_at = mill.time
            elif mill.time - trip_at >= RESTART_AFTER_S:
                plan.levels[0] = max(_BANDS[0][0], plan.levels[0] - 20.0)
                mill.operator("reset_trip")
                trip_at = -np.inf
                rewrite = True
            continue
        vib = val[i_vib]
        if isinstance(vib, float) and vib > VIB_GUARD and mill.time >= guard_until:
            plan.levels[0] = max(120.0, plan.levels[0] - 10.0)
            guard_until = mill.time + GUARD_COOLDOWN_S
            rewrite = True
    out: dict[str, NDArray[np.float64]] = {"time": t0 + dt * np.arange(1, n + 1, dtype=np.float64)}
    for j, spec in enumerate(ALL_TAGS):
        out[spec.name] = tags[:, j]
    for j, i in enumerate(lab_idx):
        out[f"{ALL_TAGS[i].name}_source_time"] = times[:, j]
    for j, name in enumerate(TRUTH_NAMES):
        out[name] = truths[:, j]
    return out
