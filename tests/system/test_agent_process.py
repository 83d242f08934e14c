"""The agent as a subprocess: configuration errors, the state-dir lock, SIGTERM/SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.config import replace_once
from tests.support.env import clean_env

AGENT = [sys.executable, "-m", "agent"]
WAIT_S = 120.0  # the limit of a wait for the agent: generous, a busy machine is only slower
CONFIG = """\
[agent]
id = "sys-1"
state_dir = "state"
shutdown_timeout_s = 60  # a limit, not a wait: a busy machine may be slow to drain

[api]
enabled = false  # tests run side by side: no fixed port
"""


def _env() -> dict[str, str]:
    return clean_env()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def agent(config: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*AGENT, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        while not seen or seen[-1] != "agent_started":  # its start-up lines, however many
            line = proc.stdout.readline()
            assert line, f"the agent ended during its start-up: {seen}"
            first = json.loads(line)
            seen.append(first["event"])
        assert first["pid"] == proc.pid
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT_S)  # reaps it and closes the pipes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_gives_ordered_shutdown_and_exit_0(
    agent: subprocess.Popen[str], signum: signal.Signals
) -> None:
    agent.send_signal(signum)
    out, err = agent.communicate(timeout=WAIT_S)
    assert agent.returncode == 0, err
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events[0] == "shutdown_requested"
    assert events[-2:] == ["buffer_closed", "agent_stopped"]  # the open block is committed
    assert err == ""


def test_a_second_signal_forces_the_exit_and_names_what_was_still_running(
    agent: subprocess.Popen[str],
) -> None:
    # Stopped, the agent receives both signals at once when it continues (two different
    # signals: a second SIGTERM could merge with the first), so the drain cannot finish
    # between them.
    agent.send_signal(signal.SIGSTOP)
    agent.send_signal(signal.SIGTERM)
    agent.send_signal(signal.SIGINT)
    agent.send_signal(signal.SIGCONT)
    out, err = agent.communicate(timeout=WAIT_S)
    assert agent.returncode == 1, err
    events = [json.loads(line) for line in out.splitlines()]
    (forced,) = [e for e in events if e["event"] == "shutdown_forced"]
    assert forced["level"] == "error"
    assert forced["reason"] in ("second SIGTERM", "second SIGINT")
    app = [w for w in forced["waiting"] if w.startswith("app at ")]
    assert len(app) == 1 and ".py:" in app[0], forced["waiting"]
    assert "agent_stopped" not in [e["event"] for e in events]
    assert err == ""


def test_second_agent_on_same_state_dir_is_refused(
    agent: subprocess.Popen[str], config: Path
) -> None:
    second = subprocess.run(
        [*AGENT, "run", "--config", str(config)],
        capture_output=True,
        check=False,
        text=True,
        timeout=WAIT_S,
        env=_env(),
    )
    assert second.returncode == 78
    state = config.parent / "state"
    assert second.stderr == (
        f"{config}: agent.state_dir: expected a state directory no other edge-agent uses, "
        f"found {state} is locked by process {agent.pid}\n"
    )
    assert agent.poll() is None  # the first one is untouched


def test_run_with_broken_config_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(replace_once(CONFIG, 'id = "sys-1"', 'id = "sys-1"\nlog_levl = "debug"'))
    result = subprocess.run(
        [*AGENT, "run", "--config", str(path)],
        capture_output=True,
        check=False,
        text=True,
        timeout=WAIT_S,
        env=_env(),
    )
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{path}:3: agent.log_levl: expected did you mean 'log_level'? one of the known keys: "
        "audit_retention_days, id, log_level, model_public_key_file, models_dir, "
        "shutdown_timeout_s, state_dir, found unknown key 'log_levl'",
        f"edge-agent: 1 configuration problem in {path}; nothing was started",
    ]
    assert result.stdout == ""
    assert not (tmp_path / "state").exists()


def test_check_on_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    result = subprocess.run(
        [*AGENT, "check", "--config", str(path)],
        capture_output=True,
        check=False,
        text=True,
        timeout=WAIT_S,
        env=_env(),
    )
    assert result.returncode == 78
    assert result.stderr.splitlines()[0] == (
        f"{path}: (file): expected a readable UTF-8 TOML file, found No such file or directory"
    )


def test_shipped_configs_pass_check(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("opcua-password", "cloud-token"):
        (creds / name).write_text("s3cret\n")
        (creds / name).chmod(0o600)
    for config_file in ("config/demo.toml", "config/example-plant.toml"):
        result = subprocess.run(
            [*AGENT, "check", "--config", str(root / config_file)],
            capture_output=True,
            check=False,
            text=True,
            timeout=WAIT_S,
            env={**_env(), "CREDENTIALS_DIRECTORY": str(creds)},
        )
        assert result.returncode == 0, result.stderr
        assert "OK: agent" in result.stdout


def test_unusable_buffer_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    (tmp_path / "state" / "buffer.db").mkdir(parents=True)  # not a file: SQLite cannot open it
    result = subprocess.run(
        [*AGENT, "run", "--config", str(path)], capture_output=True, check=False, text=True,
        timeout=WAIT_S, env=_env(),
    )  # fmt: skip
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"{path}: agent.state_dir: expected a buffer file the agent can open and write, "
        f"found {tmp_path / 'state' / 'buffer.db'}: "
    )


def test_unusable_quality_db_is_a_clear_error_and_nothing_starts(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG + '\n[quality.csv]\nfolder = "lims"\n')
    (tmp_path / "state" / "quality.db").mkdir(parents=True)  # not a file: SQLite cannot open it
    result = subprocess.run(
        [*AGENT, "run", "--config", str(path)], capture_output=True, check=False, text=True,
        timeout=WAIT_S, env=_env(),
    )  # fmt: skip
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"{tmp_path / 'state' / 'quality.db'}: agent.state_dir: expected a quality.db the agent "
        "can open and write (it holds the loops' step-downs), found "
    ), result.stderr


def test_unreadable_sync_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG + '\n[sync]\nurl = "https://cloud.example.com/"\nca_file = "ca.pem"\n')
    result = subprocess.run(
        [*AGENT, "check", "--config", str(path)], capture_output=True, check=False, text=True,
        timeout=WAIT_S, env=_env(),
    )  # fmt: skip
    assert result.returncode == 78, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(
        f"{path}:11: sync.ca_file: expected a readable PEM CA"
    )
