"""The demo's chart: strength, separator speed and limestone share over the story, as a PNG.

Owns: drawing the agent's run against the operator baseline's (agent.demo.baseline;
matplotlib, Agg backend: no display needed) with the story's phases and the product's lower
limit marked, and writing the file.
Must not: compute figures (agent.demo.summary) or touch the plant or the agent; import
matplotlib at its top.
Invariants: matplotlib is the `demo` extra, not a dependency of the agent: the plant install
(the offline bundle) has none, and there `draw` raises ChartUnavailableError, which says
how to get the chart, instead of failing the demo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from agent.demo.evaluate.operator import Recipe
from agent.demo.stage import S28_TARGET_MPA, TruthRow
from agent.domain.errors import RejectedError

# Never a `pip install` of our own name: the package is not on PyPI, and that name there
# could be anyone's (dependency confusion). The source checkout's ./run installs the extra.
INSTALL_HINT = (
    "the chart needs matplotlib, which the plant install leaves out: "
    "run ./run demo from a source checkout to get it"
)

MARKS = {
    "remote_granted": "remote granted",
    "clinker_drop": "weak clinker",
    "cloud_outage": "cloud outage",
    "cloud_back": "cloud back",
    "agent_stopped": "agent stops",
    "remote_regranted": "remote again",
}


class ChartUnavailableError(RejectedError):
    """matplotlib cannot be imported here: the demo runs on, without its chart."""


def draw(
    path: Path,
    main: Sequence[TruthRow],
    base: Sequence[TruthRow],
    phases: Sequence[tuple[str, float]],
    recipe: Recipe,
) -> Path:
    """Write the PNG to `path` (folders created); returns the path. ChartUnavailableError
    when matplotlib (or a library of its own) is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartUnavailableError(f"{exc.name or exc} is not installed; {INSTALL_HINT}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    hours = [r.plant_s / 3600.0 for r in main]
    fig, (ax_s, ax_n, ax_ls) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    try:
        ax_s.plot(hours, [r.s28 for r in main], color="tab:blue", label="true S28, agent")
        ax_s.plot([r.plant_s / 3600.0 for r in base], [r.s28 for r in base], color="tab:gray",
                  ls="--", label="true S28, operator baseline")  # fmt: skip
        predicted = [math.nan if r.predicted_s28 is None else r.predicted_s28 for r in main]
        ax_s.plot(hours, predicted, color="tab:orange", lw=0.8, alpha=0.8,
                  label="agent's prediction (gaps: no prediction)")  # fmt: skip
        ax_s.axhline(S28_TARGET_MPA, color="tab:red", lw=1,
                     label=f"loop's target {S28_TARGET_MPA} MPa")  # fmt: skip
        ax_s.axhline(recipe.s28_lower_mpa, color="black", lw=1, ls=":",
                     label=f"lower limit {recipe.s28_lower_mpa:g} MPa")  # fmt: skip
        ax_s.set_ylabel("28-day strength, MPa")
        base_hours = [r.plant_s / 3600.0 for r in base]
        ax_n.plot(hours, [r.separator for r in main], color="tab:blue", label="agent")
        ax_n.plot(base_hours, [r.separator for r in base], color="tab:gray", ls="--",
                  label="operator baseline")  # fmt: skip
        ax_n.set_ylabel("separator speed, rpm")
        ax_ls.plot(hours, [r.limestone for r in main], color="tab:green", label="agent")
        ax_ls.plot(base_hours, [r.limestone for r in base], color="tab:gray", ls="--",
                   label="operator baseline")  # fmt: skip
        ax_ls.set_ylabel("limestone share, %")
        ax_ls.set_xlabel("plant time, hours")
        for ax in (ax_s, ax_n, ax_ls):
            for key, plant_s in phases:
                if key in MARKS:
                    ax.axvline(plant_s / 3600.0, color="black", lw=0.6, alpha=0.4)
            ax.legend(loc="lower left", fontsize=8)
            ax.grid(alpha=0.3)
        for key, plant_s in phases:
            if key in MARKS:
                where = (plant_s / 3600.0, 1.0)
                ax_s.annotate(MARKS[key], where, xycoords=("data", "axes fraction"),
                              rotation=90, va="top", ha="right", fontsize=7)  # fmt: skip
        fig.suptitle(f"edge-agent demo: the agent against the operator baseline (plant-model 4.5), "
                     f"{recipe.name}")  # fmt: skip
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
