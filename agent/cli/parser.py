"""The `edge-agent` command line's grammar: sub-commands, options, defaults and help.

Owns: the argparse parser, and the option rules argparse cannot state (`check_options`:
positive quantities, --secure-dir needs --password-file), which exit 2 with the usage.
Must not: import anything heavy or run anything (`edge-agent --help` stays instant).
Invariants: every option that carries a quantity names its unit in the help text; every
sub-command has its handler module (agent.cli.commands.COMMANDS).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_CONFIG = Path(os.environ.get("EDGE_AGENT_CONFIG", "/etc/edge-agent/agent.toml"))


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )


def _positive(parser: argparse.ArgumentParser, name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        parser.error(f"{name} must be a positive number, found {value:g}")


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The rules between options, after parsing: `parser.error` (exit 2) on the first broken."""
    for name in ("time_scale", "lab_time_scale", "duration", "days"):
        _positive(parser, "--" + name.replace("_", "-"), getattr(args, name, None))
    if args.command == "simulate" and args.secure_dir is not None and args.password_file is None:
        parser.error("--secure-dir needs --password-file FILE")
    if args.command == "simulate":
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(args.lab_csv_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            parser.error(
                f"--lab-csv-timezone: an IANA time zone such as Europe/Berlin or UTC, "
                f"found {args.lab_csv_timezone!r}"
            )


def _simulate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    sim.add_argument(
        "--lab-csv",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the lab's results as a LIMS's CSV exports into DIR, one file per "
        "4 h of plant time (format: docs/demo.md)",
    )
    sim.add_argument(
        "--lab-csv-timezone",
        default="Europe/Berlin",
        metavar="TZ",
        help="IANA time zone of the times in those files (default Europe/Berlin)",
    )


def build_parser() -> argparse.ArgumentParser:
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

    status = commands.add_parser("status", help="print a running agent's status (local API)")
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"ask the agent at this file's [api] address (default {DEFAULT_CONFIG})",
    )
    where.add_argument(
        "--url", default=None, metavar="URL", help="ask the agent at URL (http://127.0.0.1:8787)"
    )

    _add_quality_commands(commands)

    _simulate_parser(commands)

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
    cloud.add_argument(
        "--models",
        type=Path,
        default=None,
        metavar="DIR",
        help="offer the model packages in DIR/<name>/<version>/ to agents (remote support)",
    )

    _add_model_commands(commands)

    demo = commands.add_parser("demo", help="the simulated plant and the agent, together")
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop by itself after S seconds (exit 0)",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S")
    demo.add_argument(
        "--opcua-port",
        type=int,
        default=0,
        metavar="N",
        help="OPC UA port of the simulated PLC (default: a free one)",
    )
    demo.add_argument(
        "--modbus-port",
        type=int,
        default=0,
        metavar="N",
        help="Modbus TCP port of the simulated feeders (default: a free one)",
    )
    demo.add_argument(
        "--plain",
        action="store_true",
        help="plain line output even on a terminal (default when not a TTY)",
    )
    _add_evaluate_command(commands)
    return parser


def _add_evaluate_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="the agent against the plant's operators over weeks of simulated plant time: "
        "the saving at equal conformity (report and charts)",
    )
    evaluate.add_argument(
        "--days",
        type=float,
        default=28.0,
        metavar="D",
        help="plant days each run covers (default 28)",
    )
    evaluate.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="the mill's seed: both runs see the same weather (default 0)",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        default=Path("evaluate-out"),
        metavar="DIR",
        help="folder for report.md, the charts and evaluate.log (default ./evaluate-out)",
    )
    evaluate.add_argument(
        "--scenario",
        default="default",
        choices=["default", "agent-window"],
        help="default: drift faults of plant-model 4.3 against the plant's operators; "
        "agent-window: the same with the operators kept inside the agent's envelopes "
        "(for comparison only)",
    )
    evaluate.add_argument(
        "--plain",
        action="store_true",
        help="plain line output even on a terminal (default when not a TTY)",
    )


def _where(parser: argparse.ArgumentParser) -> None:
    """--config FILE or --url URL: where the running agent's local API is."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
        help=f"ask the agent at this file's [api] address (default {DEFAULT_CONFIG})",
    )  # fmt: skip
    where.add_argument(
        "--url", default=None, metavar="URL", help="ask the agent at URL (http://127.0.0.1:8787)"
    )


def _add_quality_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quality = commands.add_parser(
        "quality", help="model monitoring against the lab: comparison, step up, promotion"
    )
    actions = quality.add_subparsers(dest="quality_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="each loop's model against the lab and its "
                                "challenger, test by test")  # fmt: skip
    status.add_argument("loop", nargs="?", default=None, metavar="LOOP", help="one loop only")
    _where(status)
    restore = actions.add_parser(
        "restore", help="step a stepped-down loop back up (audited): it acts in its mode again"
    )
    restore.add_argument("loop", metavar="LOOP")
    promote = actions.add_parser(
        "promote", help="make a loop's challenger model its active one (audited)"
    )
    promote.add_argument("loop", metavar="LOOP")
    promote.add_argument("version", metavar="VERSION", help="the challenger's version")
    for action in (restore, promote):
        action.add_argument("--operator", required=True, metavar="NAME",
                            help="who does it (recorded in the audit log)")  # fmt: skip
        action.add_argument("--reason", required=True, metavar="TEXT",
                            help="why (recorded in the audit log)")  # fmt: skip
        _where(action)


def _add_audit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="check the audit chain, record by record")
    _config_arg(verify)
    verify.add_argument(
        "--file", type=Path, default=None, metavar="FILE",
        help="an audit.db to check (default: the one in the config's state_dir)",
    )  # fmt: skip


def _add_model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_audit_commands(commands)
    keygen = commands.add_parser("keygen", help="create an Ed25519 model-signing key pair")
    keygen.add_argument(
        "--private-key",
        type=Path,
        default=Path("model-signing.pem"),
        metavar="FILE",
        help="written with mode 0600 (default model-signing.pem)",
    )
    keygen.add_argument(
        "--public-key",
        type=Path,
        default=Path("model-signing.pub.pem"),
        metavar="FILE",
        help="deploy this one (default model-signing.pub.pem)",
    )

    model = commands.add_parser("model", help="model packages: sign and verify")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    sign = model_commands.add_parser("sign", help="sign a package's manifest")
    sign.add_argument("directory", type=Path, metavar="DIR", help="models/<name>/<version>")
    sign.add_argument("--key", type=Path, required=True, metavar="FILE", help="private key PEM")
    verify = model_commands.add_parser("verify", help="check a package and print what it is")
    verify.add_argument("directory", type=Path, metavar="DIR", help="models/<name>/<version>")
    verify.add_argument(
        "--public-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="verify the signature with this public key PEM",
    )
