"""The plant's recipe sheet of one product (plant-model 4.5): what 28-day and 2-day strength it
expects at a limestone share and separator speed, and the fixed recipe aimed at the product's
target mean.

Owns: `Recipe` (the sheet, the PLC's recipe, the product's 28-day lower limit and target mean,
the operators' lever window) and `recipe_point` (limestone share and separator speed chosen so
the expected 28-day mean is the product's target mean, which the product table sets at about
2.5 standard deviations of the plant's 28-day results above the lower limit; limestone first,
the CO2-cheap lever, then the separator, each inside the window).
Must not: read the plant's truth or touch a mill.
Invariants: the sheet is linear in limestone and separator speed around the PLC's recipe;
recipe_point never leaves the window.
The recipe sheet (est.): the plant's linear strength model of each product from its own
history (agent.demo.evaluate.scenario.recipes builds it from the simulator's product table):
the 28-day strength potential S of the product at its nominal clinker factor CF, the reference
fineness (separator 950 rpm) and the clinker's long-run reactivity; -S/(100 CF) MPa of 28-day
strength per %-point of limestone (x1.2 for 2-day, whose potential is S/2), +0.0156 MPa per rpm
of separator from the reference (0.013 for 2-day). Checked against a noise-free mill at every
product's recipe and at the operators' recipe point (tests/sim/test_evaluate_operator.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REFERENCE_RPM", "S2_PER_RPM", "S28_PER_RPM", "Recipe", "clamp", "recipe_point"]

S28_PER_RPM, S2_PER_RPM = 0.012 * 1.3, 0.010 * 1.3
REFERENCE_RPM = 950.0
"""The separator speed of the recipe sheet's reference fineness (Blaine 3800 cm2/g)."""


@dataclass(frozen=True)
class Recipe:
    """One product as the plant's quality department sees it."""

    product_id: int
    name: str
    s28_lower_mpa: float
    s28_target_mean_mpa: float
    s28_potential_mpa: float
    """The plant's estimate of the product's 28-day strength at its nominal clinker factor,
    the reference fineness (REFERENCE_RPM) and the clinker's long-run reactivity."""
    limestone_reference_pct: float
    """The product's nominal limestone share (the PLC's recipe)."""
    separator_reference_rpm: float
    """The PLC recipe's separator speed."""
    clinker_factor_reference: float
    """The clinker factor at the nominal limestone share."""
    limestone_window: tuple[float, float]
    separator_window: tuple[float, float]

    @property
    def s28_per_pct(self) -> float:
        return -self.s28_potential_mpa / (100.0 * self.clinker_factor_reference)

    @property
    def s2_potential_mpa(self) -> float:
        return self.s28_potential_mpa / 2.0

    @property
    def s28_at_recipe_mpa(self) -> float:
        """Expected 28-day mean at the PLC's recipe (nominal limestone, recipe separator)."""
        return self.expected_s28(self.limestone_reference_pct, self.separator_reference_rpm)

    def expected_s28(self, limestone: float, separator: float) -> float:
        return (self.s28_potential_mpa
                + self.s28_per_pct * (limestone - self.limestone_reference_pct)
                + S28_PER_RPM * (separator - REFERENCE_RPM))  # fmt: skip

    def expected_s2(self, limestone: float, separator: float) -> float:
        per_pct = -1.2 * self.s2_potential_mpa / (100.0 * self.clinker_factor_reference)
        return (self.s2_potential_mpa
                + per_pct * (limestone - self.limestone_reference_pct)
                + S2_PER_RPM * (separator - REFERENCE_RPM))  # fmt: skip


def clamp(x: float, window: tuple[float, float]) -> float:
    return min(max(x, window[0]), window[1])


def recipe_point(recipe: Recipe) -> tuple[float, float]:
    """(limestone %, separator rpm) whose expected 28-day strength is the target mean, or as
    near as the window allows: limestone moves first, then the separator."""
    gap = recipe.s28_target_mean_mpa - recipe.s28_at_recipe_mpa
    ls = clamp(recipe.limestone_reference_pct + gap / recipe.s28_per_pct,
                recipe.limestone_window)  # fmt: skip
    n = recipe.separator_reference_rpm
    left = recipe.s28_target_mean_mpa - recipe.expected_s28(ls, n)
    n = clamp(n + left / S28_PER_RPM, recipe.separator_window)
    return round(ls, 2), round(n, 1)
