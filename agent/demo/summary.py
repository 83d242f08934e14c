"""The demo's figures: the loop's run against the same plant with the loop off.

Owns: the loop-off counterfactual (a second Mill with the same seed and settings, the same
plant events at the same plant times, no agent, stepped headless over the same plant span)
and the figures of the summary: CO2 per tonne of both runs (feed-weighted, from the hidden
truth: clinker factor x 830 + kWh/t x 0.4), the share of time the true 28-day strength was
at or above target, samples the agent buffered against samples the receiver stored,
writes made and refused by reason, and the truth loop's standing at the end (lab results
matched per loop, the model's bias against them beside its declared RMSE, step-downs: the
agent's own reports, as its /status shows them); their stable plain-text lines (`summary: ...`).
Must not: touch the running plant or the agent; draw anything beyond text lines.
Invariants: the counterfactual draws the same random numbers as the main run (the mill's
draws depend on the tick count only), so the difference between the runs is the agent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.control.audit_chain import ChainReport
from agent.demo.mill import Mill
from agent.demo.stage import S28_TARGET_MPA, Tally, TruthRow, co2_per_t
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
class Figures:
    plant_hours: float
    co2_loop: float
    co2_off: float
    above_loop: float
    above_off: float
    min_s28_loop: float
    min_s28_off: float
    samples_sent: int
    samples_received: int
    writes: Counter[str]
    refusals: Counter[str]
    writes_after_restart: int
    audit: ChainReport
    reasons: Counter[str]
    lab: Lab = Lab()

    @property
    def saving(self) -> float:
        return self.co2_off - self.co2_loop


def loop_off(
    *,
    seed: int,
    start_time: float,
    rows: Sequence[TruthRow],
    events: Sequence[tuple[float, str, dict[str, float]]],
    lab_time_scale: float,
    wd_timeout_s: float,
) -> list[TruthRow]:
    """The same plant over the same plant times with nobody writing its setpoints."""
    mill = Mill(seed, lab_time_scale=lab_time_scale, wd_timeout_s=wd_timeout_s, dt=0.1,
                noise=True, lab_noise=False)  # fmt: skip
    todo = sorted(events)
    out = []
    for row in rows:
        target = start_time + row.plant_s
        while todo and start_time + todo[0][0] <= target:
            at, kind, params = todo.pop(0)
            mill.step(max(0, round((start_time + at - mill.time) / mill.dt)))
            mill.inject(kind, None, **params)
        mill.step(max(0, round((target - mill.time) / mill.dt)))
        t = mill.truth()
        out.append(TruthRow(row.plant_s, t["S28"], t["S_clk"], t["n"], t["LS"], t["CF"],
                            t["e_ss"], t["F_m"], None))  # fmt: skip
    return out


def _co2(rows: Sequence[TruthRow]) -> float:
    tonnes = sum(r.feed for r in rows)
    return sum(co2_per_t(r.cf, r.spec_energy) * r.feed for r in rows) / max(tonnes, 1e-9)


def _above(rows: Sequence[TruthRow]) -> float:
    return sum(r.s28 >= S28_TARGET_MPA for r in rows) / max(len(rows), 1)


def figures(
    main: Sequence[TruthRow],
    off: Sequence[TruthRow],
    tally: Tally,
    received: int,
    audit: tuple[ChainReport, Counter[str]],
    *,
    lab: Lab = Lab(),
) -> Figures:
    """The summary's figures; `main` and `off` are sampled at the same plant times."""
    return Figures(
        plant_hours=(main[-1].plant_s - main[0].plant_s) / 3600.0 if main else 0.0,
        co2_loop=_co2(main),
        co2_off=_co2(off),
        above_loop=_above(main),
        above_off=_above(off),
        min_s28_loop=min((r.s28 for r in main), default=float("nan")),
        min_s28_off=min((r.s28 for r in off), default=float("nan")),
        samples_sent=tally.samples_buffered,
        samples_received=received,
        writes=tally.writes,
        refusals=tally.refusals,
        writes_after_restart=tally.writes_after_restart,
        audit=audit[0],
        reasons=audit[1],
        lab=lab,
    )


def lines(f: Figures) -> list[str]:
    """The summary as stable `summary: ...` lines (parsed by the system test)."""
    failed = sum(n for k, n in f.writes.items() if k != "ok")
    refused = " ".join(f"{gate}={n}" for gate, n in sorted(f.refusals.items())) or "none=0"
    return [
        f"summary: plant_hours={f.plant_hours:.2f} target_mpa={S28_TARGET_MPA}",
        f"summary: co2_per_t loop={f.co2_loop:.2f} off={f.co2_off:.2f} "
        f"saving={f.saving:.2f} saving_pct={100 * f.saving / f.co2_off:.2f}",
        f"summary: s28_above_target loop={f.above_loop:.3f} off={f.above_off:.3f}",
        f"summary: s28_min loop={f.min_s28_loop:.2f} off={f.min_s28_off:.2f}",
        f"summary: samples sent={f.samples_sent} received={f.samples_received} "
        f"lost={f.samples_sent - f.samples_received}",
        f"summary: writes ok={f.writes['ok']} failed={failed} "
        f"after_restart={f.writes_after_restart}",
        f"summary: refused {refused}",
        f"summary: audit chain_ok={str(f.audit.ok).lower()} records={f.audit.records}",
        f"summary: lab unmatched={f.lab.unmatched} stepped_down={len(f.lab.stepped_down)}",
        *(_lab_line(r) for r in f.lab.reports),
    ]


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


def story(f: Figures) -> list[str]:
    """The same figures in words, for the terminal."""
    return [
        f"Over {f.plant_hours:.1f} plant hours, against the same plant with the loop off:",
        f"  CO2: {f.co2_loop:.1f} kg/t with the loop, {f.co2_off:.1f} kg/t without: "
        f"{f.saving:.1f} kg CO2 saved per tonne of cement ({100 * f.saving / f.co2_off:.2f} %).",
        f"  True 28-day strength at or above {S28_TARGET_MPA} MPa: {100 * f.above_loop:.0f} % "
        f"of the time with the loop, {100 * f.above_off:.0f} % without (lowest "
        f"{f.min_s28_loop:.1f} vs {f.min_s28_off:.1f} MPa).",
        f"  Samples buffered by the agent: {f.samples_sent:,}; stored by the cloud: "
        f"{f.samples_received:,} (lost: {f.samples_sent - f.samples_received}).",
        f"  Setpoint writes: {f.writes['ok']} made and read back "
        f"({f.writes_after_restart} after the restart); refused by the gates and the guard: "
        + (", ".join(f"{g} {n}" for g, n in f.refusals.most_common()) or "none")
        + ".",
        "  Why cycles did not write (from the audit log): "
        + "; ".join(f"{n} x {r}" for r, n in f.reasons.most_common(5)),
        f"  Audit log: {f.audit.records} hash-chained records, chain "
        + ("intact." if f.audit.ok else f"BROKEN: {f.audit.problem}"),
        _lab_story(f.lab),
    ]
