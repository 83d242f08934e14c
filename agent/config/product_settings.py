"""The schema of the cement types a mill grinds: `[product_selection]` and `[[products]]`.

Owns: the pydantic models of `[product_selection]` (the PLC tags that say which product the mill
grinds and into which silo, and how long the mill holds the old material after a change),
`[[products]]` (per product: its PLC id, strength class and limits, target mean, limestone
range, silos, model and objective overrides) and `[[products.loops]]` (per product and loop:
envelope, baseline deviation, mode, model, objective overrides); per-field validation
(plant-model 4.1; docs/operations.md "Cement types").
Must not: read files, or relate sections (the loops and tags a product names exist, the
overridden loop still validates: agent.config.checks_products does; the loop a product makes
of a `[[loops]]` entry: agent.config.products).
Invariants: unknown keys are errors; an override left out keeps the loop's own value; the
objective overrides are plain values checked against the loop's objective kind later.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.config.fields import Name, PositiveSeconds, Section

__all__ = ["Product", "ProductLoop", "ProductSelection"]

ProductName = Annotated[str, Field(min_length=1, max_length=128)]
Mpa = Annotated[float, Field(gt=0, lt=200)]
Share = Annotated[float, Field(ge=0, le=100)]
Override = dict[str, float | str | bool]


class ProductSelection(Section):
    """Where the PLC says which product is ground (an integer id) and into which silo."""

    product_tag: str
    silo_tag: str | None = None
    transition_s: Annotated[float, Field(ge=0)] = 900.0
    """How long after a change the mill still delivers the old product's material: no
    write, the loops hold, predictions are not recorded (plant-model 4.1: 10-20 min)."""
    max_age_s: PositiveSeconds | None = None
    """A product tag older than this blocks the loops (None: its age is not judged; a PLC
    publishes the id when it changes, so its source time is the time of the change)."""


class ProductLoop(Section):
    """One loop's settings while the product is ground (left out: the loop's own)."""

    loop: Name
    mode: Literal["off", "shadow", "advisory", "closed_loop"] | None = None
    model: str | None = None
    model_version: str | None = None
    envelope_min: float | None = None
    envelope_max: float | None = None
    max_deviation_from_baseline: Annotated[float, Field(gt=0)] | None = None
    objective: Override = {}


class Product(Section):
    """A cement type (EN 197-1 class) as the plant grinds it."""

    id: Annotated[int, Field(ge=0, le=2**31 - 1)]
    name: ProductName
    strength_class: str = ""
    s28_lower_mpa: Mpa | None = None
    s28_upper_mpa: Mpa | None = None
    s2_lower_mpa: Mpa | None = None
    s28_target_mean_mpa: Mpa | None = None
    limestone_min_pct: Share | None = None
    limestone_max_pct: Share | None = None
    silos: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = []
    """The silos this product may go to (empty: any); another silo blocks the loops."""
    model: str | None = None
    model_version: str | None = None
    objective: Override = {}
    loops: list[ProductLoop] = []

    @model_validator(mode="after")
    def _limits_in_order(self) -> Product:
        low, high = self.s28_lower_mpa, self.s28_upper_mpa
        if low is not None and high is not None and low >= high:
            raise ValueError(f"s28_lower_mpa below s28_upper_mpa; found {low:g} and {high:g}")
        mean = self.s28_target_mean_mpa
        if mean is not None and low is not None and mean <= low:
            raise ValueError(f"s28_target_mean_mpa above s28_lower_mpa; found {mean:g} and {low:g}")
        ls = (self.limestone_min_pct, self.limestone_max_pct)
        if ls[0] is not None and ls[1] is not None and ls[0] > ls[1]:
            raise ValueError(
                f"limestone_min_pct at most limestone_max_pct; found {ls[0]:g} and {ls[1]:g}"
            )
        return self
