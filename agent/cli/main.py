"""The `edge-agent` command line: parse arguments and hand over to the right module.

Owns: sub-commands, their options and exit codes (0 ok, 78 configuration error, 2 usage,
1 an unexpected failure), and rendering configuration problems for plant IT.
Must not: contain behaviour beyond dispatch; import the simulator unless a demo or
simulate command asks for it (the daemon never loads it).
Invariants: an expected failure prints a clear message and never a traceback; this module
imports only the standard library and agent.domain.errors at its top (the rest inside the command
that needs it), so that `main` records a SIGTERM/SIGINT from its first line
(agent.service.early_signals) and `run` ends with exit 0 whenever the signal comes.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent.domain.errors import ConfigError, EdgeAgentError
from agent.service import early_signals

if TYPE_CHECKING:
    from agent.config.loader import LoadedConfig

EX_CONFIG = 78


def configure_logging(level: str, *, stream: TextIO | None = None) -> None:
    """agent.service.logs.configure_logging, imported when a command first logs (heavy)."""
    from agent.service.logs import configure_logging as configure

    configure(level, stream=stream)


def _load_or_exit(path: Path, *, secrets: bool = True) -> LoadedConfig:
    """The loaded configuration, or exit 78 after printing every problem. `secrets=False`
    for the commands that read no secret (they then work without $CREDENTIALS_DIRECTORY)."""
    from agent.config.loader import load_config

    try:
        return load_config(path, secrets=secrets)
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
    from agent.control.model_checks import check_loop_models

    loaded = _load_or_exit(args.config)
    s = loaded.settings
    report = check_loop_models(loaded)  # the loops against the model packages they name
    for problem in report.errors:
        print(problem.render(), file=sys.stderr)
    for problem in report.warnings:
        print(f"warning: {problem.render()}", file=sys.stderr)
    if report.errors:
        count = len(report.errors)
        print(f"edge-agent: {count} configuration problem{'s' * (count != 1)} in "
              f"{args.config}", file=sys.stderr)  # fmt: skip
        return EX_CONFIG
    warned = len(report.warnings)
    print(
        f"{args.config}: OK: agent '{s.agent.id}', {len(s.sources)} sources, "
        f"{len(s.tags)} tags, {len(s.loops)} loops, sync "
        f"{'to ' + str(s.sync.url) if s.sync.enabled else 'off'}"
        + (f" ({warned} warning{'s' * (warned != 1)})" if warned else "")
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    loaded = _load_or_exit(args.config)
    if early_signals.requested() is not None:  # nothing opened yet: skip the heavy imports
        return _stopped_before_start(loaded)
    from agent.service.app import run_agent
    from agent.service.state_dir import StateDirError

    try:
        return run_agent(loaded)
    except StateDirError as exc:
        print(exc.problem.render(), file=sys.stderr)
        return EX_CONFIG
    except EdgeAgentError as exc:  # an expected failure before or while starting
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1


def _stopped_before_start(loaded: LoadedConfig) -> int:
    """A SIGTERM/SIGINT came while the configuration was read: say so and exit 0."""
    from agent.domain.logger import get_logger

    configure_logging(loaded.settings.agent.log_level)
    log = get_logger("agent.service.app")
    stop = early_signals.requested()
    log.info("shutdown_requested", signal=stop.name if stop else None, before="start")
    log.info("agent_stopped", agent_id=loaded.settings.agent.id)
    return 0


def _status(args: argparse.Namespace) -> int:
    from agent.api import status_view

    try:
        return status_view.run_status(args.url or status_view.url_from_config(args.config))
    except status_view.StatusConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    except status_view.StatusUnavailableError as exc:  # nobody answering: not a config error
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1


def _audit(args: argparse.Namespace) -> int:
    from agent.control.audit import AUDIT_FILE, verify_file

    path = args.file
    if path is None:
        path = _load_or_exit(args.config, secrets=False).settings.agent.state_dir / AUDIT_FILE
    if not path.is_file():
        print(f"edge-agent: no audit log at {path}", file=sys.stderr)
        return 1
    report = verify_file(path)
    span = f"records {report.first_seq}..{report.last_seq}" if report.records else "no records"
    if report.ok:
        print(f"{path}: OK: {report.records} records verified ({span}), chain intact")
        return 0
    print(f"{path}: BROKEN: {report.problem} ({report.records} records verified before it)")
    return 1


def _commission(args: argparse.Namespace) -> int:
    import asyncio

    from agent.commission import commands as commission

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
        loaded = _load_or_exit(args.config, secrets=args.command != "opcua")
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
    not_good = commission.not_good(samples)
    problems = errors if not_good is None else [not_good, *errors]
    for problem in problems:
        print(f"edge-agent: {problem}", file=sys.stderr)
    return 1 if problems else 0  # 1 unless every asked tag has a Good value


def _models(args: argparse.Namespace) -> int:
    from agent.domain.errors import RejectedError
    from agent.packages import keys as model_keys

    try:
        if args.command == "keygen":
            model_keys.generate_keypair(args.private_key, args.public_key)
            print(
                f"private key: {args.private_key} (mode 0600; keep it off the plant PC)\n"
                f"public key:  {args.public_key} (deploy this one)"
            )
            return 0
        if args.model_command == "sign":
            print(f"signed: {model_keys.sign_package(args.directory, args.key)}")
            return 0
        report = model_keys.verify_package(args.directory, args.public_key)
    except RejectedError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(f"model {report.name} {report.version} in {report.directory}")
    print(f"signature: {report.signature}")
    for item in report.inputs:
        tag = f"tag {item.tag}" if item.tag else "derived"
        print(
            f"  input  {item.name} [{item.unit}] from {tag}, trained on {item.min:g}..{item.max:g}"
        )
    for out in report.outputs:
        print(f"  output {out.name} [{out.unit}]")
    for error in report.errors:
        print(f"problem: {error}", file=sys.stderr)
    return 0 if report.ok else 1


def _positive(parser: argparse.ArgumentParser, name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        parser.error(f"{name} must be a positive number, found {value:g}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    early_signals.install()  # first of all: a stop request from now on is an orderly exit
    from agent.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("time_scale", "lab_time_scale", "duration"):
        _positive(parser, "--" + name.replace("_", "-"), getattr(args, name, None))
    try:
        if args.command != "run":  # only the agent stops on a recorded signal; others as usual
            early_signals.restore()  # (a Ctrl-C recorded so far is a KeyboardInterrupt now)
        if args.command == "check":
            return _check(args)
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return _status(args)
        if args.command == "audit":
            return _audit(args)
        if args.command in ("keygen", "model"):
            return _models(args)
        if args.command in ("read", "browse", "opcua"):
            return _commission(args)
        if args.command == "cloud":
            from pydantic import SecretStr

            from agent.demo.cloud import serve_cloud

            configure_logging("info")
            token = None
            if args.token_file is not None:
                token = SecretStr(args.token_file.read_text(encoding="utf-8").strip())
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
            with contextlib.suppress(KeyboardInterrupt):  # a requested stop is a clean exit
                serve_cloud(
                    host=args.host,
                    port=args.port,
                    data_dir=args.data,
                    token=token,
                    models_dir=args.models,
                )
            return 0
        if args.command == "simulate":
            import asyncio

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
                    )
                )
            return 0
        from agent.demo.show import run_demo

        return run_demo(
            duration_s=args.duration,
            seed=args.seed,
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
