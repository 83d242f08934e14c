"""`edge-agent check`: validate a configuration and the model packages its loops would run.

Owns: printing the loop-model report (errors, then warnings) and the one-line OK summary.
Must not: start anything, or decide what a problem is (agent.config, agent.control.model_checks).
Invariants: exit 0 when the agent would start with this configuration (warnings allowed),
78 with every error printed otherwise.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EX_CONFIG, load_or_exit


def handle(args: argparse.Namespace) -> int:
    from agent.control.model_checks import check_loop_models

    loaded = load_or_exit(args.config)
    s = loaded.settings
    report = check_loop_models(loaded)  # the loops against the model packages they name
    for problem in report.errors:
        print(problem.render(), file=sys.stderr)
    for problem in report.warnings:
        print(f"warning: {problem.render()}", file=sys.stderr)
    if report.errors:
        count = len(report.errors)
        print(f"edge-agent: {count} configuration problem{'s' * (count != 1)} in "
              f"{args.config}", file=sys.stderr)  # fmt: skip
        return EX_CONFIG
    warned = len(report.warnings)
    print(
        f"{args.config}: OK: agent '{s.agent.id}', {len(s.sources)} sources, "
        f"{len(s.tags)} tags, {len(s.loops)} loops, sync "
        f"{'to ' + str(s.sync.url) if s.sync.enabled else 'off'}"
        + (f" ({warned} warning{'s' * (warned != 1)})" if warned else "")
    )
    return 0
