"""`edge-agent quality status|restore|promote`: the model monitoring of a running agent and the
operator's two actions on it (step a loop back up after a step-down, promote a challenger).

Owns: the exit codes (78: the configuration names no usable address, 1: nobody answers there
or the agent refused the action, with its reason).
Must not: render or request anything itself (agent.api.quality_client and quality_view do).
Invariants: a refusal or an absent agent is one line on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EX_CONFIG


def handle(args: argparse.Namespace) -> int:
    from agent.api import quality_client, status_view

    try:
        url = args.url or status_view.url_from_config(args.config)
        if args.quality_command == "status":
            return quality_client.run_quality_status(url, args.loop)
        if args.quality_command == "restore":
            line = quality_client.restore(
                url, args.loop, operator=args.operator, reason=args.reason
            )
        else:
            line = quality_client.promote(
                url, args.loop, args.version, operator=args.operator, reason=args.reason
            )
    except status_view.StatusConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (status_view.StatusUnavailableError, quality_client.QualityActionError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(line)
    return 0
