"""`edge-agent opcua trust FILE`: trust a server certificate the agent rejected.

Owns: saying where the certificate went and that no restart is needed (exit 0), or why it
was not trusted (exit 1).
Must not: read secrets (the configuration is loaded without them), or restart anything.
Invariants: exit 0 only when the certificate now lies in the source's trusted directory.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import configure_logging, load_or_exit


def handle(args: argparse.Namespace) -> int:
    from agent.commission import commands as commission

    configure_logging("warning", stream=sys.stderr)
    loaded = load_or_exit(args.config, secrets=False)
    try:
        target = commission.trust(args.file, loaded, args.source)
    except commission.CommissionError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(f"trusted: {target} (the agent uses it from its next connection)")
    return 0
