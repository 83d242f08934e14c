"""The operator baseline of plant-model 4.5: what a plant does without the agent.

Owns: `correction` (pure: what one 2-day result asks for) and `Operator`: the recipe (sheet:
agent.demo.evaluate.recipe) loaded at the start and at product changes (the product's recipe
as they last left it; in the agent's run they hand the mill back to the agent at a change);
after each 2-day result of the product being ground a correction (separator +-20 rpm,
limestone +-1 %-point when the result is off by two dead bands or the separator is at its
limit), applied one shift (8 h) later through the mill's operator API (local setpoints; the
operator takes the mill to local control first when the agent held it in remote); a 2-day
result of a product ground earlier in the week (it arrives two days after its production,
often during another product's campaign) corrects that product's recipe book for its next
campaign instead, once per campaign, in the baseline only (in the agent's run the agent made
that production); and a restart an hour after a trip, in local control on their recipe.
Must not: read the plant's hidden truth (it sees what a plant sees: lab results as entered),
write a remote setpoint, or touch the agent; draw random numbers.
Invariants: never "nobody reacts": every 2-day result of the product being ground, of
production made after the last applied change and off by at least the dead band, leads to a
correction, unless both levers are at the window's edge in the direction asked; a result is
judged once; at most one correction is pending; a correction never leaves the window; a
tripped mill is never left standing longer than RESTART_S.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.demo.evaluate.recipe import REFERENCE_RPM, Recipe, clamp, recipe_point
from agent.demo.mill import Mill

__all__ = [
    "LIMESTONE",
    "REFERENCE_RPM",
    "RESTART_S",
    "SEPARATOR",
    "SHIFT_S",
    "Action",
    "Operator",
    "Recipe",
    "correction",
    "recipe_point",
]  # fmt: skip

SEPARATOR = "SeparatorSpeedSetpoint"
LIMESTONE = "LimestoneShareSetpoint"
SHIFT_S = 8 * 3600.0
SEPARATOR_STEP_RPM = 20.0
LIMESTONE_STEP_PCT = 1.0
DEAD_BAND_MPA = 1.0
"""A 2-day result this close to the expected value asks for nothing: about one standard deviation
of the plant's 2-day results (lab 0.8 MPa, clinker about 0.75 MPa)."""
RESTART_S = 3600.0
"""How long a tripped mill stands before the operators restart it (inspection, reset)."""


def correction(
    s2: float, expected: float, limestone: float, separator: float, recipe: Recipe
) -> tuple[float, float, str]:
    """What a 2-day result `s2` asks for, at the current setpoints: (limestone, separator,
    why). The same setpoints back when it asks for nothing or nothing can move."""
    off = s2 - expected
    if abs(off) < DEAD_BAND_MPA:
        return (
            limestone,
            separator,
            f"2-day {s2:.1f} MPa within {DEAD_BAND_MPA:g} of {expected:.1f}",
        )
    sign = 1.0 if off < 0 else -1.0  # low strength: grind finer, less limestone
    n = clamp(separator + sign * SEPARATOR_STEP_RPM, recipe.separator_window)
    ls = limestone
    if abs(off) >= 2 * DEAD_BAND_MPA or n == separator:
        ls = clamp(limestone - sign * LIMESTONE_STEP_PCT, recipe.limestone_window)
    word = "low" if off < 0 else "high"
    if (ls, n) == (limestone, separator):
        return (
            ls,
            n,
            f"2-day {s2:.1f} MPa {word} (expected {expected:.1f}): both levers at the edge",
        )
    return ls, n, f"2-day {s2:.1f} MPa {word} (expected {expected:.1f})"


@dataclass(frozen=True)
class Action:
    """One thing the operator did (time: sim time it took effect)."""

    time: float
    kind: str  # "recipe", "correction", "book" (a recipe book's), "take_over", "hold", "restart"
    product: str
    limestone: float | None
    separator: float | None
    why: str


@dataclass
class _Pending:
    due: float
    product: str
    d_limestone: float
    d_separator: float
    why: str


@dataclass
class Operator:
    """The plant's operators on one mill: recipes and 2-day corrections, a shift late."""

    mill: Mill
    recipes: Mapping[str, Recipe]
    may_correct: Callable[[], bool] = lambda: True
    """Whether the operators correct now (the agent run: only while no loop acts)."""
    shift_s: float = SHIFT_S
    hand_back: bool = False
    """Whether a product change hands the mill to the agent (remote), the agent run's."""
    actions: list[Action] = field(default_factory=list)
    _seen: float = -math.inf
    _pending: _Pending | None = None
    _tripped: float | None = None
    _changed: dict[str, float] = field(default_factory=dict)
    """Per product: when its setpoints last changed (loaded, corrected, or its book)."""
    _setpoints: dict[str, tuple[float, float]] = field(default_factory=dict)

    def recipe_of(self, product: str) -> Recipe:
        try:
            return self.recipes[product]
        except KeyError:
            raise ValueError(f"no recipe for product {product!r}; known: "
                             f"{', '.join(self.recipes)}") from None  # fmt: skip

    def start(self, *, remote_after: bool) -> None:
        """Load the recipe of the mill's product in local control; grant remote to the agent
        afterwards when `remote_after` (the PLC then copies the local setpoints to remote)."""
        self.mill.operator("remote_enable", False)
        self.load_recipe(self.mill.product)
        if remote_after:
            self.mill.operator("remote_enable", True)

    def product_changed(self, product: str) -> None:
        """A product change (the PLC has loaded its recipe): the operators load their recipe
        of `product` in local control and, when `hand_back`, grant remote to the agent (again:
        the new product's loops get the mill even after a take-over)."""
        if product != self.mill.product:
            raise ValueError(f"the mill grinds {self.mill.product!r}, not {product!r}")
        self.start(remote_after=self.hand_back)

    def load_recipe(self, product: str) -> None:
        """The product's recipe as local setpoints: the recipe sheet's point the first time,
        then the setpoints as the operators last left them for this product (a correction
        stays in the recipe book)."""
        recipe = self.recipe_of(product)
        ls, n = self._setpoints.get(product) or recipe_point(recipe)
        self._set(product, ls, n)
        self._pending = None
        why = (f"expected 28-day mean {recipe.expected_s28(ls, n):.2f} MPa "
               f"(target mean {recipe.s28_target_mean_mpa:g})")  # fmt: skip
        self.actions.append(Action(self.mill.time, "recipe", product, ls, n, why))

    def _set(self, product: str, ls: float, n: float) -> None:
        self.mill.operator("local_setpoint", ls, LIMESTONE)
        self.mill.operator("local_setpoint", n, SEPARATOR)
        self._setpoints[product] = (ls, n)
        self._changed[product] = self.mill.time

    def tick(self) -> None:
        """Restart a tripped mill when due; judge the 2-day results entered since the last
        look; apply a correction when due."""
        now = self.mill.time
        if self.mill.read("Running").value is False:
            self._tripped = now if self._tripped is None else self._tripped
            if now >= self._tripped + RESTART_S - 1e-6:
                self._restart()
        else:
            self._tripped = None
        for record in self.mill.lab_results(self._seen):
            self._seen = record.entry_time
            if record.test == "s2":
                self._judge(record.product, record.value, record.window_start)
        if self._pending is not None and now >= self._pending.due - 1e-6:
            pending, self._pending = self._pending, None
            if self.may_correct():
                self._apply(pending)

    def _judge(self, product: str, s2: float, window_start: float) -> None:
        if window_start < self._changed.get(product, -math.inf) - 1e-6:
            return  # the result predates the product's last change
        if product != self.mill.product:
            if not self.hand_back:  # only their own production says what their recipe gives
                self._book(product, s2)
            return
        if self._pending is not None or not self.may_correct():
            return  # a change is on its way, or the agent runs the mill
        recipe = self.recipe_of(product)
        ls, n = self._in_force(product)
        expected = recipe.expected_s2(*recipe_point(recipe))
        new_ls, new_n, why = correction(s2, expected, ls, n, recipe)
        if (new_ls, new_n) != (ls, n):
            self._pending = _Pending(self.mill.time + self.shift_s, product, new_ls - ls,
                                     new_n - n, why)  # fmt: skip
        elif "edge" in why:
            self.actions.append(Action(self.mill.time, "hold", product, ls, n, why))

    def _restart(self) -> None:
        """The mill tripped an hour ago: reset it in local control, on their recipe."""
        why = f"the mill tripped ({self.mill.trip_reason}): restarted in local control"
        self.mill.operator("remote_enable", False)
        self.mill.operator("reset_trip")
        self._tripped = None
        ls, n = self._setpoints.get(self.mill.product) or recipe_point(self.recipe)
        self.actions.append(Action(self.mill.time, "restart", self.mill.product, ls, n, why))
        self.load_recipe(self.mill.product)

    @property
    def recipe(self) -> Recipe:
        return self.recipe_of(self.mill.product)

    def _book(self, product: str, s2: float) -> None:
        """A 2-day result of a product not ground now corrects its recipe book (loaded at its
        next change), once per campaign: later results of the same production are older than
        the book's change."""
        recipe = self.recipe_of(product)
        ls, n = self._setpoints.get(product) or recipe_point(recipe)
        expected = recipe.expected_s2(*recipe_point(recipe))
        new_ls, new_n, why = correction(s2, expected, ls, n, recipe)
        if (new_ls, new_n) != (ls, n):
            self._setpoints[product] = (new_ls, new_n)
            self._changed[product] = self.mill.time
            self.actions.append(Action(self.mill.time, "book", product, new_ls, new_n,
                                       f"{why}, for its next campaign"))  # fmt: skip

    def _in_force(self, product: str) -> tuple[float, float]:
        """The setpoints in force: the agent's (the remote ones the PLC publishes) while it
        holds the mill in remote, else the operators' own."""
        if self.mill.read("RemoteActive").value is True:
            ls, n = self.mill.read(LIMESTONE).value, self.mill.read(SEPARATOR).value
            assert isinstance(ls, float) and isinstance(n, float)
            return ls, n
        return self._setpoints.get(product) or recipe_point(self.recipe_of(product))

    def _apply(self, pending: _Pending) -> None:
        if pending.product != self.mill.product:
            return
        recipe = self.recipe_of(pending.product)
        ls, n = self._in_force(pending.product)
        if self.mill.read("RemoteActive").value is True:
            self.mill.operator("remote_enable", False)  # local := effective (bumpless)
            why = "no loop of the agent acted: the operators take over"
            self.actions.append(Action(self.mill.time, "take_over", pending.product, ls, n, why))
        ls = clamp(ls + pending.d_limestone, recipe.limestone_window)
        n = clamp(n + pending.d_separator, recipe.separator_window)
        self._set(pending.product, ls, n)
        self.actions.append(Action(self.mill.time, "correction", pending.product, ls, n,
                                   pending.why))  # fmt: skip
