"""Which product the mill grinds, from the PLC's product and silo tags: the product state.

Owns: `ProductTracker` (fed the loop's samples; the newest reading of `[product_selection]`'s
product and silo tags) and `ProductState` (what the loops may do now: run a product, hold
through a transition, or stop: no readable id, an id `[[products]]` does not list, a silo the
product may not go to), `ProductRecord` (the part of a cycle record that says so) and
`product_at` (the product whose material was ground at a time, from the changes seen).
Must not: do I/O, read a clock, log or write: agent.control.product_switch acts on the state.
Invariants: a product change starts at the source time of the product tag's new value (the
PLC's time of the change; after a restart the transition goes on from there; the first
reading of a Modbus tag, which has no source time of its own, starts one) and ends
`transition_s` later; an id is an integer value of Good quality; a Bad, Uncertain or
non-integer reading is no product at all (the loops stop, never guess).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from agent.config.product_settings import Product, ProductSelection
from agent.domain.samples import Quality, Sample

__all__ = ["ProductRecord", "ProductState", "ProductTracker", "Standing"]

_HISTORY = 256
"""Product changes kept for `product_at` (a mill changes product a few times a week)."""


class Standing(StrEnum):
    """What the product state lets the loops do."""

    ACTIVE = "active"
    TRANSITION = "transition"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ProductState:
    """The product now: `product` is set when ACTIVE or in TRANSITION (the new one)."""

    standing: Standing
    reason: str
    product: Product | None = None
    silo: int | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class ProductRecord:
    """The product part of a cycle record."""

    state: str
    id: int | None
    name: str | None
    silo: int | None
    since: float | None
    until: float | None
    running: str | None
    """The product whose settings the loop runs (during a transition: still the old one)."""

    @classmethod
    def of(cls, s: ProductState, running: str | None) -> ProductRecord:
        p = s.product
        return cls(s.standing.value, None if p is None else p.id, None if p is None else p.name,
                   s.silo, s.since, s.until, running)  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {"state": self.state, "id": self.id, "name": self.name, "silo": self.silo,
                "since": self.since, "until": self.until, "running": self.running}  # fmt: skip


def _integer(sample: Sample | None) -> int | None:
    if sample is None or sample.quality is not Quality.GOOD:
        return None
    v = sample.value
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return int(v) if float(v).is_integer() else None


class ProductTracker:
    """The product and silo tags' newest readings, and the product changes seen."""

    def __init__(self, selection: ProductSelection, products: Sequence[Product]) -> None:
        self.selection = selection
        self.by_id = {p.id: p for p in products}
        self.product_sample: Sample | None = None
        self.silo_sample: Sample | None = None
        self.changed_at: float | None = None
        """When the product tag took its current value (a reading of the same value again, as a
        Modbus poll delivers, does not move it)."""
        self.changes: list[tuple[float, str]] = []
        """(time of the change, product name) in time order, the last `_HISTORY`."""

    def observe(self, batch: Sequence[Sample]) -> None:
        sel = self.selection
        for s in batch:
            if s.tag == sel.product_tag:
                before = self.product_sample
                if before is None or before.value != s.value or self.changed_at is None:
                    self.changed_at = s.source_time
                self.product_sample = s
                self._note(s)
            elif s.tag == sel.silo_tag:
                self.silo_sample = s

    def _note(self, s: Sample) -> None:
        pid = _integer(s)
        product = None if pid is None else self.by_id.get(pid)
        if product is None:
            return
        if self.changes and self.changes[-1][1] == product.name:
            return
        if self.changes and s.source_time < self.changes[-1][0]:
            return  # an older reading delivered late: the newer change stands
        self.changes = [*self.changes[-(_HISTORY - 1) :], (s.source_time, product.name)]

    def product_at(self, t: float) -> str | None:
        """The product whose material was ground at time t (routed after the transition), or
        None when no change seen so far is old enough to say."""
        wait = self.selection.transition_s
        found = None
        for since, name in self.changes:
            if since + wait <= t:
                found = name
        return found

    def state(self, now: float) -> ProductState:
        sel = self.selection
        s = self.product_sample
        pid = _integer(s)
        if s is None:
            return ProductState(Standing.STOPPED, f"no reading of {sel.product_tag} yet")
        if pid is None:
            return ProductState(Standing.STOPPED, f"{sel.product_tag} is not a product id: "
                                f"{s.value!r} ({s.quality.value})")  # fmt: skip
        if sel.max_age_s is not None and now - s.source_time > sel.max_age_s:
            return ProductState(Standing.STOPPED, f"{sel.product_tag} is older than max_age_s "
                                f"({sel.max_age_s:g} s)")  # fmt: skip
        product = self.by_id.get(pid)
        if product is None:
            ids = ", ".join(str(i) for i in sorted(self.by_id))
            return ProductState(Standing.STOPPED, f"unknown product id {pid} on "
                                f"{sel.product_tag}: [[products]] lists {ids}")  # fmt: skip
        silo = _integer(self.silo_sample)
        if sel.silo_tag is not None and product.silos:
            if silo is None:
                return ProductState(Standing.STOPPED, f"{sel.silo_tag} is not a silo id",
                                    product)  # fmt: skip
            if silo not in product.silos:
                why = f"{product.name} is going to silo {silo}; it may go to silos {product.silos}"
                return ProductState(Standing.STOPPED, why, product, silo)
        since = s.source_time if self.changed_at is None else self.changed_at
        until = since + sel.transition_s
        if now < until:
            return ProductState(Standing.TRANSITION, f"product change to {product.name}: the "
                                f"mill holds the old material until {until:.0f}", product, silo,
                                since, until)  # fmt: skip
        return ProductState(Standing.ACTIVE, product.name, product, silo, since, until)
