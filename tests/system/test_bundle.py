"""The offline bundle: built from uv.lock, installed with pip --no-index, run, upgraded, rolled back.

The bundle is built once per session (tools/build_bundle.py; the wheels come from the pip
cache or the registry) and installed with `install.sh --root TMP --no-systemd`, so nothing
outside the temporary directory is touched. The installed agent (its own venv, no access to
the repo) checks the shipped demo config and runs against the simulator served from the repo
venv. A wheel changed after the build must be refused, leaving `current` as it was. The
bundle carries nothing only the demo needs (matplotlib is the `demo` extra), and the
installed demo runs without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.support.config import ConfigDoc, sub_once
from tests.support.env import clean_env
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/opt/edge-agent"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env() -> dict[str, str]:
    env = clean_env()
    for key in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    return env


def _install(
    bundle: Path, root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """install.sh under `root`; without `env` (a systemctl to use) with --no-systemd."""
    systemd = [] if env is not None else ["--no-systemd"]
    return subprocess.run(
        ["bash", str(bundle / "install.sh"), "--root", str(root), *systemd, *args],
        capture_output=True, text=True, check=False, timeout=240, env=env or _env(),
    )  # fmt: skip


def _link(root: Path, name: str) -> str:
    return os.readlink(root / PREFIX.lstrip("/") / name)


def _reseal(bundle: Path, *names: str) -> None:
    """Rewrite the SHA256SUMS lines of `names`, as someone altering the bundle would."""
    sums = bundle / "SHA256SUMS"
    lines = []
    for line in sums.read_text().splitlines():
        digest, name = line.split("  ", 1)
        lines.append(f"{_sha256(bundle / name) if name in names else digest}  {name}\n")
    sums.write_text("".join(lines))


def _copy_as_version(bundle: Path, dest: Path, version: str) -> Path:
    shutil.copytree(bundle, dest)
    meta = dest / "BUNDLE"
    meta.write_text(sub_once(r"(?m)^version=.*$", f"version={version}", meta.read_text()))
    _reseal(dest, "BUNDLE")
    return dest


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/build_bundle.py"), "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=400, env=_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (tarball,) = out.glob("edge-agent-*.tar.gz")
    version = re.search(r'(?m)^version = "(.+)"$', (ROOT / "pyproject.toml").read_text())
    assert version is not None
    assert tarball.name.startswith(f"edge-agent-{version[1]}-cp3")
    assert (out / "SHA256SUMS").read_text() == f"{_sha256(tarball)}  {tarball.name}\n"
    with tarfile.open(tarball) as tar:
        tar.extractall(out, filter="data")
    unpacked = out / tarball.name.removesuffix(".tar.gz")
    listed = {}
    for line in (unpacked / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert _sha256(unpacked / name) == digest, name
        listed[name] = digest
    files = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    assert files - {"SHA256SUMS"} == set(listed)
    assert "install.sh" in listed
    assert "config/example-plant.toml" in listed
    assert any(name.startswith("wheels/edge_agent-") for name in listed)
    requirements = (unpacked / "requirements.txt").read_text()
    assert "--hash=sha256:" in requirements
    assert "pytest" not in requirements  # no dev dependencies
    return unpacked


@pytest.fixture(scope="session")
def installed(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    result = _install(bundle, root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def simulator() -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "simulate", "--opcua-port", "0", "--modbus-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        event: dict[str, Any] = {}
        while event.get("event") != "simulated_plant_started":  # its start-up lines, however many
            line = proc.stdout.readline()
            assert line, "the simulator ended during its start-up"
            event = json.loads(line)
        yield str(event["opcua_url"]), int(event["modbus_port"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _blocks(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return int(con.execute("SELECT count(*) FROM blocks").fetchone()[0]) if (
            "blocks" in tables) else 0  # fmt: skip


@pytest.mark.timeout(600)
def test_installed_agent_checks_the_demo_config_and_runs_against_the_simulator(
    bundle: Path, installed: Path, simulator: tuple[str, int], tmp_path: Path
) -> None:
    venv = installed / PREFIX.lstrip("/") / "0.1.0"
    agent = venv / "bin" / "edge-agent"
    shipped = venv / "share/edge-agent/config/demo.toml"
    assert (installed / "etc/edge-agent/agent.toml.example").read_bytes() == (
        bundle / "config/example-plant.toml"
    ).read_bytes()
    check = subprocess.run([str(agent), "check", "--config", str(shipped)],
                           capture_output=True, text=True, check=False, timeout=60, env=_env())  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "OK: agent" in check.stdout
    # the installed agent imports from its own venv, never from the repo
    where = subprocess.run([str(venv / "bin/python"), "-c", "import agent; print(agent.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path, env=_env())  # fmt: skip
    assert where.stdout.startswith(str(venv))

    opcua_url, modbus_port = simulator
    demo = ConfigDoc.read(shipped)
    demo.set("sources[kind=opcua].endpoint", opcua_url)
    demo.set("sources[kind=modbus].port", modbus_port)
    demo.set("agent.state_dir", str(tmp_path / "state"))
    demo.set("api.port", free_port())
    config = shipped.with_name(f"{tmp_path.name}.toml")  # beside it: ../models stays valid
    demo.write(config)
    db = tmp_path / "state" / "buffer.db"
    env = {**_env(), "EDGE_AGENT__SYNC__ENABLED": "false"}  # no receiver: blocks stay buffered
    proc = subprocess.Popen([str(agent), "run", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        first = 0
        while (count := _blocks(db)) < first + 2 or first == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"the buffer did not grow: {count} blocks"
            first = first or count
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "agent_started" in events
    assert events[-1] == "agent_stopped"


# matplotlib draws only the demo's chart (the `demo` extra); these come with it alone.
DEMO_ONLY = {"matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pillow", "pyparsing"}


def _dist(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_plant_install_carries_no_demo_only_dependency(bundle: Path, installed: Path) -> None:
    requirements = (bundle / "requirements.txt").read_text()
    pinned = {
        _dist(m[1]) for m in re.finditer(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==", requirements)
    }
    assert "edge-agent" in pinned and "numpy" in pinned, pinned  # the parse found the pins
    assert not pinned & DEMO_ONLY, sorted(pinned & DEMO_ONLY)
    wheels = {_dist(w.name.split("-")[0]) for w in (bundle / "wheels").glob("*.whl")}
    assert not wheels & DEMO_ONLY, sorted(wheels & DEMO_ONLY)
    python = installed / PREFIX.lstrip("/") / "0.1.0/bin/python"
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, importlib.util as u, sys\n"
         "print(sorted(n for n in sys.argv[1:] if u.find_spec(n) is not None))\n"
         "print('\\n'.join(m.metadata('edge-agent').get_all('Requires-Dist') or []))",
         "matplotlib", "contourpy", "cycler", "fontTools", "kiwisolver", "PIL", "pyparsing"],
        capture_output=True, text=True, check=True, timeout=60, env=_env(),
    )  # fmt: skip
    importable, *requires = probe.stdout.splitlines()
    assert importable == "[]", importable
    # ... and the `demo` extra still names it (`./run demo` in a source checkout installs it)
    demo_extra = [
        r for r in map(Requirement, requires)
        if r.marker is not None and r.marker.evaluate({"extra": "demo"})
        and not r.marker.evaluate({"extra": ""})
    ]  # fmt: skip
    assert [r.name for r in demo_extra] == ["matplotlib"], requires


@pytest.mark.timeout(600)  # a hang guard: a busy machine stretches the set-up
def test_the_installed_demo_tells_its_story_without_matplotlib(
    installed: Path, tmp_path: Path
) -> None:
    """The plant install has no matplotlib: `edge-agent demo` runs the whole story all the
    same, and says the chart needs matplotlib instead of drawing it."""
    agent = installed / PREFIX.lstrip("/") / "0.1.0/bin/edge-agent"
    result = subprocess.run(
        [str(agent), "demo", "--duration", "75", "--opcua-port", "0", "--modbus-port", "0"],
        capture_output=True, text=True, check=False, timeout=560, cwd=tmp_path,
        env={**_env(), "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert re.search(r"(?m)^summary: co2_per_t ", result.stdout), result.stdout[-3000:]
    assert re.search(
        r"(?m)^chart: not drawn: matplotlib is not installed; the chart needs matplotlib, which "
        r"the plant install leaves out: run \./run demo from a source checkout to get it$",
        result.stdout,
    ), result.stdout[-3000:]
    assert not list(tmp_path.rglob("*.png"))


def test_the_install_creates_the_user_and_the_units_enable_with_the_real_systemd_tools(
    installed: Path,
) -> None:
    """systemd-sysusers (run by install.sh --root) and `systemctl --root DIR enable`, both the
    machine's own, on the installed tree: the user the unit runs as, the owners of the
    configuration and state directories, and the units plant IT enables."""
    passwd = (installed / "etc/passwd").read_text().splitlines()
    (entry,) = [line.split(":") for line in passwd if line.startswith("edge-agent:")]
    uid, gid, home, shell = int(entry[2]), int(entry[3]), entry[5], entry[6]
    assert 0 < uid < 1000 and home == "/var/lib/edge-agent" and shell.endswith("nologin")
    assert f"edge-agent:x:{gid}:" in (installed / "etc/group").read_text()
    state, etc = (installed / "var/lib/edge-agent").stat(), (installed / "etc/edge-agent").stat()
    if os.geteuid() == 0:  # install.sh sets the owners only as root (CI runs as root)
        assert (state.st_uid, state.st_gid) == (uid, gid)
        assert (etc.st_uid, etc.st_gid) == (0, gid)
    assert (state.st_mode & 0o777, etc.st_mode & 0o777) == (0o750, 0o750)
    units = installed / "etc/systemd/system"
    for unit in ("edge-agent.service", "edge-agent@line1.service"):
        enable = subprocess.run(["systemctl", f"--root={installed}", "enable", unit],
                                capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
        assert enable.returncode == 0, enable.stderr
        link = units / "multi-user.target.wants" / unit
        target = "edge-agent@.service" if "@" in unit else unit
        assert os.readlink(link) == f"/etc/systemd/system/{target}"
    enabled = subprocess.run(["systemctl", f"--root={installed}", "is-enabled", "edge-agent.service"],
                             capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    assert enabled.stdout.strip() == "enabled"


SYSTEMCTL_STAND_IN = """\
#!{python}
# A stand-in for systemctl where systemd is not PID 1: runs each unit's command as a detached
# process with a pid file of its own (edge-agent.service: etc/edge-agent/agent.toml,
# edge-agent@LINE.service: etc/edge-agent/LINE.toml), so install.sh's restart / health check /
# roll-back run for real. Every call is appended to STAND_IN_STATE/calls. A file UNIT.activating
# beside the pid file makes a live unit "activating" (waiting for READY=1) until its restart.
import glob, os, signal, subprocess, sys, time
state, root = os.environ["STAND_IN_STATE"], os.environ["STAND_IN_ROOT"]
open(os.path.join(state, "calls"), "a").write(" ".join(sys.argv[1:]) + "\\n")
args = [a for a in sys.argv[1:] if not a.startswith("--")]

def pidfile(unit):
    return os.path.join(state, unit + ".pid")

def alive(unit):
    try:
        pid = int(open(pidfile(unit)).read())
        return open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, ValueError):
        return False

def stop(unit):
    if alive(unit):
        os.kill(int(open(pidfile(unit)).read()), signal.SIGTERM)
        while alive(unit):
            time.sleep(0.1)

def config(unit):
    line = unit.removeprefix("edge-agent@").removesuffix(".service")
    return root + "/etc/edge-agent/" + (line if unit.startswith("edge-agent@") else "agent") + ".toml"

def state_of(unit):
    if not alive(unit):
        return "inactive"
    return "activating" if os.path.exists(os.path.join(state, unit + ".activating")) else "active"

verb, units = args[0], args[1:]
if verb == "restart":
    for unit in units:
        stop(unit)
        if os.path.exists(os.path.join(state, unit + ".activating")):
            os.unlink(os.path.join(state, unit + ".activating"))
        log = open(os.path.join(state, unit + ".log"), "ab")
        proc = subprocess.Popen([root + "/opt/edge-agent/current/bin/edge-agent", "run",
                                 "--config", config(unit)], stdout=log, stderr=log,
                                start_new_session=True)
        open(pidfile(unit), "w").write(str(proc.pid))
elif verb == "stop":
    for unit in units:
        stop(unit)
elif verb == "is-active":
    states = [state_of(unit) for unit in units]
    if "--quiet" not in sys.argv:
        print("\\n".join(states))
    sys.exit(0 if set(states) == {{"active"}} else 3)
elif verb == "list-units":
    wanted = next(a for a in sys.argv if a.startswith("--state=")).split("=")[1].split(",")
    for path in sorted(glob.glob(os.path.join(state, "edge-agent@*.service.pid"))):
        unit = os.path.basename(path).removesuffix(".pid")
        if state_of(unit) in wanted:
            print(unit + " loaded " + state_of(unit) + " running edge-agent for line")
elif verb == "is-enabled":
    sys.exit(0)
elif verb != "daemon-reload":
    sys.exit(1)
"""


def _bad_release(bundle: Path, dest: Path, version: str) -> Path:
    """A release that passes `check` but whose `run` hangs before serving /healthz."""
    copy = _copy_as_version(bundle, dest, version)
    (wheel,) = (copy / "wheels").glob("edge_agent-*.whl")
    rebuilt = wheel.with_suffix(".new")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "agent/__init__.py":
                data += b"\nimport sys as _s, time as _t\nif _s.argv[1:2] == ['run']:\n    _t.sleep(600)\n"
            out.writestr(item, data)
    rebuilt.replace(wheel)
    requirements = copy / "requirements.txt"
    requirements.write_text(
        sub_once(r"(edge-agent==\S+ \\\n    --hash=sha256:)\w+", rf"\g<1>{_sha256(wheel)}",
               requirements.read_text())
    )  # fmt: skip
    _reseal(copy, f"wheels/{wheel.name}", "requirements.txt")
    return copy


@pytest.fixture(scope="session")
def bad_release(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bad_release(bundle, tmp_path_factory.mktemp("bad") / "bundle", "0.1.1")


@pytest.mark.timeout(600)
def test_upgrade_keeps_the_previous_version_and_rollback_switches_back(
    bad_release: Path, installed: Path
) -> None:
    dest = installed / PREFIX.lstrip("/")
    assert _link(installed, "current") == "0.1.0"
    (installed / "etc/edge-agent/site.toml").write_text("# plant IT's own file\n")
    newer = bad_release  # its `run` hangs, but without systemd nothing runs it
    result = _install(newer, installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (_link(installed, "current"), _link(installed, "previous")) == ("0.1.1", "0.1.0")
    assert (dest / "0.1.0/bin/edge-agent").exists()
    assert (dest / "0.1.1/bin/edge-agent").exists()
    assert (installed / "etc/edge-agent/site.toml").read_text() == "# plant IT's own file\n"

    again = _install(newer, installed)  # idempotent: nothing reinstalled, nothing switched
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stdout
    assert (_link(installed, "current"), _link(installed, "previous")) == ("0.1.1", "0.1.0")

    back = _install(newer, installed, "--rollback")
    assert back.returncode == 0, back.stderr
    assert (_link(installed, "current"), _link(installed, "previous")) == ("0.1.0", "0.1.1")
    assert "rolled back: current -> 0.1.0" in back.stdout


@pytest.mark.timeout(600)
def test_tampered_wheel_is_refused_and_current_is_unchanged(
    bundle: Path, installed: Path, tmp_path: Path
) -> None:
    before = _link(installed, "current")
    altered = _copy_as_version(bundle, tmp_path / "altered", "0.2.0")
    (wheel,) = (altered / "wheels").glob("edge_agent-*.whl")
    with wheel.open("ab") as f:
        f.write(b"\0")  # still a valid zip: only the hash can tell

    result = _install(altered, installed)  # the bundle's own checksums catch it first
    assert result.returncode == 1
    assert f"damaged or altered, nothing was installed: wheels/{wheel.name}: FAILED" in (
        result.stderr
    )

    _reseal(altered, f"wheels/{wheel.name}")  # checksums forged: pip's --require-hashes refuses
    result = _install(altered, installed)
    assert result.returncode == 1
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stderr
    assert "pip refused the bundle's wheels" in result.stderr
    assert f"current is still '{before}'" in result.stderr
    assert _link(installed, "current") == before
    assert not (installed / PREFIX.lstrip("/") / "0.2.0").exists()


def _healthz(port: int) -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                return int(answer.status)
        except OSError:
            assert time.monotonic() < deadline, "nothing answers /healthz"
            time.sleep(0.5)


@pytest.mark.timeout(600)
def test_unhealthy_upgrade_is_rolled_back_automatically(
    bad_release: Path, installed: Path, tmp_path: Path
) -> None:
    """With a systemctl found by name on PATH, as on a plant PC: an upgrade restarts only the
    units that run (edge-agent.service and a line's edge-agent@.service), and puts both back
    on the previous version when the new one does not answer /healthz in time."""
    before = _link(installed, "current")
    etc = installed / "etc/edge-agent"
    ports = {"edge-agent.service": free_port(), "edge-agent@line2.service": free_port()}
    for unit, name in (("edge-agent.service", "agent"), ("edge-agent@line2.service", "line2")):
        (etc / f"{name}.toml").write_text(
            f'[agent]\nid = "hc-{name}"\nstate_dir = "{tmp_path / name}"\n'
            f"shutdown_timeout_s = 5\n\n[api]\nport = {ports[unit]}\n"
        )
    bin_dir, svc = tmp_path / "bin", tmp_path / "svc"
    bin_dir.mkdir()
    svc.mkdir()
    stand_in = bin_dir / "systemctl"
    stand_in.write_text(SYSTEMCTL_STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    env = {**_env(), "EDGE_AGENT_SYSTEMCTL": "systemctl", "STAND_IN_STATE": str(svc),
           "STAND_IN_ROOT": str(installed), "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # fmt: skip

    def restarts() -> list[str]:
        calls = (svc / "calls").read_text().splitlines() if (svc / "calls").exists() else []
        return [call for call in calls if call.startswith("restart")]

    try:
        # Nothing runs: the upgrade switches and starts nothing (a stopped unit stays stopped).
        quiet = _install(bad_release, installed, "--health-timeout", "8", env=env)
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        assert _link(installed, "current") == "0.1.1" and restarts() == []
        back = _install(bad_release, installed, "--rollback", env=env)
        assert back.returncode == 0, back.stdout + back.stderr
        assert _link(installed, "current") == before and restarts() == []

        subprocess.run([str(stand_in), "restart", *ports], env=env, check=True, timeout=60)
        assert all(_healthz(port) == 200 for port in ports.values())
        # One still waits for READY=1 ("activating"): it runs too and must be restarted.
        (svc / "edge-agent.service.activating").touch()
        result = _install(bad_release, installed, "--health-timeout", "8", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "version 0.1.1 failed its health check and was rolled back to" in result.stderr
        assert "rolled back to 0.1.0" in result.stdout
        assert (_link(installed, "current"), _link(installed, "previous")) == (before, "0.1.1")
        assert restarts()[-2:] == [f"restart --no-block {unit}" for unit in ports]
        assert all(_healthz(port) == 200 for port in ports.values())  # the old version again
    finally:
        subprocess.run([str(stand_in), "stop", *ports], env=env, check=False, timeout=60)
        for name in ("agent", "line2"):
            (etc / f"{name}.toml").unlink()
