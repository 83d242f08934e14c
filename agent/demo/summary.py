"""The demo's figures: the agent's run against the operator baseline of plant-model 4.5.

Owns: the figures of the summary and their stable plain-text lines (`summary: ...`): the
operator baseline (agent.demo.baseline: the same mill, seed and plant events, its operators
instead of the agent) and the comparison at equal conformity (agent.demo.conformity:
conformity on the hidden true 28-day strength, CO2 per tonne and where it comes from, a
saving only when conformity is equal, else why none is claimed); samples the agent buffered
against samples the receiver stored; writes made and refused by reason, from the audit log
and checked against the loops' counters (agent.demo.writes); the truth loop's standing at the
end (lab results matched per loop, the model's bias against them beside its declared RMSE,
step-downs: the agent's own reports, as its /status shows them).
Must not: touch the running plant or the agent; draw anything beyond text lines.
Invariants: a `summary: saving` line carries a figure only when the equal-conformity rule
grants it (agent.demo.evaluate.figures.equal_conformity); otherwise it says why not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.control.audit_chain import ChainReport
from agent.demo.conformity import BASIS, Comparison
from agent.demo.stage import Tally
from agent.demo.writes import AuditWrites
from agent.quality.monitor import LoopQualityReport


@dataclass(frozen=True)
class Lab:
    """The truth loop at the end: its report per loop, results no window held, units."""

    reports: Sequence[LoopQualityReport] = ()
    unmatched: int = 0
    units: Mapping[str, str] = field(default_factory=dict)

    @property
    def stepped_down(self) -> list[LoopQualityReport]:
        return [r for r in self.reports if r.step_down is not None]


@dataclass(frozen=True)
class Baseline:
    """What the operators did in the baseline run."""

    product_id: int
    limestone: float
    separator: float
    expected_s28: float
    corrections: int


@dataclass(frozen=True)
class Figures:
    plant_hours: float
    compared: Comparison
    baseline: Baseline
    samples_sent: int
    samples_received: int
    tally: Tally
    writes: AuditWrites
    audit: ChainReport
    reasons: Counter[str]
    lab: Lab = Lab()

    @property
    def disagreements(self) -> list[str]:
        t = self.tally
        failed = sum(n for k, n in t.writes.items() if k != "ok")
        return self.writes.agree(t.ok_by_loop, failed, t.writes_after_restart)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def lines(f: Figures) -> list[str]:
    """The summary as stable `summary: ...` lines (parsed by the system test)."""
    c, b, w = f.compared, f.baseline, f.writes
    a, o, s = c.agent, c.base, c.saving
    refused = " ".join(f"{gate}={n}" for gate, n in sorted(f.tally.refusals.items())) or "none=0"
    saving = (f"summary: saving counted=true kg_per_t={s.co2_kg_t:.2f} pct={100 * s.co2_pct:.2f} "
              f"cf_points={s.cf_points:.2f}" if s.counts else
              f"summary: saving counted=false kg_per_t=none reason={_reason(c)}")  # fmt: skip
    return [
        f"summary: plant_hours={f.plant_hours:.2f} product_id={b.product_id} "
        f"lower_mpa={a.lower_mpa:g}",
        f"summary: baseline kind=operator recipe_limestone={b.limestone:.2f} "
        f"recipe_separator={b.separator:.1f} expected_s28={b.expected_s28:.2f} "
        f"corrections={b.corrections}",
        f"summary: conformity basis=true_s28_hourly n={a.n} agent_share={a.share_ok:.3f} "
        f"baseline_share={o.share_ok:.3f} agent_min={a.minimum:.2f} baseline_min={o.minimum:.2f}"
        f" agent_mean={a.mean:.2f} baseline_mean={o.mean:.2f}",
        f"summary: co2_per_t agent={a.co2_t:.2f} baseline={o.co2_t:.2f}",
        f"summary: co2_sources agent_cf={a.clinker_factor:.4f} baseline_cf={o.clinker_factor:.4f}"
        f" agent_limestone={c.agent_limestone:.2f} baseline_limestone={c.base_limestone:.2f}"
        f" agent_kwh_t={a.kwh_t:.2f} baseline_kwh_t={o.kwh_t:.2f}",
        saving,
        f"summary: samples sent={f.samples_sent} received={f.samples_received} "
        f"lost={f.samples_sent - f.samples_received}",
        f"summary: writes ok={sum(w.ok.values())} failed={sum(w.failed.values())} "
        f"after_restart={w.ok_after_restart} setpoint_write_records="
        f"{sum(w.setpoint_write.values())} cut_short={sum(w.cut_short.values())} "
        f"counters_agree={str(not f.disagreements).lower()}",
        *(f"summary: writes_{loop} ok={w.ok[loop]} failed={w.failed[loop]} setpoint_write_records"
          f"={n} cut_short={w.cut_short[loop]}" for loop, n in sorted(w.setpoint_write.items())),
        f"summary: refused {refused}",
        f"summary: audit chain_ok={str(f.audit.ok).lower()} records={f.audit.records}",
        f"summary: lab unmatched={f.lab.unmatched} stepped_down={len(f.lab.stepped_down)}",
        *(_lab_line(r) for r in f.lab.reports),
    ]  # fmt: skip


def _reason(c: Comparison) -> str:
    """Why the rule refused a saving, as one token (the order of its checks)."""
    if c.agent.n == 0 or c.base.n == 0:
        return "no_results"
    if c.agent.share_ok < c.base.share_ok:
        return "conformity_worse"
    return "agent_below_lower_limit"


def _lab_line(r: LoopQualityReport) -> str:
    tests = " ".join(
        f"{t.test}_n={t.n} {t.test}_bias={t.bias:.3g} {t.test}_declared_rmse="
        + ("none" if t.declared_rmse is None else f"{t.declared_rmse:.3g}")
        for t in r.tests
        if t.n
    )
    return (f"summary: lab_{r.loop} matched={r.results_matched} "
            f"step_down={'yes' if r.step_down else 'no'} {tests}").rstrip()  # fmt: skip


def _lab_story(lab: Lab) -> str:
    matched = ", ".join(f"{r.loop} {r.results_matched}" for r in lab.reports) or "no loop"
    first = next((r for r in lab.reports if r.results_matched), None)
    judged = "" if first is None else f"; {first.loop}'s model against them: " + ", ".join(
        f"{t.test} bias {t.bias:+.3g} {lab.units.get(t.test, '')} over {t.n}".replace("  ", " ")
        + ("" if t.declared_rmse is None else f" (declared RMSE {t.declared_rmse:.3g})")
        for t in first.tests if t.n
    )  # fmt: skip
    down = "; ".join(f"{r.loop} STEPPED DOWN: {r.step_down.reason}" for r in lab.reports
                     if r.step_down is not None) or "no loop stepped down"  # fmt: skip
    return (
        f"  Lab results matched to the loops' predictions (the truth loop): {matched}"
        f"{judged}; {lab.unmatched} with no prediction in their window; {down}."
    )


def _writes_story(f: Figures) -> str:
    w = f.writes
    cut = sum(w.cut_short.values())
    agree = ("the loops' counters agree" if not f.disagreements
             else "the loops' counters DISAGREE: " + "; ".join(f.disagreements))  # fmt: skip
    return (
        f"  Setpoint writes: {sum(w.ok.values())} made and read back ({w.ok_after_restart} "
        f"after the restart), {sum(w.failed.values())} failed; the audit holds "
        f"{sum(w.setpoint_write.values())} setpoint_write records"
        + (f" ({cut} cut short by a stop before the read-back)" if cut else "")
        + f"; {agree}."
    )


def story(f: Figures) -> list[str]:
    """The same figures in words, for the terminal."""
    c, b = f.compared, f.baseline
    a, o = c.agent, c.base
    corrected = (f"{b.corrections} correction(s) after 2-day results" if b.corrections else
                 "no 2-day result arrived in time for a correction")  # fmt: skip
    verdict = f"  No CO2 saving is claimed: {c.saving.why.removeprefix('no saving claimed: ')}."
    if c.saving.counts:
        kg, pct, points = c.saving.co2_kg_t, 100 * c.saving.co2_pct, c.saving.cf_points
        verdict = ("  At equal conformity the agent " + (
            f"saves {kg:.1f} kg CO2/t ({pct:.2f} %) against" if kg >= 0 else
            f"emits {-kg:.1f} kg CO2/t more ({-pct:.2f} %) than") + " the operator baseline; "
            f"its clinker factor is {abs(points):.2f} %-points "
            f"{'below' if points >= 0 else 'above'} the baseline's.")  # fmt: skip
    return [
        f"Over {f.plant_hours:.1f} plant hours, against the operator baseline (plant-model 4.5: "
        f"the same mill, seed and plant events, run by its operators instead of the agent: "
        f"their recipe limestone {b.limestone:.1f} %, separator {b.separator:.0f} rpm, expected "
        f"28-day mean {b.expected_s28:.1f} MPa; {corrected}):",
        f"  Conformity, judged on {BASIS}: at or above {a.lower_mpa:g} MPa in "
        f"{_pct(a.share_ok)} of {a.n} hours with the agent (lowest {a.minimum:.1f}, mean "
        f"{a.mean:.1f} MPa), {_pct(o.share_ok)} with the operators (lowest {o.minimum:.1f}, "
        f"mean {o.mean:.1f} MPa).",
        f"  CO2: {a.co2_t:.1f} kg/t with the agent (clinker factor {a.clinker_factor:.3f}, "
        f"limestone {c.agent_limestone:.2f} %, {a.kwh_t:.1f} kWh/t), {o.co2_t:.1f} kg/t with "
        f"the operators ({o.clinker_factor:.3f}, {c.base_limestone:.2f} %, {o.kwh_t:.1f} kWh/t).",
        verdict,
        f"  Samples buffered by the agent: {f.samples_sent:,}; stored by the cloud: "
        f"{f.samples_received:,} (lost: {f.samples_sent - f.samples_received}).",
        _writes_story(f),
        "  Refused by the gates and the guard: "
        + (", ".join(f"{g} {n}" for g, n in f.tally.refusals.most_common()) or "none")
        + ".",
        "  Why cycles did not write (from the audit log): "
        + "; ".join(f"{n} x {r}" for r, n in f.reasons.most_common(5)),
        f"  Audit log: {f.audit.records} hash-chained records, chain "
        + ("intact." if f.audit.ok else f"BROKEN: {f.audit.problem}"),
        _lab_story(f.lab),
    ]
