"""`edge-agent evaluate`: the agent against the plant's operators on the simulated mill.

Owns: handing the options to agent.demo.evaluate.main (plain lines unless stdout is a terminal).
Must not: be imported by the daemon (it loads agent.demo). Without the `demo` extra
(matplotlib) the evaluation still runs and reports; its charts line says how to get them.
Invariants: the exit code is agent.demo.evaluate.main.run_evaluate's, unchanged.
"""

from __future__ import annotations

import argparse
import sys


def handle(args: argparse.Namespace) -> int:
    from agent.demo.evaluate.main import run_evaluate

    return run_evaluate(
        days=args.days,
        seed=args.seed,
        out=args.out,
        scenario=args.scenario,
        plain=args.plain or not sys.stdout.isatty(),
    )
