"""`edge-agent audit verify`: check the hash-chained audit log, record by record.

Owns: finding the audit file (--file, else the configuration's state_dir) and the verdict
line (exit 0 intact, 1 broken or missing).
Must not: read secrets (the configuration is loaded without them) or change the log.
Invariants: exit 0 only when the file exists and every record's hash chains to the last.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import load_or_exit


def handle(args: argparse.Namespace) -> int:
    from agent.control.audit import AUDIT_FILE, verify_file

    path = args.file
    if path is None:
        path = load_or_exit(args.config, secrets=False).settings.agent.state_dir / AUDIT_FILE
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
