"""The cement types the simulated mill grinds (plant-model.md 4.1): the product table, each
product's recipe, and which product a sample's material is while a product change flows through.

Owns: `Product` (id, name, limestone range and nominal share, SO3 target and the gypsum share it
takes, 28-day and 2-day limits, target mean, silos, the recipe's separator speed and the
strength base that shifts the quality equations of dynamics.py), `PRODUCTS`, `SILOS`, lookups
that refuse unknown ids and names with a clear message, and `ProductLine`: the product being
ground, its silo, and the routing of material to products (a product change reaches the lab
only `transition_s` after it: the mill holds ~15 min of material).
Must not: step the process, know about tags or servers, draw random numbers or read a clock.
Invariants: product 2 is today's only product with today's constants (nominal limestone 12 %,
gypsum 5 %, clinker factor 0.83, separator 950 rpm, strength base 0), so a mill that never
changes product behaves exactly as before products existed; `ProductLine.routed(t)` is the
product of the latest change whose transition ended by t (change time + transition_s <= t),
the initial product before any; changes are recorded in time order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["DEFAULT_PRODUCT_ID", "PRODUCTS", "SILOS", "TRANSITION_S", "Product", "ProductLine",
           "by_id", "by_name", "check_silo"]  # fmt: skip

TRANSITION_S = 900.0
"""Default time from a product change until the lab's samples are the new product (15 min)."""


@dataclass(frozen=True)
class Product:
    """One cement type and its recipe. Shares in % of the cement, strengths in MPa.

    gypsum_pct is the gypsum share the SO3 target takes (5 % for 2.8 % SO3, in proportion);
    strength_base_mpa is added to the clinker's strength potential in the quality equations so
    that the true 28-day strength at the recipe sits near the target mean.
    """

    id: int
    name: str
    strength_class: str
    limestone_min_pct: float
    limestone_max_pct: float
    limestone_pct: float
    so3_pct: float
    gypsum_pct: float
    s28_lower_mpa: float
    s28_upper_mpa: float
    s2_lower_mpa: float
    s28_target_mean_mpa: float
    silos: tuple[int, ...]
    separator_rpm: float
    strength_base_mpa: float

    @property
    def clinker_factor(self) -> float:
        """The clinker share at the recipe, as a fraction: (100 - limestone - gypsum) / 100."""
        return (100.0 - self.limestone_pct - self.gypsum_pct) / 100.0

    @property
    def recipe(self) -> dict[str, float]:
        """The setpoints the PLC loads at a product change (tag name -> value)."""
        return {"SeparatorSpeedSetpoint": self.separator_rpm,
                "LimestoneShareSetpoint": self.limestone_pct}  # fmt: skip


PRODUCTS: dict[int, Product] = {
    p.id: p
    for p in (
        Product(1, "CEM I 42.5 R", "42.5 R", 0.0, 5.0, 3.0, 3.0, 5.4, 42.5, 62.5, 20.0, 51.0,
                (1,), 980.0, 0.0),
        Product(2, "CEM II/A-LL 42.5 R", "42.5 R", 6.0, 20.0, 12.0, 2.8, 5.0, 42.5, 62.5, 20.0,
                48.0, (2, 3), 950.0, 0.0),
        Product(3, "CEM II/B-LL 32.5 R", "32.5 R", 21.0, 35.0, 27.0, 2.6, 4.6, 32.5, 52.5, 10.0,
                39.0, (4,), 920.0, -11.0),
    )
}  # fmt: skip
"""The simulator's products by PLC ProductId (the spec's table of issue 15)."""
DEFAULT_PRODUCT_ID = 2
SILOS: tuple[int, ...] = tuple(sorted({s for p in PRODUCTS.values() for s in p.silos}))
"""Every silo the mill can send cement to (a product may be sent to another product's silo:
the agent must notice that, so the simulator allows it)."""


def _known() -> str:
    return ", ".join(f"{p.id} ({p.name})" for p in PRODUCTS.values())


def by_id(product_id: int) -> Product:
    """The product with this PLC ProductId; ValueError naming the known ids otherwise."""
    if isinstance(product_id, bool) or not isinstance(product_id, int):
        raise ValueError(f"product id must be an integer, got {product_id!r}")
    try:
        return PRODUCTS[product_id]
    except KeyError:
        raise ValueError(f"unknown product id {product_id}; known: {_known()}") from None


def by_name(name: str) -> Product:
    """The product of this name; ValueError naming the known products otherwise."""
    for p in PRODUCTS.values():
        if p.name == name:
            return p
    raise ValueError(f"unknown product {name!r}; known: {_known()}")


def check_silo(silo_id: int) -> int:
    """silo_id if the plant has that silo; ValueError naming the silos otherwise."""
    if isinstance(silo_id, bool) or not isinstance(silo_id, int) or silo_id not in SILOS:
        raise ValueError(f"unknown silo id {silo_id!r}; the mill's silos are "
                         f"{', '.join(map(str, SILOS))}")  # fmt: skip
    return silo_id


class ProductLine:
    """The product being ground, its silo, and the product each sample's material is."""

    def __init__(self, product: Product, *, start_time: float, transition_s: float) -> None:
        if not transition_s >= 0.0:
            raise ValueError(f"transition_s must be >= 0, got {transition_s}")
        self.transition_s = transition_s
        self.product = product
        self.silo_id = product.silos[0]
        self.changed_at = start_time
        self._routes: list[float] = []  # time each change reaches the lab, ascending
        self._routed: list[Product] = []
        self._initial = product

    def change(self, t: float, product_id: int, silo_id: int) -> Product:
        """A product change at time t (both ids validated first); returns the new product."""
        product = by_id(product_id)
        check_silo(silo_id)
        self.product, self.silo_id, self.changed_at = product, silo_id, t
        self._routes.append(t + self.transition_s)
        self._routed.append(product)
        return product

    def routed(self, t: float) -> Product:
        """The product whose material a sample taken at time t holds."""
        i = bisect.bisect_right(self._routes, t + 1e-6)
        return self._routed[i - 1] if i else self._initial

    def routed_name(self, t: float) -> str:
        return self.routed(t).name
