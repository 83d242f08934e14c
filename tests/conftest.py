"""Fixtures for every test: the clean environment, the captured log, the simulated plant.

Owns: the session-wide scrub of the agent's configuration variables (EDGE_AGENT__*,
CREDENTIALS_DIRECTORY) from os.environ, so no test reads the runner's overrides; and,
through `pytest_plugins`, the fixtures of tests.support.logs (`logs`) and of
tests.support.plant (`sim_plant`, `sim`, `opcua`, `heartbeat`, `secure_plant`,
`client_cert`, `pki_dir`).

Must not: hold builders or helpers a test imports (those live in tests/support/, imported
by name), or a fixture wider than the module that holds a peer (servers stay per file).

Invariants: a test that sets a configuration variable does it with monkeypatch (undone
after it); an agent subprocess gets tests.support.env.clean_env() as its environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.env import is_config_variable

pytest_plugins = ["tests.support.logs", "tests.support.plant"]


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> Iterator[None]:
    """No EDGE_AGENT__* override or systemd credential of the runner reaches a test."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if is_config_variable(n)]:
            patch.delenv(name)
        yield
