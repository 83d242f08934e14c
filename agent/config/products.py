"""The loops a product makes of the `[[loops]]` entries.

Owns: `product_loop` (a `[[loops]]` entry with a product's overrides applied: model, mode,
envelope, baseline deviation, objective; validated like the loop itself), `product_loops`
(every product's loops, by product id), `model_pins` (the model versions the agent loads: with
a product table those of every product's loops, which are the only loops that ever run).
Must not: read files, the environment or the network; check the table against the file
(agent.config.checks_products does); know what a product change does at run time
(agent.control.products does).
Invariants: pure and total; without `[[products]]` a loop is exactly its `[[loops]]` entry; a
product's override of a loop is validated by the same schema as the file (a product cannot
make a loop the file itself would refuse); every problem is reported with its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.config.product_settings import Product, ProductLoop
from agent.config.settings import Loop

__all__ = ["MODES", "model_pins", "override_of", "product_loop", "product_loops"]

MODES = ("off", "shadow", "advisory", "closed_loop")
"""The loop modes, in the order of what they may do (a product may lower a loop's mode)."""
_LOOP_FIELDS = ("mode", "model", "envelope_min", "envelope_max", "max_deviation_from_baseline")


def override_of(product: Product, loop: str) -> ProductLoop | None:
    """The product's `[[products.loops]]` entry of `loop`, if any."""
    return next((o for o in product.loops if o.loop == loop), None)


def product_loop(loop: Loop, product: Product) -> Loop:
    """`loop` while `product` is ground (pydantic ValidationError if the result is invalid)."""
    over = override_of(product, loop.name)
    data: dict[str, Any] = loop.model_dump()
    data["objective"] = {**data["objective"], **product.objective}
    if product.model is not None:
        data["model"], data["model_version"] = product.model, product.model_version
    if over is not None:
        data["objective"].update(over.objective)
        for name in _LOOP_FIELDS:
            if (value := getattr(over, name)) is not None:
                data[name] = value
        if over.model is not None:
            data["model_version"] = over.model_version
    return Loop.model_validate(data)


def product_loops(loops: Sequence[Loop], products: Sequence[Product]) -> dict[int, list[Loop]]:
    """Every product's loops by product id (for a file that `check_products` accepted)."""
    return {p.id: [product_loop(lp, p) for lp in loops] for p in products}


def model_pins(loops: Sequence[Loop], products: Sequence[Product]) -> dict[str, str | None]:
    """model -> pinned version (None: the newest that loads) of every loop that is not off: as
    written without a product table, else as every product makes it (the model manager loads
    them all: a product change switches at once); the first loop naming a model pins it
    (agent.config.checks_products refuses two pins of one model)."""
    made = [lp for lps in product_loops(loops, products).values() for lp in lps]
    every = made if products else list(loops)
    pins: dict[str, str | None] = {}
    for lp in every:
        if lp.mode != "off":
            pins.setdefault(lp.model, lp.model_version)
    return pins
