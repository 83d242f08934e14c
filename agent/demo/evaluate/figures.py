"""The figures of an evaluation, per product and overall, and the rule that decides whether a
saving counts.

Owns: `ProductFigures` (28-day results: count, share at or above the lower limit, minimum,
mean, standard deviation; production-weighted mean clinker factor, kWh/t of the drives, CO2/t),
`product_figures` (from a run's recorded truth and its 28-day results), `overall_figures` (every
product together: the share over all results, each against its product's limit, the worst
margin to the limit as the minimum, clinker factor and kWh/t weighted by the same tonnes per
product in both runs), `Saving` and `equal_conformity` (plant-model 4.5 for a baseline that
may itself fall short: the agent's share of 28-day results at or above the lower limit is at
least the baseline's, AND none of the agent's results is below the limit or its minimum is at
least the baseline's minimum), and `goal` (issue 15: that, and a clinker factor at least 2
%-points below the baseline's).
Must not: do I/O, read a clock, or know how the runs were made.
Invariants: CO2/t = 850 kg/t clinker x clinker factor + 0.4 kg/kWh x kWh/t; a product without
28-day results on either side has no saving; every refusal says why in one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.demo.lab_record import LabRecord

__all__ = ["CO2_PER_KWH", "CO2_PER_T_CLINKER", "GOAL_CF_POINTS", "OVERALL", "ProductFigures", "Row",
           "Saving", "equal_conformity", "goal", "overall_figures", "product_figures"]  # fmt: skip

CO2_PER_T_CLINKER = 850.0
CO2_PER_KWH = 0.4
GOAL_CF_POINTS = 2.0
OVERALL = "all products"
Row = tuple[float, str, float, float, float, float, float, float]


@dataclass(frozen=True)
class ProductFigures:
    """One product in one run."""

    product: str
    lower_mpa: float
    n: int
    share_ok: float
    minimum: float
    mean: float
    sd: float
    clinker_factor: float
    kwh_t: float
    tonnes: float
    overall: bool = False
    """Every product together: `minimum` is the worst margin to its product's lower limit
    (MPa, `lower_mpa` 0), mean and sd are not figures of one product (NaN)."""

    @property
    def worst(self) -> str:
        """The minimum in words."""
        if self.overall:
            return f"the worst result {self.minimum:+.1f} MPa from its product's lower limit"
        return f"the minimum {self.minimum:.1f} MPa"

    @property
    def co2_t(self) -> float:
        return CO2_PER_T_CLINKER * self.clinker_factor + CO2_PER_KWH * self.kwh_t


def product_figures(product: str, lower_mpa: float, rows: Sequence[Row],
                    s28: Sequence[LabRecord], dt_s: float) -> ProductFigures:  # fmt: skip
    """Figures of `product` from recorded rows (time, product, feed t/h, clinker factor,
    drive kW, ...) `dt_s` apart and its 28-day results."""
    values = [r.value for r in s28 if r.product == product]
    mine = [r for r in rows if r[1] == product and r[2] > 0.0]
    feed = math.fsum(r[2] for r in mine)
    n = len(values)
    mean = math.fsum(values) / n if n else math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return ProductFigures(
        product=product, lower_mpa=lower_mpa, n=n,
        share_ok=sum(v >= lower_mpa for v in values) / n if n else math.nan,
        minimum=min(values) if values else math.nan, mean=mean, sd=sd,
        clinker_factor=math.fsum(r[2] * r[3] for r in mine) / feed if feed else math.nan,
        kwh_t=math.fsum(r[4] for r in mine) / feed if feed else math.nan,
        tonnes=feed * dt_s / 3600.0,
    )  # fmt: skip


@dataclass(frozen=True)
class Saving:
    """The verdict for one product: the saving when it counts, else why not."""

    counts: bool
    why: str
    co2_kg_t: float = math.nan
    co2_pct: float = math.nan
    cf_points: float = math.nan


def overall_figures(per_product: Sequence[ProductFigures], s28: Sequence[LabRecord],
                    lowers: Mapping[str, float],
                    tonnes: Mapping[str, float] | None = None) -> ProductFigures:  # fmt: skip
    """Every product together: the share of all 28-day results at or above their product's
    lower limit (`lowers`, by product name; results of other products are left out), the worst
    margin to the limit, and clinker factor and kWh/t over the products weighted by `tonnes`
    per product (None: each product's own tonnes; pass the baseline's for both runs, so that
    both are weighted by the same product mix)."""
    margins = [r.value - lowers[r.product] for r in s28 if r.product in lowers]
    weights = {f.product: (f.tonnes if tonnes is None else tonnes.get(f.product, 0.0))
               for f in per_product if not math.isnan(f.clinker_factor)}  # fmt: skip
    total = math.fsum(weights.values())
    mine = [f for f in per_product if f.product in weights]

    def weighted(attr: str) -> float:
        if not total:
            return math.nan
        return math.fsum(weights[f.product] * getattr(f, attr) for f in mine) / total

    n = len(margins)
    return ProductFigures(
        product=OVERALL, lower_mpa=0.0, n=n,
        share_ok=sum(m >= 0.0 for m in margins) / n if n else math.nan,
        minimum=min(margins) if margins else math.nan, mean=math.nan, sd=math.nan,
        clinker_factor=weighted("clinker_factor"), kwh_t=weighted("kwh_t"),
        tonnes=math.fsum(f.tonnes for f in per_product), overall=True,
    )  # fmt: skip


def equal_conformity(base: ProductFigures, agent: ProductFigures) -> Saving:
    """The saving of `agent` against `base` if conformity is equal (plant-model 4.5): the
    agent's share at or above the lower limit at least the baseline's, and the agent has no
    result below the limit or its minimum is at least the baseline's (a baseline that itself
    falls below the limit cannot ask none of the agent, but the agent's worst case must not be
    worse)."""
    if base.n == 0 or agent.n == 0:
        return Saving(False, f"no saving claimed: no 28-day results (baseline {base.n}, "
                      f"agent {agent.n})")  # fmt: skip
    limit = "their product's lower limit" if agent.overall else f"{agent.lower_mpa:g} MPa"
    if agent.share_ok < base.share_ok:
        return Saving(False, f"no saving claimed: conformity is worse with the agent "
                      f"({agent.share_ok:.1%} of 28-day results >= {limit} "
                      f"against the baseline's {base.share_ok:.1%})")  # fmt: skip
    if agent.minimum < agent.lower_mpa and agent.minimum < base.minimum:
        return Saving(False, f"no saving claimed: a 28-day result with the agent is below the "
                      f"lower limit and below the baseline's worst ({agent.worst} against "
                      f"{base.worst.removeprefix('the ')})")  # fmt: skip
    saved = base.co2_t - agent.co2_t
    points = (base.clinker_factor - agent.clinker_factor) * 100.0
    word = "saved" if saved >= 0 else "more emitted"
    return Saving(True, f"at equal conformity: {abs(saved):.1f} kg CO2/t {word} "
                  f"({saved / base.co2_t + 0.0:+.2%} of the baseline's), clinker factor "
                  f"{0.0 - points:+.2f} %-points", saved, saved / base.co2_t, points)  # fmt: skip


def goal(saving: Saving) -> tuple[bool, str]:
    """Issue 15's goal for the default scenario: conformity at least the baseline's and a
    clinker factor at least GOAL_CF_POINTS %-points below it."""
    if not saving.counts:
        return False, f"not met: {saving.why}"
    if saving.cf_points < GOAL_CF_POINTS - 1e-9:  # not a rounding error of the difference
        where = "below" if saving.cf_points >= 0 else "above"
        return False, (f"not met: the clinker factor is {abs(saving.cf_points):.2f} %-points "
                       f"{where} the baseline's, the goal is {GOAL_CF_POINTS:g} below")  # fmt: skip
    return True, (f"met: conformity at least the baseline's and the clinker factor "
                  f"{saving.cf_points:.2f} %-points below it")  # fmt: skip
