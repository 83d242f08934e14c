"""The systemd units and the agent's side of them.

- The agent as a subprocess under a fake service manager: NOTIFY_SOCKET is a datagram socket
  this test binds, WATCHDOG_USEC is set; READY=1, STATUS=, WATCHDOG=1 and, after SIGTERM,
  STOPPING=1 must arrive, and the exit code must be 0.
- The unit files, checked by the real `systemd-analyze`: `verify` reports nothing and
  `security --offline=true` rates both units 2.0 or lower. `verify` insists that ExecStart's
  binary exists and is executable. Rather than rewrite ExecStart (which would check a unit we
  do not ship), the units are verified unchanged in a `--root=` tree: the units in its
  /etc/systemd/system, a copy of the host's own units (targets) in /usr/lib/systemd/system, and a
  stub executable at /opt/edge-agent/current/bin/edge-agent, where the offline installer puts
  the real one. `test_verify_catches_a_missing_binary` shows that the check is live there.
- The unit files agree with the code: credential names with config/example-plant.toml, the
  stop timeout with the shutdown drain, the template's state directory with its override.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.settings import AgentSection
from tests.support.env import clean_env
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
EDGE_AGENT = Path(sys.executable).parent / "edge-agent"
INSTANCES = ["edge-agent.service", "edge-agent@line1.service"]


# -- the agent under a fake service manager -----------------------------------------------------


def _receive(sock: socket.socket, until: str, seen: list[str], timeout_s: float = 30) -> None:
    """Append datagrams to `seen` until one contains the line `until` (or fail after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {until!r} from the agent; got {seen}"
        sock.settimeout(left)
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen.append(message)
        if until in message.splitlines():
            return


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    with sock:
        yield sock, path


def test_agent_notifies_ready_status_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    config = tmp_path / "agent.toml"
    # No cloud listens on that port: an outage, which must not stop the watchdog.
    config.write_text(
        f'[agent]\nid = "sd-1"\nstate_dir = "state"\nshutdown_timeout_s = 5\n\n'
        f'[sync]\nurl = "http://127.0.0.1:{free_port()}/"\nflush_interval_s = 0.2\n'
        "\n[api]\nenabled = false\n"
    )
    env = clean_env()
    env.pop("WATCHDOG_PID", None)
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}  # WATCHDOG=1 every second
    with (tmp_path / "out.log").open("w") as out:
        proc = subprocess.Popen([str(EDGE_AGENT), "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        seen: list[str] = []
        _receive(sock, "READY=1", seen)
        assert len(seen) == 1, "something was sent before READY=1"
        ready = seen[0].splitlines()
        assert ready[0] == "READY=1"
        assert re.fullmatch(
            r"STATUS=sources 0/0 connected, buffer \d+\.\d MB used, \d+ blocks pending", ready[1]
        )
        seen.clear()
        while not any(m.startswith("STATUS=") for m in seen):  # ~10 s after READY=1
            _receive(sock, "WATCHDOG=1", seen)
        assert seen.count("WATCHDOG=1") >= 3  # a heartbeat a second, through a cloud outage
        status = next(m for m in seen if m.startswith("STATUS="))
        assert status.startswith("STATUS=sources 0/0 connected, buffer ")
        proc.send_signal(signal.SIGTERM)
        seen.clear()
        _receive(sock, "STOPPING=1", seen)
        assert seen[-1] == "STOPPING=1\nSTATUS=stopping: SIGTERM, draining (up to 5 s)"
        assert proc.wait(timeout=30) == 0, (tmp_path / "out.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "out.log").read_text()
    assert "systemd_notify_failed" not in log
    assert "systemd_watchdog_withheld" not in log


# -- the unit files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze not found: these tests check the shipped unit files with it; "
            "install the 'systemd' package (.ci/run does: apt-get install systemd)"
        )
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A --root tree: our units, the host's units, and a stub where the installer puts ours."""
    root = tmp_path / "root"
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in ("edge-agent.service", "edge-agent@.service"):
        shutil.copy(UNITS / unit, units / unit)
    # verify builds a start transaction, so the targets must be there; a symlink to the
    # host's directory would be resolved inside the root (and loop): copy it (~1 MB).
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    stub = root / "opt/edge-agent/current/bin/edge-agent"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("unit", INSTANCES)
def test_verify_reports_nothing(analyze: str, root: Path, unit: str) -> None:
    result = _run(analyze, "verify", f"--root={root}", unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_catches_a_missing_binary(analyze: str, root: Path) -> None:
    (root / "opt/edge-agent/current/bin/edge-agent").unlink()
    result = _run(analyze, "verify", f"--root={root}", "edge-agent.service")
    assert "/opt/edge-agent/current/bin/edge-agent is not executable" in result.stderr


@pytest.mark.parametrize("unit", INSTANCES)
def test_security_exposure_is_at_most_2(analyze: str, root: Path, unit: str) -> None:
    result = _run(analyze, "security", "--offline=true", f"--root={root}", "--no-pager", unit)
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


def _settings(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file (a key may repeat), comments skipped."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def _seconds(value: str) -> float:
    number = re.fullmatch(r"(\d+)(s|min)?", value)
    assert number, value
    return int(number.group(1)) * (60 if number.group(2) == "min" else 1)


@pytest.mark.parametrize("unit", ["edge-agent.service", "edge-agent@.service"])
def test_units_agree_with_the_agent(unit: str) -> None:
    s = _settings(unit)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert "78" in s["RestartPreventExitStatus"][0].split()  # exit code of a config error
    drain = AgentSection.model_fields["shutdown_timeout_s"].default
    assert _seconds(s["TimeoutStopSec"][0]) > drain
    assert _seconds(s["WatchdogSec"][0]) > drain  # no watchdog kill during the drain
    example = (ROOT / "config/example-plant.toml").read_text()
    credentials = [value.split(":")[0] for value in s["LoadCredential"]]
    for name in re.findall(r'^\w+_credential = "([^"]+)"', example, re.MULTILINE):
        assert name in credentials
    user = s["User"][0]
    sysusers = (UNITS / "edge-agent.sysusers.conf").read_text()
    assert re.search(rf"^u {user} ", sysusers, re.MULTILINE)
    if unit == "edge-agent@.service":
        assert s["StateDirectory"] == ["edge-agent/%i"]
        assert "EDGE_AGENT__AGENT__STATE_DIR=%S/edge-agent/%i" in s["Environment"]
        assert s["ExecStart"][0].endswith("--config /etc/edge-agent/%i.toml")
    else:
        assert s["StateDirectory"] == ["edge-agent"]
        assert s["ExecStart"] == [
            "/opt/edge-agent/current/bin/edge-agent run --config /etc/edge-agent/agent.toml"
        ]


def test_sysusers_creates_the_system_user(analyze: str, tmp_path: Path) -> None:
    sysusers = Path(analyze).parent / "systemd-sysusers"
    (tmp_path / "etc").mkdir()
    result = _run(str(sysusers), f"--root={tmp_path}", str(UNITS / "edge-agent.sysusers.conf"))
    assert result.returncode == 0, result.stderr
    entry = (tmp_path / "etc/passwd").read_text().splitlines()[-1].split(":")
    assert entry[0] == "edge-agent" and int(entry[2]) < 1000  # a system user
    assert entry[5:] == ["/var/lib/edge-agent", "/usr/sbin/nologin"]
