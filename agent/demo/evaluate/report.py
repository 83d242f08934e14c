"""The evaluation's report: the per-product table and the overall one, the saving or the
refusal, the goal, and how the figures were made, as Markdown (the file) and as plain lines
(the terminal).

Owns: `Evaluation` (both runs, per product and overall: figures and verdict),
`evaluate_products`, `evaluate_overall`, `table_lines` (the tables the command prints) and
`markdown` (the report file).
Must not: run anything, draw charts or read files; claim a saving `equal_conformity` refused.
Invariants: every product either run produced is in the table, once, in the product table's
order, and the overall table follows them; the saving line of a product is `Saving.why`,
verbatim; the report states the equal-conformity rule and that 28-day results still waiting for
their test date are counted with the value the lab will report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.demo.evaluate.figures import (
    CO2_PER_KWH,
    CO2_PER_T_CLINKER,
    GOAL_CF_POINTS,
    ProductFigures,
    Saving,
    equal_conformity,
    goal,
    overall_figures,
    product_figures,
)
from agent.demo.evaluate.operator import RESTART_S, Recipe, recipe_point
from agent.demo.evaluate.runs import CADENCE_S, DT_S, SAMPLE_S, RunResult
from agent.demo.evaluate.scenario import Scenario

__all__ = ["RULE", "Evaluation", "ProductVerdict", "evaluate_overall", "evaluate_products",
           "markdown", "table_lines"]  # fmt: skip

RULE = ("A saving counts only at equal conformity: the agent's share of 28-day results at or "
        "above the lower limit is at least the baseline's, and the agent has no result below "
        "the limit or its minimum is at least the baseline's minimum (plant-model 4.5 asks "
        "the same share and none below; a baseline that has results below the limit itself "
        "cannot ask none of the agent, but the agent must not be worse in the worst case). "
        "Per product and over all products (each result against its product's limit, the "
        "worst margin to the limit as the minimum).")  # fmt: skip
GOAL = (f"The goal (issue 15): conformity at least the baseline's and a clinker factor at least "
        f"{GOAL_CF_POINTS:g} %-points below it, per product and overall.")  # fmt: skip


@dataclass(frozen=True)
class ProductVerdict:
    product: str
    baseline: ProductFigures
    agent: ProductFigures
    saving: Saving
    goal: tuple[bool, str]


@dataclass(frozen=True)
class Evaluation:
    days: float
    seed: int
    scenario: Scenario
    baseline: RunResult
    agent: RunResult
    products: Sequence[ProductVerdict]
    recipes: Mapping[str, Recipe]
    overall: ProductVerdict | None = None


def evaluate_products(baseline: RunResult, agent: RunResult,
                      recipes: Mapping[str, Recipe]) -> list[ProductVerdict]:  # fmt: skip
    """Per product ground in either run (in the order of `recipes`): figures and verdicts."""
    seen = {r[1] for r in (*baseline.rows, *agent.rows)}
    seen |= {r.product for r in (*baseline.s28, *agent.s28)}
    out = []
    for name, recipe in recipes.items():
        if name not in seen:
            continue
        base = product_figures(name, recipe.s28_lower_mpa, baseline.rows, baseline.s28, SAMPLE_S)
        mine = product_figures(name, recipe.s28_lower_mpa, agent.rows, agent.s28, SAMPLE_S)
        saving = equal_conformity(base, mine)
        out.append(ProductVerdict(name, base, mine, saving, goal(saving)))
    return out


def evaluate_overall(baseline: RunResult, agent: RunResult, recipes: Mapping[str, Recipe],
                     products: Sequence[ProductVerdict]) -> ProductVerdict:  # fmt: skip
    """Every product together, both runs weighted by the baseline's tonnes per product."""
    lowers = {name: r.s28_lower_mpa for name, r in recipes.items()}
    tonnes = {p.product: p.baseline.tonnes for p in products}
    base = overall_figures([p.baseline for p in products], baseline.s28, lowers, tonnes)
    mine = overall_figures([p.agent for p in products], agent.s28, lowers, tonnes)
    saving = equal_conformity(base, mine)
    return ProductVerdict(base.product, base, mine, saving, goal(saving))


def _f(x: float, spec: str) -> str:
    return "-" if math.isnan(x) else format(x, spec)


def _row(run: str, f: ProductFigures) -> str:
    low = f"{_f(f.minimum, '+.1f')} to its limit" if f.overall else _f(f.minimum, ".1f")
    return (f"| {run} | {f.n} | {_f(f.share_ok * 100, '.1f')} % | {low} | "
            f"{_f(f.mean, '.2f')} | {_f(f.sd, '.2f')} | {_f(f.clinker_factor, '.4f')} | "
            f"{_f(f.co2_t, '.1f')} | {_f(f.kwh_t, '.2f')} |")  # fmt: skip


HEADER = ("| run | 28-day results | >= lower limit | minimum MPa | mean MPa | sd MPa | "
          "clinker factor | kg CO2/t | kWh/t |")  # fmt: skip


def _handicap(ev: Evaluation) -> list[str]:
    if ev.scenario.operators != "agent":
        return []
    return [
        "note: in this scenario the operators are kept inside the agent's envelopes, a "
        "handicapped baseline: these figures compare, they are not the plant's saving"
    ]


def table_lines(ev: Evaluation) -> list[str]:
    """The per-product table with the verdict lines under it (Markdown, readable as text)."""
    out: list[str] = []
    for p in (*ev.products, *([ev.overall] if ev.overall is not None else [])):
        title = (f"{p.product} (each 28-day result against its product's lower limit; clinker "
                 f"factor and kWh/t weighted by the baseline's tonnes per product)"
                 if p.baseline.overall else
                 f"{p.product} (lower limit {p.baseline.lower_mpa:g} MPa, "
                 f"{p.baseline.tonnes:,.0f} t ground in the baseline run)")  # fmt: skip
        out += [title, "", HEADER,
                "|---|---|---|---|---|---|---|---|---|", _row("baseline (operators)", p.baseline),
                _row("agent", p.agent), "", *_production(ev, p), f"saving: {p.saving.why}",
                f"goal: {p.goal[1]}", *_handicap(ev), ""]  # fmt: skip
    return out


def _production(ev: Evaluation, p: ProductVerdict) -> list[str]:
    """Tonnes ground in each run; over all products also the trips (the mill stood until the
    operators restarted it, RESTART_S later)."""
    line = f"production: baseline {p.baseline.tonnes:,.0f} t, agent {p.agent.tonnes:,.0f} t"
    if p.baseline.overall:

        def when(trips: Sequence[float]) -> str:
            days = ", ".join(f"day {(t - ev.baseline.start) / 86400.0:.2f}" for t in trips)
            return f"{len(trips)}" + (f" ({days})" if trips else "")

        line += (f"; trips: baseline {when(ev.baseline.trips)}, agent {when(ev.agent.trips)} "
                 f"(the operators restart a tripped mill {RESTART_S / 3600.0:g} h "
                 "later)")  # fmt: skip
    return [line]


def _recipe_lines(ev: Evaluation) -> list[str]:
    out = []
    for name, r in ev.recipes.items():
        ls, n = recipe_point(r)
        out.append(f"- {name}: limestone {ls:g} %, separator {n:g} rpm; expected 28-day mean "
                   f"{r.expected_s28(ls, n):.2f} MPa (target mean {r.s28_target_mean_mpa:g}, "
                   f"lower limit {r.s28_lower_mpa:g}); operators' window limestone "
                   f"{r.limestone_window[0]:g}-{r.limestone_window[1]:g} %, separator "
                   f"{r.separator_window[0]:g}-{r.separator_window[1]:g} rpm")  # fmt: skip
    return out


def _margin_lines(ev: Evaluation) -> list[str]:
    out = []
    for p in ev.products:
        for run, f in (("baseline", p.baseline), ("agent", p.agent)):
            if f.n > 1 and f.sd > 0:
                k = (f.mean - f.lower_mpa) / f.sd
                out.append(f"- {p.product}, {run}: mean {f.mean:.2f} MPa is {k:.2f} standard "
                           f"deviations ({f.sd:.2f} MPa) above the lower limit")  # fmt: skip
    return out


def _actions(run: RunResult) -> list[str]:
    kinds: dict[str, int] = {}
    for a in run.actions:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    return [f"{k} {v}" for k, v in sorted(kinds.items())]


def markdown(ev: Evaluation, *, wall_s: float, charts: Sequence[str], chart_note: str) -> str:
    """The report file's text."""
    a, b = ev.baseline, ev.agent
    lines = [
        f"# edge-agent evaluate: {ev.days:g} plant days, seed {ev.seed}, scenario "
        f"{ev.scenario.name!r}", "",
        f"Scenario: {ev.scenario.description}. Product campaign: "
        f"{ev.scenario.campaign_text()}.",
        f"Wall time: {wall_s:.0f} s (baseline {a.wall_s:.0f} s, agent {b.wall_s:.0f} s).", "",
        "## Per product and overall", "", RULE, GOAL, "", *table_lines(ev),
        "28-day results: every 4-hourly composite the lab took during the run, with the value "
        "it reports (lab noise included). Within a run of this length most of them are not "
        "entered yet (28 days + 2-6 h after their sample time): they are counted with the value "
        "the lab will enter.",
        f"CO2/t = {CO2_PER_T_CLINKER:g} kg CO2/t clinker x clinker factor + {CO2_PER_KWH:g} "
        "kg CO2/kWh x kWh/t; kWh/t of the mill, separator, bucket elevator and fan drives; "
        "clinker factor and kWh/t weighted by production (the plant's truth, sampled every "
        f"{SAMPLE_S:g} s).", "",
        "## Margins (k = (mean - lower limit) / sd)", "", *_margin_lines(ev), "",
        "## The baseline: the plant's operators (plant-model 4.5)", "",
        "The recipe sheet (the plant's estimate, agent.demo.evaluate.recipe): per product "
        "of the simulator's product table (agent.demo.products), the 28-day strength "
        "potential of its recipe, -potential/(100 x clinker factor) MPa per %-point of "
        "limestone and +0.0156 MPa per rpm of separator; it agrees with a noise-free mill "
        "within 0.1 MPa at every recipe and recipe point "
        "(tests/sim/test_evaluate_operator.py).", "",
        "A fixed recipe per product, aimed at the product's target mean (about 2.5 standard "
        "deviations of the plant's 28-day results above the lower limit), limestone first, "
        "then the separator, " + (
            "inside the product's limestone range and the setpoints' normal ranges on the "
            "mill (not the agent's envelopes: the baseline is the plant without the agent, and "
            "a narrower window would handicap it):" if ev.scenario.operators == "product" else
            "inside the envelopes of the agent's loops (scenario agent-window: a handicapped "
            "baseline, for comparison only):"), *_recipe_lines(ev), "",
        "After each 2-day result of production made since their last change, the operators "
        "correct one shift (8 h) later: separator +-20 rpm when the result is 1 MPa or more "
        "from what the recipe should give, and limestone -+1 %-point as well when it is 2 MPa "
        "or more off (or the separator is at its limit). In the agent's run they load recipes "
        "and correct only while no loop has acted in effective closed loop over the last "
        "shift; a correction then takes the mill to local control. At a product change "
        "(the PLC loads the product's recipe) they load their recipe of the product, as they "
        "last left it (a correction stays in the recipe book), and in the agent's run hand "
        "the mill back to the agent (remote); their corrections judge only 2-day results of "
        "the product being ground, of production since their last change.", "",
        f"Operators, baseline run: {', '.join(_actions(a)) or 'nothing'}; agent run: "
        f"{', '.join(_actions(b)) or 'nothing'}.", "",
        "## The agent", "",
        f"The real loops of config/demo.toml (closed loop, every {CADENCE_S:g} s instead of "
        f"60 s), model, gates, guard, truth loop, audit and heartbeat, headless in sim time "
        f"(dt {DT_S:g} s): {b.cycles} cycles; writes {dict(b.writes)}; hours in effective "
        f"closed loop {({k: round(v, 1) for k, v in b.closed_loop_h.items()})}; step-downs: "
        f"{'; '.join(b.step_downs) or 'none'}.",
        "Envelopes of the agent's loops (as configured): "
        + "; ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in b.envelopes.items()
                    if lo is not None and hi is not None) + ".",
        "Blocked cycles (loop: reason, cycles): "
        + ("; ".join(f"{k} ({v})" for k, v in list(b.blocked.items())[:6]) or "none") + ".",
        "The shortcut: the mill is read and written in process (agent.demo.headless), not over "
        "OPC UA; tests/integration/test_evaluate_shortcut.py shows it gives the same decisions "
        "as the networked path.", "",
        "Events played (both runs): "
        + ("; ".join(f"day {(t - a.start) / 86400:.1f}: {what}" for t, what in a.events)
           or "none") + ".", "",
        "## Charts", "", *(f"![{c}]({c})" for c in charts), chart_note, "",
    ]  # fmt: skip
    return "\n".join(lines)
