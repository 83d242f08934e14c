"""A stop request at any moment of start-up is an orderly exit 0 (systemd sends them then too).

The agent runs as a subprocess on the demo configuration (two sources, sync, the local API,
two control loops with a signed model): everything start-up opens. It is stopped at points
of its start-up observed from outside, never after a guessed delay:
- as soon as it has a SIGTERM handler (its SigCgt mask in /proc/PID/status);
- during its imports, just after a given heavy module was imported (Python's own
  `PYTHONPROFILEIMPORTTIME` lines on stderr);
- after its 1st, 2nd, ... log line, up to the line after `agent_started`.
Each time: exit 0, no traceback, no error logged, the shutdown logged, and the buffer, if
it was opened, closed in order (`buffer_closed`). Both entry points are used: `python -m
agent` and the `edge-agent` script.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.demo.cloud import CloudReceiver
from agent.demo.runner import SimulatedPlant
from agent.demo.show import write_demo_config
from agent.demo.stage import MODELS
from tests.support.config import ConfigDoc
from tests.support.env import clean_env
from tests.support.ports import free_port

MODULE = [sys.executable, "-m", "agent"]
SCRIPT = [str(Path(sys.executable).with_name("edge-agent"))]  # the console script systemd runs
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)
START_S = 120.0  # generous for a busy 2-core machine: every wait polls observed progress
# Imported by `run` after its first line (agent.cli.main's main), in this order.
HEAVY_IMPORTS = ("pydantic", "agent.config.loader", "structlog", "asyncua", "agent.service.app")


def _env(**extra: str) -> dict[str, str]:
    env = clean_env()
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # The drain's limit (10 s in the demo config) is not under test: a busy machine may
    # need longer, and a forced exit (code 1) would then hide what is.
    env["EDGE_AGENT__AGENT__SHUTDOWN_TIMEOUT_S"] = "120"
    return {**env, **extra}


def caught_signals(pid: int) -> int:
    """The process's SigCgt mask (the signals it has a handler for); 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next(ln for ln in status.splitlines() if ln.startswith("SigCgt:"))
    return int(line.split()[1], 16)


@pytest.fixture
async def config(tmp_path: Path) -> AsyncIterator[Path]:
    async with (
        SimulatedPlant(opcua_port=0, modbus_port=0, time_scale=5) as plant,
        CloudReceiver(tmp_path / "cloud") as cloud,
    ):
        path = write_demo_config(tmp_path, plant.opcua_url, plant.modbus_port, cloud.url)
        config = ConfigDoc.read(path)
        config.set("agent.models_dir", str(MODELS))
        config.set("agent.model_public_key_file", str(MODELS / "demo-signing-key.pub.pem"))
        config.set("api.port", free_port())
        config.write(path)
        yield path


async def _start(command: list[str], config: Path, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, "run", "--config", str(config), env=_env(**env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _line(stream: asyncio.StreamReader | None, what: str) -> bytes:
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), START_S)
    assert line, f"the agent ended before {what}"
    return line


_SIGNALS = itertools.cycle([signal.SIGTERM, signal.SIGTERM, signal.SIGINT])


async def _stop(proc: asyncio.subprocess.Process, where: str, seen: bytes = b"") -> list[str]:
    """SIGTERM (SIGINT every third time) the agent, wait for its exit, check it was
    orderly; return its log's event names."""
    signum = next(_SIGNALS)
    try:
        proc.send_signal(signum)
        out, err = await asyncio.wait_for(proc.communicate(), START_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    text = seen.decode() + out.decode()
    report = f"{signum.name} {where}: exit {proc.returncode}\n{text}{err.decode()[-3000:]}"
    assert proc.returncode == 0, report
    assert "Traceback" not in text + err.decode(), report
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    names = [e["event"] for e in events]
    assert "shutdown_requested" in names, report
    assert names[-1] == "agent_stopped", report
    assert not [e for e in events if e["level"] in ("error", "critical")], report
    if "buffer_opened" in names:  # released what it opened: the buffer was closed, in order
        assert names[-2:] == ["buffer_closed", "agent_stopped"], report
    return names


@pytest.mark.timeout(1800)
async def test_a_stop_request_at_any_point_of_start_up_exits_0(config: Path) -> None:
    # As soon as the process handles SIGTERM at all.
    for command in (MODULE, SCRIPT):
        proc = await _start(command, config)
        deadline = time.monotonic() + START_S
        while not caught_signals(proc.pid) & SIGTERM_BIT:
            assert proc.returncode is None, await proc.communicate()
            assert time.monotonic() < deadline, "no SIGTERM handler within the deadline"
            await asyncio.sleep(0.001)
        await _stop(proc, "as soon as it had a handler")

    # During the imports: just after each heavy module is imported.
    for number, module in enumerate(HEAVY_IMPORTS):
        proc = await _start(SCRIPT if number % 2 else MODULE, config, PYTHONPROFILEIMPORTTIME="1")
        seen = b""
        while seen.rpartition(b"|")[2].strip() != module.encode():
            seen = await _line(proc.stderr, f"importing {module}")
        await _stop(proc, f"just after importing {module}")

    # After each log line of the start-up, until the line after `agent_started`.
    lines = 1
    while True:
        proc = await _start(MODULE if lines % 2 else SCRIPT, config)
        seen = b"".join([await _line(proc.stdout, f"log line {lines}") for _ in range(lines)])
        names = await _stop(proc, f"after {lines} log lines", seen)
        if "agent_started" in names[: lines - 1]:
            break
        lines += 1
    assert lines >= 3, names  # the buffer and the model report before the agent starts


@pytest.mark.timeout(600)
async def test_a_start_up_failure_is_reported_even_when_a_stop_came_meanwhile(
    config: Path,
) -> None:
    """A stop request while the buffer is being opened must not hide that it cannot open:
    another process holds an exclusive lock on buffer.db beyond SQLite's lock timeout."""
    state = config.parent / "state"
    state.mkdir(exist_ok=True)
    buffer_file = state / "buffer.db"
    holder = sqlite3.connect(buffer_file, isolation_level=None)  # a rollback journal, not WAL
    try:
        holder.execute("CREATE TABLE squatter (x)")
        holder.execute("BEGIN EXCLUSIVE")
        proc = await _start(MODULE, config)
        deadline = time.monotonic() + START_S
        while not _has_open(proc.pid, buffer_file):  # it is inside the opening, waiting
            assert proc.returncode is None, await proc.communicate()
            assert time.monotonic() < deadline, "the agent never opened buffer.db"
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), START_S)
    finally:
        holder.close()
    report = f"exit {proc.returncode}\n{out.decode()}{err.decode()[-3000:]}"
    assert proc.returncode == 78, report
    assert "agent.state_dir: expected a buffer file the agent can open" in err.decode(), report
    assert "Traceback" not in out.decode() + err.decode(), report


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(Path(f"/proc/{pid}/fd/{fd}").resolve() == path.resolve()
                   for fd in os.listdir(f"/proc/{pid}/fd"))  # fmt: skip
    except OSError:  # the process is gone, or an fd closed while looking
        return False
