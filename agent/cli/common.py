"""What several command handlers share: the exit codes, loading the configuration or exiting
78 with every problem, and configuring the log on first use.

Owns: EX_CONFIG, `load_or_exit`, `configure_logging` (a lazy door to agent.service.logs),
`stop_on_signals` (how a serving command stops).
Must not: import anything heavy at its top (the configuration loader, pydantic, structlog
are imported inside the function that needs them), or know any one command.
Invariants: a configuration error prints every problem, one per line as
`file: key: expected ..., found ...`, then a count line, and exits 78: never a traceback.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent.domain.errors import ConfigError

if TYPE_CHECKING:
    from agent.config.loader import LoadedConfig

EX_CONFIG = 78


def configure_logging(level: str, *, stream: TextIO | None = None) -> None:
    """agent.service.logs.configure_logging, imported when a command first logs (heavy)."""
    from agent.service.logs import configure_logging as configure

    configure(level, stream=stream)


def load_or_exit(path: Path, *, secrets: bool = True) -> LoadedConfig:
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


def stop_on_signals() -> None:
    """SIGTERM and SIGINT both stop a serving command like Ctrl-C (KeyboardInterrupt).

    Set explicitly, not inherited: a command started in the background by a non-interactive
    shell (`edge-agent simulate &` in a script, a CI job) inherits SIGINT ignored, and
    asyncio.run only takes SIGINT over when Python's own handler is in place; so it served
    on after `kill -INT` (a test's SIGINT hung until its time-out).
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler)
