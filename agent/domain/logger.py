"""Where every module of the agent and of drivers gets its logger.

Owns: `get_logger(name)`, a structlog logger routed through the standard-library logger
`name`. What the lines look like and where they go is agent.service.logs' job
(`configure_logging`); a logger obtained before that call follows it (loggers are not cached).
Must not: configure anything, write anything or hold state.
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["get_logger"]


def get_logger(name: str, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger routed through the standard-library logger ``name`` (use __name__)."""
    return structlog.stdlib.get_logger(name, **initial_values)
