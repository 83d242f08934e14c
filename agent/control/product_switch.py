"""A control loop's products: the settings it runs per product, and the audited changes.

Owns: for one loop, the loop each `[[products]]` entry makes of it (agent.config.products),
which one runs now, the step a cycle takes from the product state (agent.control.products):
run, hold through a transition (no prediction, no write), or stop (an unreadable or unknown
product id, a silo the product may not go to), and the audit events of each change:
`product_change` (a transition starts: from, to, silo, until), `product_switched` (the loop
runs the new product's model, mode, envelope and objective) and `product_stopped` (why the loop
stops, once per reason).
Must not: write to the PLC, judge a model, or decide what the loop does with a product's
settings (agent.control.loop swaps them in).
Invariants: without `[product_selection]` every cycle runs the loop as configured and nothing
is recorded; a loop runs a product's settings only after that product's transition ended; the
first switch after a start keeps the operator's baseline only when the last record before the
restart was of the same product (a new product is a new recipe: a new baseline).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.config.product_settings import Product, ProductSelection
from agent.config.products import product_loop
from agent.config.settings import Loop
from agent.control.products import ProductRecord, ProductState, ProductTracker, Standing
from agent.domain.samples import Sample

__all__ = ["ProductStep", "ProductSwitch"]

Audit = Callable[[str, Mapping[str, Any]], Awaitable[object]]


@dataclass(frozen=True)
class ProductStep:
    """What this cycle does about the product: `stop` (the reason the loop is blocked), `hold`
    (a transition: the reason), `switch` (the product's loop to run from now on)."""

    record: ProductRecord | None = None
    stop: str | None = None
    hold: str | None = None
    switch: Loop | None = None
    keep_baseline: bool = True


class ProductSwitch:
    """One loop's product state (`selection` None: the loop has no products)."""

    def __init__(self, base: Loop, selection: ProductSelection | None,
                 products: Sequence[Product], audit: Audit) -> None:  # fmt: skip
        self._audit = audit
        self.tracker = None if selection is None else ProductTracker(selection, products)
        self.loops = {p.id: product_loop(base, p) for p in products} if selection else {}
        self.running: Product | None = None
        self.carried: str | None = None
        """The product of the last cycle record before a restart (None: none recorded)."""
        self._announced: tuple[int, float | None] | None = None
        self._stopped: str | None = None
        self._interrupted = False  # a stop or transition since the loop last ran its product

    def observe(self, batch: Sequence[Sample]) -> None:
        if self.tracker is not None:
            self.tracker.observe(batch)

    def running_name(self) -> str | None:
        return None if self.running is None else self.running.name

    def product_at(self, t: float) -> str | None:
        return None if self.tracker is None else self.tracker.product_at(t)

    def moved_on(self, now: float) -> str | None:
        """Why the product the loop runs is no longer the PLC's (a change that arrived while the
        cycle predicted), None while it still is: asked again right before acting."""
        if self.tracker is None:
            return None
        state = self.tracker.state(now)
        running = self.running
        if state.standing is Standing.ACTIVE and running is not None and state.product == running:
            return None
        return state.reason

    async def step(self, now: float) -> ProductStep:
        """The product state now, audited when it changed."""
        if self.tracker is None:
            return ProductStep()
        state = self.tracker.state(now)
        record = ProductRecord.of(state, None if self.running is None else self.running.name)
        if state.standing is not Standing.ACTIVE and self.running is not None:
            self._interrupted = True  # (before the first product nothing ran: a start is no stop)
        if state.standing is Standing.STOPPED:
            if self._stopped != state.reason:
                self._stopped = state.reason
                await self._audit("product_stopped", {"reason": state.reason, **record.to_json()})
            return ProductStep(record, stop=state.reason)
        self._stopped = None
        assert state.product is not None
        if state.standing is Standing.TRANSITION:
            await self._announce(state, record)
            return ProductStep(record, hold=state.reason)
        same = self.running is not None and self.running.id == state.product.id
        if same and not self._interrupted:
            return ProductStep(record)
        # A switch, also to the same product again after a stop or a change away and back
        # (A -> B -> A before B's transition ended): the PLC may have reloaded the recipe, so
        # the loop starts afresh from the setpoint it finds, audited like any switch.
        return await self._switch(state, record)

    async def _announce(self, state: ProductState, record: ProductRecord) -> None:
        assert state.product is not None
        key = (state.product.id, state.since)
        if self._announced == key:
            return
        self._announced = key
        before = self.running.name if self.running is not None else self.carried
        await self._audit("product_change", {"from": before, "to": state.product.name,
                                             **record.to_json()})  # fmt: skip

    async def _switch(self, state: ProductState, record: ProductRecord) -> ProductStep:
        assert state.product is not None
        first = self.running is None
        keep = first and self.carried == state.product.name
        self.running, self._interrupted = state.product, False
        record = ProductRecord.of(state, state.product.name)
        loop = self.loops[state.product.id]
        o = loop.objective
        await self._audit("product_switched", {
            "product": state.product.name, "id": state.product.id, "silo": state.silo,
            "mode": loop.mode, "model": loop.model, "model_version": loop.model_version,
            "envelope": [loop.envelope_min, loop.envelope_max],
            "max_deviation_from_baseline": loop.max_deviation_from_baseline,
            "objective": o.model_dump(), "baseline_kept": keep,
        })  # fmt: skip
        return ProductStep(record, switch=loop, keep_baseline=keep)
