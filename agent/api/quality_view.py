"""The truth loop, readably: each loop's model against the lab as `edge-agent status` and
`edge-agent quality status` print it, from the /status document (agent.api.quality_status).

Owns: the quality section of `edge-agent status` (``render_quality``: per loop its model and
product, a step-down in a line of its own with the command that steps back up, per test "bias
-1.31 MPa (raw -1.31), RMSE 1.02 vs declared 0.91 (1.12x), 7 results", the correction in force
beside the raw prediction, the challenger's figures) and the comparison of
`edge-agent quality status` (``render_comparison``: active against challenger, test by test).
Must not: ask the agent anything (agent.api.quality_client does), import the daemon's
components, or judge a figure (the document carries the verdicts).
Invariants: a document without "quality" (an agent without a truth loop, an older agent) prints
nothing here; a figure that is None prints "-"; plain text (no colour, no box drawing) when
``plain``; names and reasons are printed as data, never as rich markup.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "UNITS",
    "correction_line",
    "health_line",
    "quality_loops",
    "render_comparison",
    "render_quality",
]

UNITS = {"s1": "MPa", "s2": "MPa", "s7": "MPa", "s28": "MPa", "blaine": "cm2/g",
         "residue45": "%", "so3": "%"}  # fmt: skip
"""The unit of each test (plant-model 4.2); a test not named here is shown without one."""


def quality_loops(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The loops of a status document that carry truth-loop figures."""
    return [lp for lp in doc.get("loops") or [] if isinstance(lp.get("quality"), dict)]


def _num(value: Any, signed: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _unit(test: str) -> str:
    unit = UNITS.get(test)
    return f" {unit}" if unit else ""


def _when(since: Any, now: Any) -> str:
    if not isinstance(since, (int, float)):
        return "?"
    stamp = dt.datetime.fromtimestamp(since, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(now, (int, float)) and now >= since:
        hours, minutes = divmod(int(now - since) // 60, 60)
        stamp += f" ({hours} h {minutes} min ago)" if hours else f" ({minutes} min ago)"
    return stamp


def health_line(test: str, t: dict[str, Any]) -> str:
    """One test's figures: bias as used and raw, RMSE against the declared, results."""
    n = t.get("n") or 0
    declared = f"declared {_num(t.get('declared_rmse'))}"
    if not n:
        return f"no results matched yet ({declared})"
    ratio = t.get("rmse_ratio")
    share = f" ({ratio:.2f}x)" if isinstance(ratio, (int, float)) else ""
    line = (f"bias {_num(t.get('bias'), True)}{_unit(test)} (raw {_num(t.get('raw_bias'), True)}), "
            f"RMSE {_num(t.get('rmse'))} vs {declared}{share}, "
            f"{n} result{'s' * (n != 1)}")  # fmt: skip
    return line + ("  DEGRADED" if t.get("degraded") else "")


def correction_line(offsets: dict[str, Any]) -> str:
    """The offsets in force, as added to the raw prediction."""
    if not offsets:
        return "none (predictions are used raw)"
    parts = [f"{out} {_num(value, True)}{_unit(out)}" for out, value in offsets.items()]
    return ", ".join(parts) + " added to the raw prediction (raw and corrected both recorded)"


class _Lines:
    def __init__(self, console: Console, plain: bool) -> None:
        self.console, self.plain = console, plain

    def line(self, label: str, value: str, style: str = "", indent: int = 2) -> None:
        text = Text(" " * indent + f"{label:<{18 - indent}}")
        text.append(value, style="" if self.plain else style)
        self.console.print(text)


def _head(out: _Lines, lp: dict[str, Any], now: Any) -> None:
    q = lp["quality"]
    mode, effective = lp.get("mode"), lp.get("effective_mode", lp.get("mode"))
    in_effect = f", in effect {str(effective).upper()}" if effective != mode else ""
    out.line(str(lp.get("name")), f"{mode}{in_effect}; model {q.get('model')} {q.get('version')}, "
             f"product {q.get('product')}", "bold red" if in_effect else "")  # fmt: skip
    step = q.get("step_down")
    if step:
        out.line("STEPPED DOWN", f"to advisory since {_when(step.get('since'), now)}: "
                 f"{step.get('reason')}", "bold red", indent=4)  # fmt: skip
        out.line("step up", f"edge-agent quality restore {lp.get('name')} --operator NAME "
                 "--reason TEXT", "bold", indent=4)  # fmt: skip


def render_quality(doc: dict[str, Any], console: Console, *, plain: bool) -> None:
    """The quality section of `edge-agent status` (nothing without truth-loop figures)."""
    loops = quality_loops(doc)
    if not loops:
        return
    out, now = _Lines(console, plain), (doc.get("agent") or {}).get("time")
    console.print()
    console.print(Text("model quality (against the lab)", style="" if plain else "bold"))
    for lp in loops:
        q = lp["quality"]
        _head(out, lp, now)
        step_reason = (q.get("step_down") or {}).get("reason")
        for test, t in (q.get("tests") or {}).items():
            out.line(test, health_line(test, t), "red" if t.get("degraded") else "", indent=4)
            if t.get("degraded") and t.get("reason") != step_reason:
                out.line("why", str(t.get("reason")), "red", indent=6)
        out.line("correction", correction_line(q.get("offsets") or {}), indent=4)
        out.line("matched", f"{q.get('results_matched')} results, "
                 f"{q.get('predictions_kept')} predictions kept", indent=4)  # fmt: skip
        challenger = q.get("challenger")
        if challenger:
            out.line("challenger", f"{challenger.get('model')} {challenger.get('version')} "
                     "(shadow)", indent=4)  # fmt: skip
            for test, t in (challenger.get("tests") or {}).items():
                out.line(test, health_line(test, t), indent=6)


def _cells(t: dict[str, Any] | None) -> list[str]:
    if not t or not t.get("n"):
        return ["-", "-", "-", "0"]
    ratio = t.get("rmse_ratio")
    share = f"{ratio:.2f}x" if isinstance(ratio, (int, float)) else "-"
    bias = f"{_num(t.get('bias'), True)} ({_num(t.get('raw_bias'), True)})"
    flag = " DEGRADED" if t.get("degraded") else ""
    return [bias, _num(t.get("rmse")), share + flag, str(t.get("n") or 0)]


def render_comparison(lp: dict[str, Any], now: Any, console: Console, *, plain: bool) -> None:
    """`edge-agent quality status` for one loop: active against challenger, per test."""
    out, q = _Lines(console, plain), lp["quality"]
    _head(out, lp, now)
    challenger = q.get("challenger") or {}
    c_tests = challenger.get("tests") or {}
    active = f"active {q.get('version')}"
    other = f"challenger {challenger.get('version')}" if challenger else "no challenger"
    table = Table(box=None if plain else box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("test", "declared RMSE", f"{active}: bias (raw)", "RMSE", "ratio", "n",
                   f"{other}: bias (raw)", "RMSE", "ratio", "n"):  # fmt: skip
        table.add_column(column)
    for test in [*(q.get("tests") or {}), *[t for t in c_tests if t not in (q.get("tests") or {})]]:
        mine = (q.get("tests") or {}).get(test)
        declared = _num((mine or c_tests.get(test) or {}).get("declared_rmse"))
        table.add_row(f"{test}{_unit(test)}", declared, *_cells(mine), *_cells(c_tests.get(test)))
    console.print(table)
    out.line("correction", correction_line(q.get("offsets") or {}), indent=4)
    if challenger:
        command = f"edge-agent quality promote {lp.get('name')} {challenger.get('version')}"
        out.line("promote", f"{command} --operator NAME --reason TEXT", indent=4)
