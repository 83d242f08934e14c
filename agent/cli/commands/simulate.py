"""`edge-agent simulate`: serve the simulated cement mill (OPC UA and Modbus TCP).

Owns: the optional secured OPC UA endpoint's credentials, the optional LIMS export folder
(`--lab-csv`: created if missing; a folder that cannot be made is exit 78 with the reason),
and serving until Ctrl-C or SIGTERM (both a clean exit 0).
Must not: be imported by the daemon (it loads agent.demo). The option rules ("--secure-dir
needs --password-file", a known --lab-csv-timezone) are the parser's
(agent.cli.parser.check_options).
Invariants: a stop request (Ctrl-C, SIGTERM) ends it with exit 0, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from agent.cli.common import EX_CONFIG, configure_logging, stop_on_signals


def handle(args: argparse.Namespace) -> int:
    import asyncio

    from agent.demo.certs import OpcUaSecurity
    from agent.demo.runner import run_simulator

    configure_logging("info")
    stop_on_signals()  # SIGTERM and SIGINT (even one ignored by whoever started us)
    security = None
    if args.secure_dir is not None:
        password = args.password_file.read_text(encoding="utf-8").strip()
        security = OpcUaSecurity(cert_dir=args.secure_dir, users={args.user: password})
    if args.lab_csv is not None:
        try:
            args.lab_csv.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"edge-agent: --lab-csv {args.lab_csv}: expected a folder it can write, "
                f"found {exc.strerror or exc}; nothing was started",
                file=sys.stderr,
            )
            return EX_CONFIG
    with contextlib.suppress(KeyboardInterrupt):  # a requested stop is a clean exit
        asyncio.run(
            run_simulator(
                security=security,
                host=args.host,
                opcua_port=args.opcua_port,
                modbus_port=args.modbus_port,
                seed=args.seed,
                time_scale=args.time_scale,
                lab_time_scale=args.lab_time_scale,
                lab_csv=args.lab_csv,
                lab_csv_timezone=args.lab_csv_timezone,
            )
        )
    return 0
