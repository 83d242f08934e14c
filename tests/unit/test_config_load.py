"""Loading a valid configuration: environment overrides, secrets, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.domain.errors import ConfigError

CONFIG = """\
[agent]
id = "mill-1"
state_dir = "state"

[[sources]]
kind = "opcua"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:4840"
username = "edge"
password_file = "secrets/opcua"

[sync]
url = "https://ingest.example.com/v1/"
token_credential = "cloud-token"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No EDGE_AGENT__ variable of the runner (tests/conftest.py), systemd credentials here."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cloud-token").write_text("tok-123\n")
    (creds / "cloud-token").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "opcua").write_text("pw-456")
    (tmp_path / "secrets" / "opcua").chmod(0o640)
    return monkeypatch


def test_secrets_are_read_from_file_and_credentials_dir(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    loaded = load_config(path)
    assert loaded.secrets["sources.plc.password"].get_secret_value() == "pw-456"
    assert loaded.secrets["sync.token"].get_secret_value() == "tok-123"
    assert "tok-123" not in repr(loaded) and "pw-456" not in repr(loaded)
    assert loaded.settings.agent.state_dir == (tmp_path / "state").resolve()


def test_environment_overrides_the_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    env.setenv("EDGE_AGENT__AGENT__LOG_LEVEL", "debug")
    env.setenv("EDGE_AGENT__SYNC__ENABLED", "false")
    env.setenv("EDGE_AGENT__API__PORT", "9999")
    settings = load_config(path).settings
    assert settings.agent.log_level == "debug"
    assert settings.sync.enabled is False
    assert settings.api.port == 9999
    assert settings.agent.id == "mill-1"  # untouched keys keep the file's values


def test_bad_environment_value_is_reported(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    env.setenv("EDGE_AGENT__API__PORT", "not-a-port")
    env.setenv("EDGE_AGENT__CLUOD__URL", "x")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.render() for p in info.value.problems] == [
        "environment: EDGE_AGENT__CLUOD__URL: expected EDGE_AGENT__SECTION__KEY with SECTION one "
        "of agent, api, loops, product_selection, products, quality, sources, sync, tags, found unknown section 'cluod'",
        "environment: EDGE_AGENT__API__PORT: expected a whole number, found 'not-a-port' (text)",
    ]
    assert info.value.exit_code == 78


def test_group_readable_secret_is_accepted_world_readable_is_not(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    (tmp_path / "secrets" / "opcua").chmod(0o604)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.key for p in info.value.problems] == ["sources[0].password_file"]
    assert "pw-456" not in str(info.value.problems)
