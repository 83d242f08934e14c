"""The `edge-agent` command line: parse arguments and hand over to the right module.

Owns: sub-commands, their options and exit codes (0 ok, 78 configuration error, 2 usage,
1 an unexpected failure), and rendering configuration problems for plant IT.
Must not: contain behaviour beyond dispatch; import the simulator unless a demo or
simulate command asks for it (the daemon never loads it).
Invariants: an expected failure prints a clear message and never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.configfile import LoadedConfig, load_config
from agent.errors import ConfigError
from agent.logs import configure_logging

EX_CONFIG = 78
DEFAULT_CONFIG = Path(os.environ.get("EDGE_AGENT_CONFIG", "/etc/edge-agent/agent.toml"))


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Plant edge agent: OPC UA / Modbus in, ONNX suggestions, safe setpoints, "
        "lossless cloud sync.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a configuration file and exit")
    _config_arg(check)

    run = commands.add_parser("run", help="run the agent (the systemd service runs this)")
    _config_arg(run)

    sim = commands.add_parser("simulate", help="serve the simulated cement mill (OPC UA, Modbus)")
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sim.add_argument("--opcua-port", type=int, default=4840, metavar="N")
    sim.add_argument("--modbus-port", type=int, default=5020, metavar="N")
    sim.add_argument("--seed", type=int, default=0, metavar="S")
    sim.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="process speed: X simulated seconds per wall-clock second",
    )
    sim.add_argument(
        "--lab-time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="divides the lab's publication delays (1440: 28 days in 28 min)",
    )
    sim.add_argument(
        "--secure-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve OPC UA with SignAndEncrypt only and username logins; the server "
        "certificate is created in (and reused from) DIR",
    )
    sim.add_argument(
        "--user",
        default="operator",
        metavar="NAME",
        help="with --secure-dir: the user name (default operator)",
    )
    sim.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --secure-dir: a file holding that user's password",
    )

    read = commands.add_parser("read", help="read configured tags once and print a table")
    _config_arg(read)
    read.add_argument("tags", nargs="*", metavar="TAG", help="tag names (default: all)")

    browse = commands.add_parser("browse", help="list an OPC UA server's address space")
    browse.add_argument("url", metavar="URL", help="endpoint, e.g. opc.tcp://10.0.0.5:4840")
    browse.add_argument("--depth", type=int, default=3, metavar="N")
    browse.add_argument(
        "--security",
        default="None",
        metavar="POLICY[,MODE]",
        help="None, or e.g. Basic256Sha256,SignAndEncrypt",
    )
    browse.add_argument("--user", default=None, metavar="NAME")
    browse.add_argument("--password-file", type=Path, default=None, metavar="FILE")
    browse.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/edge-agent"),
        metavar="DIR",
        help="where the agent's certificate and trust lists are",
    )

    opcua = commands.add_parser("opcua", help="OPC UA certificate trust")
    opcua_commands = opcua.add_subparsers(dest="opcua_command", required=True, metavar="ACTION")
    trust = opcua_commands.add_parser("trust", help="trust a rejected server certificate")
    trust.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="the certificate in STATE_DIR/pki/rejected/ named by the error",
    )
    trust.add_argument(
        "--source",
        default=None,
        metavar="NAME",
        help="the OPC UA source whose trust list to use (if they differ)",
    )
    _config_arg(trust)

    cloud = commands.add_parser("cloud", help="run the reference cloud receiver (sync API)")
    cloud.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    cloud.add_argument("--port", type=int, default=8800, metavar="N")
    cloud.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for the receiver's SQLite database",
    )
    cloud.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="require this bearer token from agents (default: no auth)",
    )

    demo = commands.add_parser("demo", help="the simulated plant and the agent, together")
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop by itself after S seconds (exit 0)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S")
    demo.add_argument("--time-scale", type=float, default=20.0, metavar="X")
    demo.add_argument("--opcua-port", type=int, default=4840, metavar="N")
    demo.add_argument("--modbus-port", type=int, default=5020, metavar="N")
    demo.add_argument(
        "--plain",
        action="store_true",
        help="plain line output even on a terminal (default when not a TTY)",
    )
    return parser


def _load_or_exit(path: Path) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        count = len(exc.problems)
        print(
            f"edge-agent: {count} configuration problem{'s' * (count != 1)} in {path}; "
            "nothing was started",
            file=sys.stderr,
        )
        raise SystemExit(EX_CONFIG) from None


def _check(args: argparse.Namespace) -> int:
    loaded = _load_or_exit(args.config)
    s = loaded.settings
    print(
        f"{args.config}: OK: agent '{s.agent.id}', {len(s.sources)} sources, "
        f"{len(s.tags)} tags, {len(s.loops)} loops, sync "
        f"{'to ' + str(s.sync.url) if s.sync.enabled else 'off'}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    loaded = _load_or_exit(args.config)
    from agent.app import StateDirError, run_agent

    try:
        return run_agent(loaded)
    except StateDirError as exc:
        print(exc.problem.render(), file=sys.stderr)
        return EX_CONFIG


def _commission(args: argparse.Namespace) -> int:
    from agent.shell import commission

    configure_logging("warning", stream=sys.stderr)
    try:
        if args.command == "browse":
            print(
                asyncio.run(
                    commission.browse_text(
                        args.url,
                        depth=args.depth,
                        security=args.security,
                        state_dir=args.state_dir,
                        username=args.user,
                        password=commission.read_password(args.password_file),
                    )
                )
            )
            return 0
        loaded = _load_or_exit(args.config)
        if args.command == "opcua":
            target = commission.trust(args.file, loaded, args.source)
            print(f"trusted: {target} (the agent uses it from its next connection)")
            return 0
        samples, errors = asyncio.run(commission.read_tags(loaded, args.tags))
    except commission.CommissionError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    units = {tag.name: tag.unit for tag in loaded.settings.tags}
    if samples:
        print(commission.render_samples(samples, units))
    for error in errors:
        print(f"edge-agent: {error}", file=sys.stderr)
    return 1 if errors else 0


def _positive(parser: argparse.ArgumentParser, name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        parser.error(f"{name} must be a positive number, found {value:g}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("time_scale", "lab_time_scale", "duration"):
        _positive(parser, "--" + name.replace("_", "-"), getattr(args, name, None))
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "run":
            return _run(args)
        if args.command in ("read", "browse", "opcua"):
            return _commission(args)
        if args.command == "cloud":
            from pydantic import SecretStr

            from agent.demo.cloud import serve_cloud

            configure_logging("info")
            token = None
            if args.token_file is not None:
                token = SecretStr(args.token_file.read_text(encoding="utf-8").strip())
            serve_cloud(host=args.host, port=args.port, data_dir=args.data, token=token)
            return 0
        if args.command == "simulate":
            from agent.demo.certs import OpcUaSecurity
            from agent.demo.runner import run_simulator

            configure_logging("info")
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
            security = None
            if args.secure_dir is not None:
                if args.password_file is None:
                    parser.error("--secure-dir needs --password-file FILE")
                password = args.password_file.read_text(encoding="utf-8").strip()
                security = OpcUaSecurity(cert_dir=args.secure_dir, users={args.user: password})
            asyncio.run(
                run_simulator(
                    security=security,
                    host=args.host,
                    opcua_port=args.opcua_port,
                    modbus_port=args.modbus_port,
                    seed=args.seed,
                    time_scale=args.time_scale,
                    lab_time_scale=args.lab_time_scale,
                )
            )
            return 0
        from agent.demo.show import run_demo

        return run_demo(
            duration_s=args.duration,
            seed=args.seed,
            time_scale=args.time_scale,
            opcua_port=args.opcua_port,
            modbus_port=args.modbus_port,
            plain=args.plain or not sys.stdout.isatty(),
        )
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `edge-agent browse ... | head`
        return 0
    except OSError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
