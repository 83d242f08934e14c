"""The cement mill's quality and CO2 objective (plant-model 2.2-2.3), the first objective.

Owns: everything the control core must not know about a cement finish mill. The model
outputs it scores with (blaine, residue45, s28, spec_energy) and the model input it reads
besides the grid (feed_rate, for the capacity constraint); the derived features it provides:
`grindability` (plant-model 2.2: (MillPower/FeedRate) / (18 (B/3800)^1.4) over the estimator
window, from the loop inputs mill_power, feed_rate and product_fineness; without them it is
imputed) and `blaine_bias` (EWMA of lab_blaine - the analyser's product_fineness over the
hour the lab result describes, updated once per new lab result; imputed until the first
one is compared); the constraints (predicted s28 - risk_z x sigma at least
the target, sigma the package's validation RMSE of s28; the Blaine window; residue on 45 um;
capacity = mill power limit / predicted specific energy above the feed by a margin); the
cost (CO2 per tonne of cement: clinker factor x clinker CO2 + kWh/t x electricity CO2); the
fallback (largest strength margin: quality first); and the advice's effect (predicted s28).
Must not: do I/O, read a clock or log; pick the candidate (agent.control.optimizer does, for
any objective) or limit the move (agent.control.guard does).
Invariants: `score` is a pure function of its rows; an instance belongs to one loop and
holds only that loop's Blaine-bias estimate, changed by `observe` alone.

The lab and the analyser (plant-model 1.4): a LabBlaine result is the composite of an hour,
its source time the end of that hour, and it arrives about 45 min after the hour closes
(later at a plant whose LIMS enters it late). It is compared with the mean of the analyser's
product_fineness samples whose source time lies in that hour: from the previous lab result's
source time (the composite's start; at most LAB_WINDOW_S before) to this one's. The loop
keeps LAB_WINDOW_S + LAB_DELAY_MAX_S of product_fineness (`history_s`) for it: a result
arriving later than that is not compared (its hour is no longer kept). The analyser's own
dead time (3 min in the simulator) is not compensated. A missing lab result leaves the bias
as it was; before the first compared result the bias is imputed (the model's training mean
of it, recorded "imputed"), not a measured-looking 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agent.config.settings import CementMillObjective, ObjectiveSettings
from agent.objectives.base import Derived, Mean, Rows, Scores

__all__ = ["KIND", "BlaineBias", "CementMill", "grindability"]

KIND = "cement_mill"
BIAS_ALPHA = 0.2
LAB_WINDOW_S = 3600.0
"""The hour a lab Blaine composite describes (plant-model 1.4), ending at its source time."""
LAB_DELAY_MAX_S = 2 * 3600.0
"""How long after its hour closes a lab result is still compared with the analyser (the
simulator publishes after 45 min)."""

GRINDABILITY, BLAINE_BIAS = "grindability", "blaine_bias"
FEED, POWER, FINENESS, LAB_BLAINE = "feed_rate", "mill_power", "product_fineness", "lab_blaine"
LIMESTONE, GYPSUM = "limestone_share", "gypsum_share"
BLAINE, RESIDUE, S28, ENERGY = "blaine", "residue45", "s28", "spec_energy"


def grindability(power_kw: float, feed_tph: float, blaine_cm2g: float) -> float:
    """The grindability index estimate of plant-model 2.2 (1.0 = the design clinker)."""
    specific = power_kw / max(feed_tph, 1.0)
    return float(specific / (18.0 * (max(blaine_cm2g, 1000.0) / 3800.0) ** 1.4))


@dataclass
class BlaineBias:
    """EWMA of (lab Blaine - analyser Blaine), updated once for each new lab result."""

    value: float = 0.0
    last_lab_time: float | None = None
    samples: int = 0

    def update(self, lab_time: float, lab_blaine: float, analyser_blaine: float) -> bool:
        if self.last_lab_time is not None and lab_time <= self.last_lab_time:
            return False
        if not (math.isfinite(lab_blaine) and math.isfinite(analyser_blaine)):
            return False
        error = lab_blaine - analyser_blaine
        self.value = (
            error if self.samples == 0 else BIAS_ALPHA * error + (1 - BIAS_ALPHA) * self.value
        )
        self.last_lab_time, self.samples = lab_time, self.samples + 1
        return True


class CementMill:
    """The objective of one loop on a cement finish mill (see the module docstring)."""

    kind = KIND
    inputs: tuple[str, ...] = (FEED,)
    outputs: tuple[str, ...] = (BLAINE, RESIDUE, S28, ENERGY)
    derived: Mapping[str, tuple[str, ...]] = {
        GRINDABILITY: (POWER, FEED, FINENESS),
        BLAINE_BIAS: (LAB_BLAINE, FINENESS),
    }
    observes = frozenset({LAB_BLAINE})
    history_s: Mapping[str, float] = {FINENESS: LAB_WINDOW_S + LAB_DELAY_MAX_S}
    effect = S28

    def __init__(self, settings: CementMillObjective) -> None:
        self.settings = settings
        self.bias = BlaineBias()
        self.lab_time: float | None = None  # the source time of the newest lab result seen

    def retarget(self, settings: ObjectiveSettings) -> None:
        if not isinstance(settings, CementMillObjective):
            raise TypeError(f"cement_mill needs CementMillObjective settings, not {settings!r}")
        self.settings = settings

    def observe(self, feature: str, time: float, value: float, mean: Mean) -> None:
        if feature != LAB_BLAINE or (self.lab_time is not None and time <= self.lab_time):
            return  # another feature, or a lab result seen before (delivered again)
        start = time - LAB_WINDOW_S
        if self.lab_time is not None:
            start = max(start, self.lab_time)  # the composite began where the last one ended
        self.lab_time = time
        fine = mean(FINENESS, start, time)
        if fine is not None:
            self.bias.update(time, value, fine)

    def derive(self, name: str, means: Mapping[str, float | None]) -> Derived:
        if name == GRINDABILITY:
            p, f, b = (means.get(k) for k in self.derived[GRINDABILITY])
            if p is None or f is None or b is None:
                return Derived(None, "no estimator data")
            return Derived(grindability(p, f, b))
        if name == BLAINE_BIAS:
            samples = self.bias.samples
            if not samples:
                return Derived(None, "no lab result yet")
            return Derived(self.bias.value, f"{samples} lab results")
        raise KeyError(f"the cement mill objective derives no feature {name!r}")

    def score(self, rows: Rows) -> Scores:
        o, y, out = self.settings, rows.y, rows.outputs
        blaine, residue = y[:, out[BLAINE]], y[:, out[RESIDUE]]
        s28, energy = y[:, out[S28]], y[:, out[ENERGY]]
        sigma = rows.rmse.get(S28, 0.0)
        feed = float(rows.now[rows.columns[FEED]])
        with np.errstate(divide="ignore", invalid="ignore"):
            capacity = np.where(energy > 0, o.mill_power_limit_kw / energy, 0.0)
        margin = s28 - o.risk_z * sigma - o.s28_target_mpa
        share = np.zeros(len(y))
        for name in (LIMESTONE, GYPSUM):
            if (col := rows.columns.get(name)) is not None:
                share += rows.grid[:, col]
        co2 = (100.0 - share) / 100.0 * o.clinker_co2_kg_per_t + (
            energy * o.electricity_co2_kg_per_kwh
        )
        return Scores(
            cost=co2,
            usable=energy > 0,
            constraints={
                "strength": margin >= 0,
                "blaine_min": blaine >= o.blaine_min_cm2g,
                "blaine_max": blaine <= o.blaine_max_cm2g,
                "residue": residue <= o.residue45_max_pct,
                "capacity": capacity >= o.capacity_margin * feed,
            },
            margin=margin,
            fallback="strength margin (quality first)",
            metrics={S28: s28, BLAINE: blaine, RESIDUE: residue, ENERGY: energy,
                     "capacity": capacity, "co2_per_t": co2, "strength_margin": margin},
            headline=("co2_per_t", S28),
        )  # fmt: skip
