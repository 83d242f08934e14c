"""`edge-agent status`: print a running agent's status, asked over its local API.

Owns: the exit codes of asking (78: the configuration names no usable address, 1: nobody
answers there).
Must not: render the status itself (agent.api.status_view does).
Invariants: a configuration problem is exit 78 and an absent agent exit 1, never the reverse.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EX_CONFIG


def handle(args: argparse.Namespace) -> int:
    from agent.api import status_view

    try:
        return status_view.run_status(args.url or status_view.url_from_config(args.config))
    except status_view.StatusConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    except status_view.StatusUnavailableError as exc:  # nobody answering: not a config error
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
