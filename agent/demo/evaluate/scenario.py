"""What an evaluation runs: the products' recipe sheets, the approved lever windows, and the
scenario's events (drift faults of plant-model 4.3, the product campaign).

Owns: `recipes` (each product of the simulator's product table, agent.demo.products, as the
plant's recipe sheet: `Recipe` with the product's limits and target mean, `[[products]]` of
the configuration first, its recipe, the plant's estimate of its strength, `s28_potential`,
and the operators' window: the product's limestone range inside the setpoints' normal range
on the mill, and the separator's normal range), `Scenario`, `WEEK` and `SCENARIOS`
("default": a week of product changes at shift boundaries repeated over the run, clinker
variation, the mill's own disturbance, table wear -0.05 MPa/day from day 3 and clinker
reactivity -2.5 MPa from day 10; "agent-window": the same with the operators kept inside the
agent's envelopes), and `EventPlayer`, which applies a scenario's events to the mill when
their plant time comes.
Must not: draw random numbers, read the plant's truth, keep a product table of its own, or
know about the agent's decisions.
Invariants: both runs of an evaluation play the same events at the same ticks (the player
plays an event at the first tick at or after its time); a product change is played only
through the mill's public `change_product`; the campaign's changes lie on shift boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.config.products import product_loop
from agent.config.settings import Loop, Settings
from agent.demo.evaluate.operator import LIMESTONE, SEPARATOR, Recipe
from agent.demo.mill import Mill
from agent.demo.products import PRODUCTS, Product
from agent.demo.tags import BY_NAME, DAY

__all__ = ["CLINKER_S28_MPA", "SCENARIOS", "WEEK", "EventPlayer", "Scenario", "recipes",
           "s28_potential"]  # fmt: skip

CLINKER_S28_MPA = 51.0
"""The plant's clinker as its history knows it: the long-run mean 28-day strength of the
reference cement (CEM II/A-LL at 12 % limestone, clinker factor 0.83, 3800 cm2/g)."""


def s28_potential(product: Product) -> float:
    """The recipe sheet's 28-day strength potential of `product` (operator.Recipe): the
    clinker's, shifted by what the plant's history of this product's recipe says (the product
    table's strength base: gypsum and clinker grade of the product)."""
    return CLINKER_S28_MPA + product.strength_base_mpa


def _normal(tag: str) -> tuple[float, float]:
    lo, hi = BY_NAME[tag].normal
    return float(lo), float(hi)


def _envelope(loops: Sequence[Loop], tag: str) -> tuple[float, float]:
    """The envelope of the loop that moves `tag`, else the setpoint's normal range."""
    for lp in loops:
        if lp.target_tag == tag and lp.envelope_min is not None and lp.envelope_max is not None:
            return float(lp.envelope_min), float(lp.envelope_max)
    return _normal(tag)


def recipes(settings: Settings, window: str = "product") -> dict[str, Recipe]:
    """Every product's Recipe: its limits and target mean (`[[products]]` of `settings`, else
    PRODUCTS) and the window the operators may use. window "product": the product's limestone
    range (EN 197-1, the plant's product sheet) inside the setpoints' normal range on the
    mill, and the separator's normal range: the plant without the agent (a narrower window
    would handicap it). window "agent": the envelopes of the agent's loops for the product
    (`[[products.loops]]`, else the loops' own), a handicapped baseline for comparison only."""
    if window not in ("product", "agent"):
        raise ValueError(f"window must be 'product' or 'agent', found {window!r}")
    configured = {p.name: p for p in settings.products}
    ls_normal, n_normal = _normal(LIMESTONE), _normal(SEPARATOR)
    out: dict[str, Recipe] = {}
    for p in PRODUCTS.values():
        mine = configured.get(p.name)
        lo = mine.limestone_min_pct if mine and mine.limestone_min_pct is not None else None
        hi = mine.limestone_max_pct if mine and mine.limestone_max_pct is not None else None
        lo = max(ls_normal[0], p.limestone_min_pct if lo is None else lo)
        hi = min(ls_normal[1], p.limestone_max_pct if hi is None else hi)
        if lo > hi:  # the mill's normal range is another product's: the product's own range
            lo, hi = p.limestone_min_pct, p.limestone_max_pct
        if window == "agent":
            loops = [product_loop(lp, mine) for lp in settings.loops] if mine else settings.loops
            env = _envelope(loops, LIMESTONE)
            if max(lo, env[0]) <= min(hi, env[1]):
                lo, hi = max(lo, env[0]), min(hi, env[1])
            n_window = _envelope(loops, SEPARATOR)
        else:
            n_window = n_normal
        lower = mine.s28_lower_mpa if mine and mine.s28_lower_mpa else p.s28_lower_mpa
        target = (mine.s28_target_mean_mpa if mine and mine.s28_target_mean_mpa
                  else p.s28_target_mean_mpa)  # fmt: skip
        out[p.name] = Recipe(p.id, p.name, lower, target, s28_potential(p), p.limestone_pct,
                             p.separator_rpm, p.clinker_factor, (lo, hi), n_window)  # fmt: skip
    return out


SHIFT_DAYS = 1.0 / 3.0
WEEK: tuple[tuple[float, int, int], ...] = (
    (2.0, 1, 1),
    (4.0, 2, 3),
    (5.0, 3, 4),
    (6.0 + SHIFT_DAYS, 2, 2),
)
"""The default week of product changes (day of the week, product id, silo id), at shift
boundaries (00:00, 08:00, 16:00), repeated every week from the start, which is on product 2
(silo 2): product 1 from day 2 to day 4 (2 days, silo 1), product 2 (silo 3) to day 5, product
3 from day 5 to day 6 08:00 (1.33 days, silo 4), product 2 (silo 2) into the next week:
product 2 is ground 3.67 days a week."""


@dataclass(frozen=True)
class Scenario:
    """Events in plant days from the start: drift faults and a product campaign (a week of
    changes repeated every `period_days` from the start; empty: one product)."""

    name: str
    faults: Sequence[tuple[float, str, dict[str, float]]]
    campaign: Sequence[tuple[float, int, int]] = ()
    description: str = ""
    operators: str = "product"
    """The operators' window (agent.demo.evaluate.scenario.recipes): "product" or "agent"."""
    period_days: float = 7.0

    def changes(self, days: float) -> list[tuple[float, int, int]]:
        """The campaign's product changes (day, product id, silo id) within `days`."""
        out: list[tuple[float, int, int]] = []
        for week in range(int(days // self.period_days) + 1):
            for day, pid, silo in self.campaign:
                at = week * self.period_days + day
                if at < days - 1e-9:  # a change at the run's end would grind nothing
                    out.append((at, pid, silo))
        return out

    def campaign_text(self) -> str:
        """The campaign in words, for the report."""
        if not self.campaign:
            return "none (one product)"
        names = "; ".join(f"day {day:.2f}: product {pid} ({PRODUCTS[pid].name}) to silo {silo}"
                          for day, pid, silo in self.campaign)  # fmt: skip
        return f"every {self.period_days:g} days from the start: {names}"


DEFAULT = Scenario(
    "default",
    faults=(
        (3.0, "table_wear", {"mpa_per_day": -0.05}),
        (10.0, "clinker_reactivity", {"mpa": -2.5}),
    ),
    campaign=WEEK,
    description="product 2 (CEM II/A-LL 42.5 R) most of the week, product 1 (CEM I 42.5 R) 2 "
    "days and product 3 (CEM II/B-LL 32.5 R) 1.33 days a week, changed at shift boundaries; "
    "clinker variation (the mill's own disturbance), table wear -0.05 MPa/day from day 3, "
    "clinker reactivity -2.5 MPa from day 10",
)
AGENT_WINDOW = Scenario(
    "agent-window",
    faults=DEFAULT.faults,
    campaign=DEFAULT.campaign,
    description=DEFAULT.description + "; the operators kept inside the agent's envelopes (a "
    "handicapped baseline, for comparison only: no saving against it is the plant's)",
    operators="agent",
)
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (DEFAULT, AGENT_WINDOW)}


@dataclass(frozen=True)
class _Event:
    time: float
    fault: tuple[str, dict[str, float]] | None = None
    product: tuple[int, int] | None = None


@dataclass
class EventPlayer:
    """Plays a scenario's events on a mill as its plant time reaches them; `on_product` hears
    the name of each product the mill changes to (the operators load its recipe)."""

    mill: Mill
    scenario: Scenario
    start: float
    days: float
    on_product: Callable[[str], None] | None = None
    played: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        events = [_Event(self.start + day * DAY, fault=(kind, dict(params)))
                  for day, kind, params in self.scenario.faults]  # fmt: skip
        events += [_Event(self.start + day * DAY, product=(pid, silo))
                   for day, pid, silo in self.scenario.changes(self.days)]  # fmt: skip
        self._events = sorted(events, key=lambda e: e.time)

    def tick(self) -> None:
        now = self.mill.time
        while self._events and self._events[0].time <= now + 1e-6:
            event = self._events.pop(0)
            if event.fault is not None:
                kind, params = event.fault
                self.mill.inject(kind, None, **params)
                self.played.append((now, f"{kind} {params}"))
            elif event.product is not None:
                pid, silo = event.product
                self.mill.change_product(pid, silo)
                self.played.append((now, f"product {pid} to silo {silo}"))
                if self.on_product is not None:
                    self.on_product(self.mill.product)
