"""`edge-agent read [TAG...]`: read configured tags once and print a table (commissioning).

Owns: the table (value, unit, quality per tag) and the exit code: 0 only when every asked
tag has a Good value, else 1 with each problem on its own line.
Must not: write anything to a PLC, or start the agent.
Invariants: every tag asked for gets a row or a problem line naming it or its source: none
is left out silently.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import configure_logging, load_or_exit


def handle(args: argparse.Namespace) -> int:
    import asyncio

    from agent.commission import commands as commission

    configure_logging("warning", stream=sys.stderr)
    loaded = load_or_exit(args.config)
    try:
        samples, errors = asyncio.run(commission.read_tags(loaded, args.tags))
    except commission.CommissionError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    units = {tag.name: tag.unit for tag in loaded.settings.tags}
    if samples:
        print(commission.render_samples(samples, units))
    not_good = commission.not_good(samples)
    problems = errors if not_good is None else [not_good, *errors]
    for problem in problems:
        print(f"edge-agent: {problem}", file=sys.stderr)
    return 1 if problems else 0  # 1 unless every asked tag has a Good value
