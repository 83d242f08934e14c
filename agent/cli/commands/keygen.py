"""`edge-agent keygen`: create an Ed25519 model-signing key pair.

Owns: saying where each half went and which one to deploy.
Must not: write the keys itself (agent.packages.keys does, the private one with mode 0600).
Invariants: exit 0 only when both halves were written; a refusal is one line, exit 1.
"""

from __future__ import annotations

import argparse
import sys


def handle(args: argparse.Namespace) -> int:
    from agent.domain.errors import RejectedError
    from agent.packages import keys as model_keys

    try:
        model_keys.generate_keypair(args.private_key, args.public_key)
    except RejectedError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 1
    print(
        f"private key: {args.private_key} (mode 0600; keep it off the plant PC)\n"
        f"public key:  {args.public_key} (deploy this one)"
    )
    return 0
