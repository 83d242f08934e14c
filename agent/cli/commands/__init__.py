"""One module per `edge-agent` command, each with `handle(args) -> exit code`.

Owns: the table from a command's name (agent.cli.parser) to the module that handles it.
Must not: import a handler here (agent.cli.main imports the one it runs, after the stop
signals are recorded: a handler may import heavy modules at its top only through its
function).
Invariants: every command the parser knows has exactly one entry, and each entry its own
module (tests/system/test_cli_dispatch.py).
"""

from __future__ import annotations

COMMANDS: dict[str, str] = {
    "check": "check",
    "run": "run",
    "status": "status",
    "quality": "quality",
    "audit": "audit",
    "keygen": "keygen",
    "model": "model",
    "read": "read",
    "browse": "browse",
    "opcua": "trust",
    "cloud": "cloud",
    "simulate": "simulate",
    "demo": "demo",
    "evaluate": "evaluate",
}
"""command name -> module agent.cli.commands.<module>, whose `handle(args)` runs it."""
