"""`edge-agent demo`: the simulated plant and the agent together, telling the whole story.

Owns: handing the options to agent.demo.show (plain lines unless stdout is a terminal).
Must not: be imported by the daemon (it loads agent.demo). Without the `demo` extra
(matplotlib) the demo still runs and its `chart:` line says the chart needs matplotlib and
that `./run demo` in a source checkout gets it (agent.demo.chart).
Invariants: the exit code is agent.demo.show.run_demo's, unchanged.
"""

from __future__ import annotations

import argparse
import sys


def handle(args: argparse.Namespace) -> int:
    from agent.demo.show import run_demo

    return run_demo(
        duration_s=args.duration,
        seed=args.seed,
        opcua_port=args.opcua_port,
        modbus_port=args.modbus_port,
        plain=args.plain or not sys.stdout.isatty(),
    )
