"""`edge-agent cloud`: the reference cloud receiver (the sync API), for tests and the demo.

Owns: reading the token file and serving until Ctrl-C or SIGTERM (both a clean exit 0).
Must not: be imported by the daemon (it loads agent.demo).
Invariants: a stop request (Ctrl-C, SIGTERM) ends it with exit 0, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib

from agent.cli.common import configure_logging, stop_on_signals


def handle(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from agent.demo.cloud import serve_cloud

    configure_logging("info")
    token = None
    if args.token_file is not None:
        token = SecretStr(args.token_file.read_text(encoding="utf-8").strip())
    stop_on_signals()  # SIGTERM and SIGINT (even one ignored by whoever started us)
    with contextlib.suppress(KeyboardInterrupt):  # a requested stop is a clean exit
        serve_cloud(
            host=args.host,
            port=args.port,
            data_dir=args.data,
            token=token,
            models_dir=args.models,
        )
    return 0
