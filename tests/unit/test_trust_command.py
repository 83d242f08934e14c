"""The trust hint's command: exact, absolute, quoted for a shell, naming the configuration."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from drivers.opcua_security import trust_command


def test_the_command_names_the_configuration_and_the_source_absolutely() -> None:
    command = trust_command(Path("state/pki/rejected/plc_1.der"), Path("plant/agent.toml"), "mill")
    assert shlex.split(command) == [
        "edge-agent", "opcua", "trust", os.path.abspath("state/pki/rejected/plc_1.der"),
        "--config", os.path.abspath("plant/agent.toml"), "--source", "mill",
    ]  # fmt: skip


def test_paths_with_spaces_and_quotes_survive_the_shell() -> None:
    rejected, config = Path("/srv/my plant/plc's.der"), Path("/etc/edge agent/line 1.toml")
    words = shlex.split(trust_command(rejected, config, "line 1"))
    assert words[3] == str(rejected) and words[5] == str(config) and words[7] == "line 1"


def test_without_a_configuration_it_says_what_to_add() -> None:
    command = trust_command(Path("/var/lib/edge-agent/pki/rejected/x.der"), None, None)
    assert command == (
        "edge-agent opcua trust /var/lib/edge-agent/pki/rejected/x.der "
        "--config FILE (FILE: the agent's configuration)"
    )
