"""The command line: one handler module per command, found through one table, and a
`main` module light enough to record a stop signal before anything heavy is imported.

The table is checked against the parser itself (a command added to agent/cli/parser.py
without its module fails here); the light import is checked in a fresh interpreter, the
way the console script starts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.commands import COMMANDS
from agent.cli.main import main
from agent.cli.parser import build_parser
from tests.support.env import clean_env

# What `import agent.cli.main` must not load: the command modules and what they import.
HEAVY = ("agent.cli.commands.", "agent.config.", "agent.service.app", "agent.demo", "pydantic",
         "structlog", "asyncua", "pymodbus", "onnxruntime", "httpx", "numpy", "rich")  # fmt: skip


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_every_command_has_its_own_handler_module() -> None:
    assert set(COMMANDS) == _commands(build_parser())
    assert len(set(COMMANDS.values())) == len(COMMANDS)  # one module per command
    for command, name in COMMANDS.items():
        module = importlib.import_module(f"agent.cli.commands.{name}")
        assert callable(module.handle), command
        assert module.__doc__ and module.__doc__.startswith(f"`edge-agent {command}"), name


def test_the_command_line_module_imports_nothing_heavy() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import json, sys, agent.cli.main; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    loaded = json.loads(probe.stdout)
    assert "agent.service.early_signals" in loaded  # the probe saw the module's own imports
    assert [m for m in loaded if m.startswith(HEAVY) or m in HEAVY] == []


def test_an_option_rule_broken_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["simulate", "--secure-dir", str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "usage: edge-agent [-h] COMMAND ...\n"
        "edge-agent: error: --secure-dir needs --password-file FILE\n"
    )
