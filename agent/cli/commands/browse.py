"""`edge-agent browse URL`: list an OPC UA server's address space (commissioning).

Owns: handing the options to agent.commission.commands and printing its tree (exit 0, or 1
with the reason when the server cannot be browsed).
Must not: need a configuration file (the server is named on the command line).
Invariants: it only reads the server (browse, no write); logs go to stderr, the tree to stdout.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import configure_logging


def handle(args: argparse.Namespace) -> int:
    import asyncio

    from agent.commission import commands as commission

    configure_logging("warning", stream=sys.stderr)
    try:
        text = asyncio.run(
            commission.browse_text(
                args.url,
                depth=args.depth,
                security=args.security,
                state_dir=args.state_dir,
                username=args.user,
                password=commission.read_password(args.password_file),
            )
        )
    except commission.CommissionError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0
