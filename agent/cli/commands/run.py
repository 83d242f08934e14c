"""`edge-agent run`: the agent itself (what the systemd unit runs).

Owns: loading the configuration, handing it to the composition root (agent.service.app),
and the exit codes of a start-up that fails (78: the state directory, 1: another expected
failure).
Must not: import agent.service.app before the configuration loaded and no stop request came
(a SIGTERM during start-up skips the heavy imports: agent.service.early_signals).
Invariants: a stop request at any point of start-up is an orderly exit 0
(tests/system/test_start_up_signals.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from agent.cli.common import EX_CONFIG, configure_logging, load_or_exit
from agent.domain.errors import EdgeAgentError
from agent.service import early_signals

if TYPE_CHECKING:
    from agent.config.loader import LoadedConfig


def handle(args: argparse.Namespace) -> int:
    loaded = load_or_exit(args.config)
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
