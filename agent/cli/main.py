"""The `edge-agent` command line: record stop signals, parse the arguments, run one handler.

Owns: the start-up order (agent.service.early_signals first, then the parser, then the one
command module that runs: agent.cli.commands.COMMANDS), and the exit codes every command
shares (130 Ctrl-C, 0 a closed pipe, 1 an OSError with its message; a command's own: 0 ok,
78 configuration error, 2 usage, 1 an expected failure).
Must not: contain a command's behaviour (each is one module in agent.cli.commands); import
the simulator (only the demo, simulate and cloud handlers do, when run).
Invariants: an expected failure prints a clear message and never a traceback; this module
imports only the standard library and agent.service.early_signals at its top, the parser
and a handler's module only after `early_signals.install()`, so that `main` records a
SIGTERM/SIGINT from its first line and `run` ends with exit 0 whenever the signal comes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from agent.service import early_signals

Handler = Callable[[argparse.Namespace], int]


def handler(command: str) -> Handler:
    """The `handle` function of the module that runs `command` (imported now)."""
    from agent.cli.commands import COMMANDS

    module = importlib.import_module(f"agent.cli.commands.{COMMANDS[command]}")
    handle: Handler = module.handle
    return handle


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    early_signals.install()  # first of all: a stop request from now on is an orderly exit
    from agent.cli.parser import build_parser, check_options

    parser = build_parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    try:
        if args.command != "run":  # only the agent stops on a recorded signal; others as usual
            early_signals.restore()  # (a Ctrl-C recorded so far is a KeyboardInterrupt now)
        return handler(args.command)(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `edge-agent browse ... | head`
        return 0
    except OSError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
