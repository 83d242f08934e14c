"""Issue 15: `edge-agent evaluate` as a subprocess, short (2.5 plant days: the default campaign's
first product change, to CEM I 42.5 R, is at day 2): it writes its report with a table per
product ground and one over all products and, for each, either the saving at equal conformity
or the line that says why none is claimed, and the goal met or not; the same lines are
printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import clean_env

pytestmark = pytest.mark.timeout(300)

AGENT = [sys.executable, "-m", "agent"]
HEADER = ("| run | 28-day results | >= lower limit | minimum MPa | mean MPa | sd MPa | "
          "clinker factor | kg CO2/t | kWh/t |")  # fmt: skip


def test_a_short_evaluation_reports_the_table_and_the_saving_or_its_refusal(tmp_path: Path) -> None:
    out = tmp_path / "evaluate"
    done = subprocess.run([*AGENT, "evaluate", "--days", "2.5", "--seed", "1", "--out", str(out)],
                          env=clean_env(), capture_output=True, text=True, timeout=280,
                          check=False)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    lines = report.splitlines()
    printed = done.stdout.splitlines()
    titles = [line for line in lines if line.startswith(("CEM ", "all products ("))]
    assert [t.split(" (")[0] for t in titles] == ["CEM I 42.5 R", "CEM II/A-LL 42.5 R",
                                                  "all products"]  # fmt: skip
    # 4-hourly composites: 2 days of product 2, then 12 h of product 1 (its transition aside)
    for title, n in zip(titles, (3, 12, 15), strict=True):
        at = lines.index(title)
        assert lines[at + 2] == HEADER
        baseline, agent = lines[at + 4], lines[at + 5]
        assert baseline.startswith(f"| baseline (operators) | {n} | ")
        assert agent.startswith(f"| agent | {n} | ")
        saving, goal = lines[at + 8], lines[at + 9]
        assert saving.startswith(("saving: at equal conformity: ", "saving: no saving claimed: "))
        assert goal.startswith(("goal: met: ", "goal: not met: "))
        for line in (title, HEADER, baseline, agent, saving, goal):
            assert line in printed
    assert "the agent has no result below the limit or its minimum is at least the baseline's" \
        in report  # the equal-conformity rule, stated  # fmt: skip
    assert "not entered yet" in report  # 28-day results counted before their test date
    for line in (HEADER, baseline, agent, saving, goal):
        assert line in done.stdout.splitlines()
    assert f"report: {out / 'report.md'}" in printed
    assert (out / "evaluate.log").stat().st_size > 0
    charts = [line[2:].split("](")[0] for line in lines if line.startswith("![")]
    assert all((out / name).stat().st_size > 0 for name in charts)
    assert charts or "Charts not drawn: " in report
