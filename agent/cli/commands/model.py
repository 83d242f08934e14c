"""`edge-agent model sign|verify`: sign a model package's manifest, or check a package and
print what it is (inputs with their training ranges, outputs, the signature's verdict).

Owns: the printed report and the exit code (0 the package loads, 1 a problem, printed).
Must not: check a package itself (agent.packages.keys.verify_package does).
Invariants: every problem of the package is printed, one a line on stderr, not just the first.
"""

from __future__ import annotations

import argparse
import sys


def handle(args: argparse.Namespace) -> int:
    from agent.domain.errors import RejectedError
    from agent.packages import keys as model_keys

    try:
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
