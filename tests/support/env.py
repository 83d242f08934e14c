"""The clean environment of a test: nothing of the runner's configuration leaks in.

Owns: `is_config_variable` (EDGE_AGENT__*, CREDENTIALS_DIRECTORY: what the agent reads
besides its file) and `clean_env`, the environment for an agent subprocess. The in-process
side is tests/conftest.py's session fixture, which removes the same variables from
os.environ for every test.

Must not: drop anything else (PATH, HOME, the venv): a subprocess must still find Python.

Invariants: `clean_env(**extra)` holds no EDGE_AGENT__* variable but the ones in `extra`.
"""

from __future__ import annotations

import os

PREFIX = "EDGE_AGENT__"
"""The prefix of the agent's environment overrides (`EDGE_AGENT__SECTION__KEY`)."""


def is_config_variable(name: str) -> bool:
    """Whether the agent reads `name` as configuration (overrides, systemd credentials)."""
    return name.upper().startswith(PREFIX) or name == "CREDENTIALS_DIRECTORY"


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without the agent's configuration variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not is_config_variable(k)}
    return {**env, **extra}
