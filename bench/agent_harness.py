"""Benchmark harness: the agent and its peers as real subprocesses, and what /proc says of them.

Owns, for bench_memory.py and bench_startup.py: starting the plant server (plant_server.py),
the reference receiver, the simulator and the agent
(``edge-agent run --config FILE``) and stopping each by the PID it started, writing agent
configurations that pass ``edge-agent check``, and reading a process's memory (VmRSS, VmHWM,
smaps_rollup Pss / USS) and CPU from /proc.
Must not: import the agent's modules into the measuring process (the agent is measured as a
separate process), assert anything, or kill a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
EDGE_AGENT = str(ROOT / ".venv" / "bin" / "edge-agent")
SERVER = Path(__file__).resolve().parent / "plant_server.py"
NS = "urn:edge-agent:bench:plant"  # plant_server.NS
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EDGE_AGENT__")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    return env


def wait_port(port: int, proc: subprocess.Popen[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listened on port {port} after {timeout_s:g} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> int | None:
    """SIGTERM the process we started (by its PID), SIGKILL it if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


# -- peers (subprocesses) ------------------------------------------------------------------


@contextlib.contextmanager
def plant_server(count: int, change: float, log: Path) -> Iterator[tuple[int, int]]:
    """The server in a subprocess; yields (port, pid) once its variables exist."""
    port = free_port()
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--serve", str(port), str(count), str(change)],
            stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"READY":
            raise RuntimeError(f"the plant server did not start: {line!r}, see {log}")
        yield port, proc.pid
    finally:
        stop(proc)


@contextlib.contextmanager
def receiver(data: Path, log: Path) -> Iterator[tuple[int, int]]:
    """``edge-agent cloud`` in a subprocess; yields (port, pid)."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [EDGE_AGENT, "cloud", "--port", str(port), "--data", str(data)],
            stdout=out, stderr=out, env=clean_env(),
        )  # fmt: skip
    try:
        wait_port(port, proc, 60)
        yield port, proc.pid
    finally:
        stop(proc)


@contextlib.contextmanager
def simulator(log: Path) -> Iterator[tuple[int, int]]:
    """``edge-agent simulate`` (the demo mill) in a subprocess; yields (opcua, modbus) ports."""
    opcua, modbus = free_port(), free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [EDGE_AGENT, "simulate", "--opcua-port", str(opcua), "--modbus-port", str(modbus)],
            stdout=out, stderr=out, env=clean_env(),
        )  # fmt: skip
    try:
        wait_port(opcua, proc, 60)
        wait_port(modbus, proc, 60)
        yield opcua, modbus
    finally:
        stop(proc)


# -- configurations -------------------------------------------------------------------------


def plant_config(
    path: Path, *, opcua_port: int, count: int, state_dir: Path, sync_url: str | None,
    api_port: int,
) -> Path:  # fmt: skip
    """An agent with ``count`` subscribed tags on the plant server, no loops."""
    lines = [
        "[agent]", 'id = "bench-plant"', f'state_dir = "{state_dir}"', 'log_level = "info"',
        "shutdown_timeout_s = 30", "",
        "[[sources]]", 'kind = "opcua"', 'name = "plc"',
        f'endpoint = "opc.tcp://127.0.0.1:{opcua_port}/"', 'security_policy = "None"',
        'security_mode = "None"', 'acquisition = "subscription"', "publishing_interval_s = 1.0",
        "sampling_interval_s = 0.5", "timeout_s = 30.0", "",
    ]  # fmt: skip
    for i in range(count):
        lines += ["[[tags]]", f'name = "plc.V{i}"', 'source = "plc"',
                  f'address = "nsu={NS};s=V{i}"', ""]  # fmt: skip
    lines += ["[sync]", f"enabled = {'true' if sync_url else 'false'}"]
    if sync_url:
        lines.append(f'url = "{sync_url}"')
    lines += ["flush_interval_s = 1.0", "", "[api]", "enabled = true", 'host = "127.0.0.1"',
              f"port = {api_port}", ""]  # fmt: skip
    path.write_text("\n".join(lines))
    return path


def demo_config(
    path: Path, *, opcua_port: int, modbus_port: int, state_dir: Path, sync_url: str,
    api_port: int,
) -> Path:  # fmt: skip
    """config/demo.toml (55 tags, two closed loops on the signed demo model) pointed at our
    simulator, receiver, state directory and API port."""
    text = (ROOT / "config" / "demo.toml").read_text()
    swaps = {
        'state_dir = "../state/demo"': f'state_dir = "{state_dir}"',
        'models_dir = "../models"': f'models_dir = "{ROOT / "models"}"',
        'model_public_key_file = "../models/demo-signing-key.pub.pem"':
            f'model_public_key_file = "{ROOT / "models" / "demo-signing-key.pub.pem"}"',
        "opc.tcp://127.0.0.1:4840": f"opc.tcp://127.0.0.1:{opcua_port}",
        "port = 5020": f"port = {modbus_port}",
        "http://127.0.0.1:8800": sync_url,
        "port = 8787": f"port = {api_port}",
    }  # fmt: skip
    for old, new in swaps.items():
        if old not in text:
            raise RuntimeError(f"config/demo.toml no longer contains {old!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return path


def check_config(path: Path) -> str:
    result = subprocess.run([EDGE_AGENT, "check", "--config", str(path)], capture_output=True,
                            text=True, check=False, env=clean_env())  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"edge-agent check failed: {result.stderr.strip()}")
    return result.stdout.strip()


def start_agent(
    config: Path, log: IO[bytes], pycache: Path | None = None
) -> subprocess.Popen[bytes]:
    """The agent; with ``pycache``, Python reads and writes its bytecode there (as an
    installed package with compiled .pyc files would run), whatever PYTHONDONTWRITEBYTECODE
    says in this environment."""
    env = clean_env()
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return subprocess.Popen([EDGE_AGENT, "run", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip


def warm_bytecode(pycache: Path) -> Path:
    """Compile what the agent imports into ``pycache`` (see ``start_agent``)."""
    env = clean_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    code = "import agent.service.app, agent.cli.main, agent.control.loop, onnxruntime"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return pycache


def telemetry_blocks(state_dir: Path) -> int:
    """Telemetry blocks in the buffer (0 while the file or its tables do not exist yet)."""
    path = state_dir / "buffer.db"
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=0.05)) as db:  # fmt: skip
            return int(db.execute("SELECT count(*) FROM blocks WHERE kind = 1").fetchone()[0])
    except sqlite3.Error:
        return 0


# -- /proc -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    rss: int  # VmRSS, bytes
    hwm: int  # VmHWM (peak RSS), bytes
    pss: int  # smaps_rollup Pss, bytes
    uss: int  # smaps_rollup Private_Clean + Private_Dirty, bytes
    threads: int


def memory_of(pid: int) -> Memory:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    rollup: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0]) * 1024
    return Memory(
        rss=int(status["VmRSS"].split()[0]) * 1024,
        hwm=int(status["VmHWM"].split()[0]) * 1024,
        pss=rollup["Pss"],
        uss=rollup["Private_Clean"] + rollup["Private_Dirty"],
        threads=int(status["Threads"]),
    )


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
