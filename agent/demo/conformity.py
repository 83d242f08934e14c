"""The demo's honest comparison: the agent's run against the operator baseline (pure).

Owns: `composites` (hourly composites of the hidden true 28-day strength of what was ground:
the feed-weighted mean over each plant hour since the story's start, a last part-hour under
half an hour folded into the hour before), `side` (one run's figures as
agent.demo.evaluate.figures.ProductFigures: composites at or above the product's lower limit
(share, minimum, mean, standard deviation); feed-weighted clinker factor, limestone share and
kWh/t of the drives), `Comparison` and `compare` (the verdict of
agent.demo.evaluate.figures.equal_conformity, the one rule `edge-agent evaluate` applies).
Must not: do I/O or read a clock; claim a saving the rule does not grant.
Invariants: over a few plant hours no 28-day result is entered, so conformity is judged on
the hidden truth, and says so (`BASIS`); CO2/t = 850 kg/t clinker x clinker factor + 0.4
kg/kWh x kWh/t (plant-model 4.5), the same as the evaluation's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from agent.demo.evaluate.figures import ProductFigures, Saving, equal_conformity
from agent.demo.stage import TruthRow

__all__ = ["BASIS", "Comparison", "compare", "composites", "side"]

HOUR_S = 3600.0
BASIS = ("the hidden true 28-day strength of what was ground, hourly composites "
         "(no 28-day result is entered within the story)")  # fmt: skip


def composites(rows: Sequence[TruthRow]) -> list[float]:
    """The feed-weighted mean true S28 of each plant hour of `rows`."""
    hours: dict[int, list[TruthRow]] = {}
    for r in rows:
        hours.setdefault(int(r.plant_s // HOUR_S), []).append(r)
    keys = sorted(hours)
    if len(keys) > 1:
        last = hours[keys[-1]]
        if last[-1].plant_s - keys[-1] * HOUR_S < HOUR_S / 2:
            hours[keys[-2]] += hours.pop(keys[-1])
    out = []
    for part in (hours[k] for k in sorted(hours)):
        feed = math.fsum(r.feed for r in part)
        out.append(math.fsum(r.s28 * r.feed for r in part) / feed if feed > 0 else
                   math.fsum(r.s28 for r in part) / len(part))  # fmt: skip
    return out


def limestone(rows: Sequence[TruthRow]) -> float:
    """Feed-weighted true limestone share, %."""
    feed = math.fsum(r.feed for r in rows)
    return math.fsum(r.limestone * r.feed for r in rows) / feed if feed > 0 else math.nan


def side(product: str, lower_mpa: float, rows: Sequence[TruthRow], dt_s: float) -> ProductFigures:
    """One run's figures from its truth rows (about `dt_s` plant seconds apart)."""
    values = composites(rows)
    n = len(values)
    mean = math.fsum(values) / n if n else math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    mine = [r for r in rows if r.feed > 0.0]
    feed = math.fsum(r.feed for r in mine)
    return ProductFigures(
        product=product, lower_mpa=lower_mpa, n=n,
        share_ok=sum(v >= lower_mpa for v in values) / n if n else math.nan,
        minimum=min(values, default=math.nan), mean=mean, sd=sd,
        clinker_factor=math.fsum(r.feed * r.cf for r in mine) / feed if feed else math.nan,
        kwh_t=math.fsum(r.drive_kw for r in mine) / feed if feed else math.nan,
        tonnes=feed * dt_s / HOUR_S,
    )  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """The agent's run and the baseline's, and whether a saving counts."""

    agent: ProductFigures
    base: ProductFigures
    agent_limestone: float
    base_limestone: float
    saving: Saving


def compare(product: str, lower_mpa: float, agent: Sequence[TruthRow],
            base: Sequence[TruthRow]) -> Comparison:  # fmt: skip
    """Both runs' figures and the equal-conformity verdict."""
    dt = (agent[-1].plant_s - agent[0].plant_s) / (len(agent) - 1) if len(agent) > 1 else 0.0
    a, b = side(product, lower_mpa, agent, dt), side(product, lower_mpa, base, dt)
    return Comparison(a, b, limestone(agent), limestone(base), equal_conformity(b, a))
