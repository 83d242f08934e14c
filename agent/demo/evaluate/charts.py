"""The evaluation's charts: 28-day strength distributions with and without the loop per product,
and the clinker factor over time, as PNG files.

Owns: drawing (matplotlib, Agg backend: no display needed) and writing the files.
Must not: compute figures (agent.demo.evaluate.figures) or touch the plant or the agent; import
matplotlib at its top.
Invariants: matplotlib is the `demo` extra: without it `draw` raises
agent.demo.chart.ChartUnavailableError, which says how to get it, and the evaluation reports
without charts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from agent.demo.chart import INSTALL_HINT, ChartUnavailableError
from agent.demo.evaluate.figures import Row
from agent.demo.evaluate.report import Evaluation

__all__ = ["draw"]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def draw(folder: Path, ev: Evaluation) -> list[str]:
    """The PNG files in `folder`, by file name. ChartUnavailableError without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartUnavailableError(f"{exc.name or exc} is not installed; {INSTALL_HINT}") from None
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for p in ev.products:
        base = [r.value for r in ev.baseline.s28 if r.product == p.product]
        mine = [r.value for r in ev.agent.s28 if r.product == p.product]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        try:
            values = base + mine
            if values:
                lo, hi = min(*values, p.baseline.lower_mpa) - 1, max(values) + 1
                bins = [lo + i * (hi - lo) / 30 for i in range(31)]
                ax.hist(base, bins=bins, alpha=0.55, color="tab:gray",
                        label=f"baseline (operators), n={len(base)}")  # fmt: skip
                ax.hist(mine, bins=bins, alpha=0.55, color="tab:blue",
                        label=f"agent, n={len(mine)}")  # fmt: skip
            ax.axvline(p.baseline.lower_mpa, color="tab:red", lw=1.2,
                       label=f"lower limit {p.baseline.lower_mpa:g} MPa")  # fmt: skip
            ax.set_xlabel("28-day strength (4-hourly composites, as the lab reports), MPa")
            ax.set_ylabel("results")
            ax.set_title(f"{p.product}: 28-day strength with and without the loop")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            name = f"strength-{_slug(p.product)}.png"
            fig.savefig(folder / name, dpi=100)
            names.append(name)
        finally:
            plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    try:
        for run, color in ((ev.baseline, "tab:gray"), (ev.agent, "tab:blue")):
            days, cf = _hourly(run.rows, run.start)
            ax.plot(days, cf, color=color, lw=0.9, label=run.label)
        for t, what in ev.baseline.events:
            ax.axvline((t - ev.baseline.start) / 86400.0, color="black", lw=0.6, alpha=0.5)
            ax.annotate(what.split(" ")[0], ((t - ev.baseline.start) / 86400.0, 1.0),
                        xycoords=("data", "axes fraction"), rotation=90, va="top",
                        ha="right", fontsize=7)  # fmt: skip
        ax.set_xlabel("plant days")
        ax.set_ylabel("clinker factor (hourly mean)")
        ax.set_title("Clinker factor over time: operators alone and with the agent")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "clinker-factor.png", dpi=100)
        names.append("clinker-factor.png")
    finally:
        plt.close(fig)
    return names


def _hourly(rows: Sequence[Row], start: float) -> tuple[list[float], list[float]]:
    """Hourly means of the clinker factor (column 3) by plant day."""
    buckets: dict[int, list[float]] = {}
    for r in rows:
        t, cf = r[0], r[3]
        buckets.setdefault(int((t - start) // 3600.0), []).append(cf)
    hours = sorted(buckets)
    return [h / 24.0 for h in hours], [sum(buckets[h]) / len(buckets[h]) for h in hours]
