"""The trust hint works as printed, and the commands that need no secret read none.

Against a simulated PLC that serves SignAndEncrypt only, the agent refuses the unknown
server certificate and prints the command that trusts it. That command is run exactly as
printed (from another folder, with neither the agent's environment nor its credentials):
it must name the configuration the agent was started with, and `opcua trust` and
`audit verify` must work without `$CREDENTIALS_DIRECTORY` although the configuration names
its secrets with `*_credential` keys. Then the agent connects without being restarted.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.control.audit import AUDIT_FILE, AuditLog
from agent.demo.certs import OpcUaSecurity
from agent.demo.runner import SimulatedPlant
from agent.domain.clock import SystemClock
from tests.support.config import agent_config, mill_tags, opcua_source
from tests.support.env import clean_env

SCRIPT = Path(sys.executable).with_name("edge-agent")  # what plant IT types: `edge-agent`
WAIT_S = 120.0  # the limit of a wait (generous: RSA handshakes on a busy machine)
HINT = re.compile(r"(edge-agent opcua trust .*?) \(moves it into ")


def _env(**extra: str) -> dict[str, str]:
    """An operator's shell: no agent variables, no systemd credentials."""
    return clean_env(**extra)


async def _run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _as_printed(command: str, tmp: Path) -> tuple[int, str, str]:
    """Run a printed `edge-agent ...` command as an operator would, from another folder."""
    words = shlex.split(command)
    assert words[0] == "edge-agent", command
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return await _run(str(SCRIPT), *words[1:], cwd=elsewhere, env=_env())


@pytest.fixture
async def plant(tmp_path: Path) -> AsyncIterator[SimulatedPlant]:
    security = OpcUaSecurity(cert_dir=tmp_path / "plc-pki", users={"operator": "s3cret-pw"})
    async with SimulatedPlant(opcua_port=0, modbus_port=0, security=security) as running:
        yield running


def _config(tmp: Path, opcua_url: str) -> Path:
    """plant/agent.toml, relative paths, the password as a systemd credential."""
    folder = tmp / "plant"
    folder.mkdir()
    agent_config(
        "trust-1",
        sources=[opcua_source(opcua_url, security_policy="Basic256Sha256",
                              security_mode="SignAndEncrypt", username="operator",
                              password_credential="opcua-password", trusted_dir="pki-trusted")],
        tags=mill_tags("SeparatorSpeed"),
        sync={"enabled": True, "url": "https://ingest.example.com/v1/",
              "token_credential": "cloud-token"},
        api={"enabled": False},
        shutdown_timeout_s=60,
    ).write(folder / "agent.toml")  # fmt: skip
    credentials = tmp / "credentials"
    credentials.mkdir()
    for name, secret in (("opcua-password", "s3cret-pw"), ("cloud-token", "tok")):
        (credentials / name).write_text(secret + "\n")
        (credentials / name).chmod(0o600)
    return folder / "agent.toml"


async def test_read_prints_a_trust_command_that_works_as_printed(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = _config(tmp_path, plant.opcua_url)
    agent_env = _env(CREDENTIALS_DIRECTORY=str(tmp_path / "credentials"))
    relative = ["--config", "plant/agent.toml"]  # started from its own folder, a relative path
    code, _, err = await _run(str(SCRIPT), "read", *relative, cwd=tmp_path, env=agent_env)
    assert code == 1 and "Traceback" not in err, err
    match = HINT.search(err)
    assert match, err
    code, out, err = await _as_printed(match[1], tmp_path)
    assert (code, err) == (0, ""), match[1]
    trusted = config.parent / "pki-trusted"
    assert out.startswith(f"trusted: {trusted / ''}"), out
    assert len(list(trusted.glob("*.der"))) == 1
    code, out, err = await _run(str(SCRIPT), "read", *relative, cwd=tmp_path, env=agent_env)
    assert code == 0, err
    assert "SeparatorSpeed" in out and "GOOD" in out


@pytest.mark.timeout(300)
async def test_the_running_agent_prints_it_and_connects_once_it_is_run(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    _config(tmp_path, plant.opcua_url)
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), "run", "--config", "plant/agent.toml", cwd=tmp_path,
        env=_env(CREDENTIALS_DIRECTORY=str(tmp_path / "credentials")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        command = ""
        while not command:  # its log, until the refusal
            line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
            assert line, "the agent ended"
            match = HINT.search(json.loads(line).get("error", ""))
            command = match[1] if match else ""
        code, _, err = await _as_printed(command, tmp_path)
        assert (code, err) == (0, ""), command
        while True:  # the next attempt (the supervisor's backoff) connects: no restart
            line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
            assert line, "the agent ended"
            if json.loads(line)["event"] == "opcua_session_started":
                break
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def test_audit_verify_needs_no_credentials(tmp_path: Path) -> None:
    config = _config(tmp_path, "opc.tcp://127.0.0.1:1")
    state = config.parent / "state"
    state.mkdir()
    log = AuditLog(state / AUDIT_FILE, agent_id="trust-1", clock=SystemClock())
    await log.record("cycle", {"value": 1})
    log.close()
    code, out, err = await _run(
        str(SCRIPT), "audit", "verify", "--config", str(config), cwd=tmp_path, env=_env()
    )
    assert (code, err) == (0, ""), err
    assert out.startswith(f"{state / AUDIT_FILE}: OK: 1 records verified")
    # `check` and `run` do need the secrets: still a configuration error without them.
    code, _, err = await _run(str(SCRIPT), "check", "--config", str(config), cwd=tmp_path,
                              env=_env())  # fmt: skip
    assert code == 78 and "sources[0].password_credential" in err, err
