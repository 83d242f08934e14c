"""`edge-agent status` as a subprocess, against the agent as a subprocess (or against nothing).

The agent reads the simulated plant and uploads to the reference receiver; both run in this
event loop, so every child process is awaited with asyncio (a blocking wait would stall them).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.demo.cloud import CloudReceiver
from agent.demo.runner import SimulatedPlant
from tests.support.config import FEEDER_TAG, agent_config, mill_tags, modbus_source, opcua_source
from tests.support.env import clean_env
from tests.support.ports import free_port

AGENT = [sys.executable, "-m", "agent"]
WAIT_S = 120.0  # the limit of a polled wait: generous, a busy machine is only slower


def _env() -> dict[str, str]:
    return clean_env()


def write_config(tmp: Path, plant: SimulatedPlant, cloud_port: int, api_port: int) -> Path:
    return agent_config(
        "status-1",
        sources=[
            opcua_source(plant.opcua_url),
            modbus_source(plant.modbus_port, poll_interval_s=0.2),
        ],
        tags=[*mill_tags("MillPower"), FEEDER_TAG],
        sync={
            "url": f"http://127.0.0.1:{cloud_port}",
            "flush_interval_s": 0.2,
            "bandwidth_limit_bytes_per_s": 900,
        },  # a backlog drains slowly behind live
        api={"port": api_port},
    ).write(tmp / "agent.toml")


async def status(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *AGENT, "status", *args, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Agent:
    def __init__(self, config: Path, api_port: int, cloud_port: int) -> None:
        self.config, self.api_port, self.cloud_port = config, api_port, cloud_port
        self.url = f"http://127.0.0.1:{api_port}"
        self.log = config.parent / "agent.log"

    def events(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    async def status_doc(self) -> dict[str, object]:
        async with httpx.AsyncClient() as client:
            doc: dict[str, object] = (await client.get(self.url + "/status")).json()
            return doc


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    """The agent as a subprocess, its API answering; the receiver it points at is down."""
    async with SimulatedPlant(opcua_port=0, modbus_port=0, time_scale=5) as plant:
        api_port, cloud_port = free_port(), free_port()
        config = write_config(tmp_path, plant, cloud_port, api_port)
        running = Agent(config, api_port, cloud_port)
        with running.log.open("w") as log:
            proc = await asyncio.create_subprocess_exec(
                *AGENT, "run", "--config", str(config), env=_env(), stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + WAIT_S
            while True:
                assert proc.returncode is None, "the agent stopped"
                try:
                    await running.status_doc()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the API did not answer"
                    await asyncio.sleep(0.1)
            yield running
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=WAIT_S)
            assert "api_bind_failed" not in {e["event"] for e in running.events()}


async def test_status_prints_every_section(agent: Agent) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:  # until both sources have delivered
        drivers = (await agent.status_doc())["drivers"]
        assert isinstance(drivers, list)
        if all(d["samples_total"] > 0 for d in drivers):
            break
        assert time.monotonic() < deadline, drivers
        await asyncio.sleep(0.1)
    code, out, err = await status("--config", str(agent.config))
    assert (code, err) == (0, "")
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0].startswith("agent status-1  (edge-agent ")
    assert "\x1b[" not in out  # not a terminal: no colours
    for heading in ("sources", "buffer", "sync", "loops"):
        assert heading in lines
    rows = {line.split()[0]: line.split() for line in lines if " connected " in line}
    assert rows["mill"][1:5] == ["opcua", "connected", "1/0/0", "-"]  # tags good/unc/bad
    assert rows["feeders"][1:6] == ["modbus", "connected", "1/0/0", "0/0/0", "of"]
    assert int(rows["feeders"][6]) > 0  # exceptions/timeouts/garbled of that many requests
    assert "DEGRADED" not in out and "tags Bad" not in out
    labels = {line[:18].strip() for line in lines if line.startswith("  ")}
    assert {
        "uptime",
        "memory",
        "config",
        "health",
        "outage budget",
        "oldest unsent",
        "receiver",
    } <= labels
    assert any(line.startswith("  state") and "failing" in line for line in lines)
    # The same through --url.
    code, by_url, _ = await status("--url", agent.url)
    assert code == 0
    assert by_url.splitlines()[0] == lines[0]


@pytest.mark.timeout(600)
async def test_draining_backlog_shows_a_progress_bar(agent: Agent, tmp_path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:  # a backlog builds up while the receiver is down
        buffer = (await agent.status_doc())["buffer"]
        assert isinstance(buffer, dict)
        # Blocks older than the live window (10 s here) are the backlog, drained behind live.
        if (buffer["oldest_unsent_age_s"] or 0) >= 20:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    async with CloudReceiver(tmp_path / "cloud", port=agent.cloud_port):
        deadline = time.monotonic() + WAIT_S
        while True:
            code, out, _ = await status("--url", agent.url)
            assert code == 0
            bars = [line for line in out.splitlines() if line.startswith("  draining")]
            if bars:
                break
            sync = [e for e in agent.events() if str(e["event"]).startswith("sync")]
            assert time.monotonic() < deadline, (out, sync)
    (bar,) = bars
    assert bar.split()[1].startswith("[#") or bar.split()[1].startswith("[.")
    assert bar.split()[1].endswith("]")
    assert bar.split()[2].endswith("%")
    done, total = bar.split()[3].split("/")
    assert 0 <= int(done) <= int(total)
    assert int(total) >= 10


async def test_nothing_listening_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await status("--url", url)
    assert (code, out) == (1, "")
    assert err == f"edge-agent: no agent answering at {url} (connection refused); is it running?\n"


async def test_config_names_the_address_or_the_problem(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    port = free_port()
    config.write_text(
        f'[agent]\nid = "x"\n[sync]\ntoken_file = "/nonexistent"\n[api]\nport = {port}\n'
    )
    code, _, err = await status("--config", str(config))  # secrets are not read: only [api]
    assert (code, err) == (1, f"edge-agent: no agent answering at http://127.0.0.1:{port} "
                              "(connection refused); is it running?\n")  # fmt: skip
    config.write_text('[agent]\nid = "x"\n[api]\nenabled = false\n')
    code, _, err = await status("--config", str(config))
    assert code == 1
    assert err == (
        f"edge-agent: the local API is off in {config} ([api] enabled = false): "
        "no status to ask for\n"
    )
    config.write_text('[agent]\nid = "x"\n[api]\nport = "high"\n')
    code, _, err = await status("--config", str(config))
    assert code == 78
    assert err.startswith(f"edge-agent: {config}: api.port: ")
    assert len(err.splitlines()) == 1
