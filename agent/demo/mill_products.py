"""Product changes of the simulated mill (plant-model.md 4.1): what a change does to the PLC, the
process and the published ProductId/SiloId tags, kept out of mill.py.

Owns: the mill's `products.ProductLine` (the product being ground, its silo, the routing of
material to the lab's samples), starting the mill on a product's recipe, and applying a
product change: the PLC loads the recipe (local and remote separator and limestone setpoints),
the process takes the product's quality reference (nominal limestone, clinker factor, strength
base) and gypsum share, and ProductId/SiloId are published with the change's time.
Must not: step the mill, draw random numbers, or touch any tag but ProductId and SiloId (the
mill republishes the setpoints the PLC loaded through its own tracking; at the start on
another product, the fast tags' initial values are that recipe's steady state).
Invariants: a mill that starts on the default product (2) and never changes is not touched at
all (no call reaches the process or the PLC), so it computes bit for bit as before products;
both ids are validated before anything changes (ValueError: nothing happened).
"""

from __future__ import annotations

from agent.demo.dynamics import Process
from agent.demo.faults import Value
from agent.demo.plc import Plc
from agent.demo.products import DEFAULT_PRODUCT_ID, Product, ProductLine, by_name
from agent.demo.published import FAST_TAGS, INDEX

__all__ = ["MillProducts"]

_I_PRODUCT, _I_SILO = INDEX["ProductId"], INDEX["SiloId"]
SELECTED_BEFORE_S = 86400.0
"""How long before the sim's start its first product was selected (the source time of
ProductId/SiloId at the start): the mill is already grinding it, an agent starting with the
simulator sees no product change (a PLC's product tag keeps the time of its last change)."""


class MillProducts:
    """The product side of one Mill; the mill passes its process, PLC and published state."""

    def __init__(
        self, name: str, *, start_time: float, transition_s: float, proc: Process, plc: Plc,
    ) -> None:  # fmt: skip
        self.line = ProductLine(by_name(name), start_time=start_time, transition_s=transition_s)
        self._proc, self._plc = proc, plc

    @property
    def product(self) -> Product:
        """The product being ground now (its recipe is loaded; the lab may still see the old)."""
        return self.line.product

    @property
    def silo_id(self) -> int:
        return self.line.silo_id

    def routed(self, sample_time: float) -> Product:
        """The product whose material a sample taken at sample_time holds."""
        return self.line.routed(sample_time)

    def start(self, val: list[Value], tim: list[float]) -> None:
        """Start the mill at the steady state of its initial product's recipe."""
        product = self.line.product
        val[_I_PRODUCT], val[_I_SILO] = product.id, self.line.silo_id
        tim[_I_PRODUCT] = tim[_I_SILO] = self.line.changed_at - SELECTED_BEFORE_S
        if product.id == DEFAULT_PRODUCT_ID:
            return
        plc = self._plc
        plc.load_recipe(product.recipe)
        plc.eff[:] = plc.remote
        self._set_process(product)
        self._proc.settle(plc.eff)
        for name, x in zip(FAST_TAGS, (*self._proc.measured(), *plc.eff[:2]), strict=True):
            val[INDEX[name]] = x  # the recipe's steady state, published before the first tick

    def change(self, t: float, product_id: int, silo_id: int, val: list[Value],
               tim: list[float]) -> Product:  # fmt: skip
        """The operator's (or recipe system's) product change at time t."""
        product = self.line.change(t, product_id, silo_id)
        self._plc.load_recipe(product.recipe)
        self._set_process(product)
        val[_I_PRODUCT], val[_I_SILO] = product.id, silo_id
        tim[_I_PRODUCT] = tim[_I_SILO] = t
        return product

    def _set_process(self, product: Product) -> None:
        self._proc.set_product(product.limestone_pct, product.clinker_factor,
                               product.strength_base_mpa, product.gypsum_pct)  # fmt: skip
