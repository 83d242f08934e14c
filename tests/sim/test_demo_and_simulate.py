"""`edge-agent demo` and `edge-agent simulate` as subprocesses, checked over the protocols."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from asyncua.client.client import Client

from agent.demo.tags import NAMESPACE_URI

AGENT = [sys.executable, "-m", "agent"]
# `python -m agent` started the way a non-interactive shell starts a background job: SIGINT
# ignored (inherited through exec), which a serving command must override to stop on it.
AGENT_SIGINT_IGNORED = [
    sys.executable, "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, '-m', 'agent', *sys.argv[1:]])",
]  # fmt: skip
WAIT_S = 120.0  # the limit of a polled wait: start-ups take seconds more on a busy machine


def test_demo_refuses_a_duration_too_short_for_its_story() -> None:
    # The whole story is checked by tests/sim/test_demo_story.py.
    result = subprocess.run(
        [*AGENT, "demo", "--duration", "5", "--opcua-port", "0", "--modbus-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--duration must be at least 75 s to tell the whole story, found 5" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_demo_refuses_a_bad_duration() -> None:
    result = subprocess.run(
        [*AGENT, "demo", "--duration", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--duration must be a positive number, found -1" in result.stderr


@pytest.mark.timeout(300)  # the test's own waits (WAIT_S) end first, with the evidence
async def test_simulate_serves_the_mill_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        *AGENT_SIGINT_IGNORED,
        "simulate",
        "--opcua-port",
        "48411",
        "--modbus-port",
        "50211",
        "--time-scale",
        "10",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread's stack
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                async with Client("opc.tcp://127.0.0.1:48411", timeout=10) as client:
                    index = await client.get_namespace_index(NAMESPACE_URI)
                    node = client.get_node(f"ns={index};s=Plant/Mill1/SeparatorSpeed")
                    value = await node.read_value()
                    break
            except (OSError, TimeoutError):
                assert time.monotonic() < deadline, "simulator did not come up"
                await asyncio.sleep(0.3)
        assert 900 < value < 1000
        proc.send_signal(signal.SIGINT)
        stopping = asyncio.ensure_future(proc.communicate())
        done, _ = await asyncio.wait({stopping}, timeout=WAIT_S)
        if not done:  # keep the simulator's stacks (a SIGINT it ignored hung here once)
            proc.send_signal(signal.SIGABRT)
            _, err = await stopping
            pytest.fail(f"simulate did not stop {WAIT_S:g} s after SIGINT:\n{err.decode()}")
        _, err = stopping.result()
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def test_cloud_command_serves_the_sync_api_until_terminated(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *AGENT, "cloud", "--port", "48812", "--data", str(tmp_path / "cloud"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        async with httpx.AsyncClient(base_url="http://127.0.0.1:48812") as client:
            while True:
                try:
                    schema = (await client.get("/openapi.json")).json()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the receiver did not come up"
                    await asyncio.sleep(0.3)
            assert "/v1/agents/{agent_id}/blocks/{epoch}/{seq}" in schema["paths"]
            refused = await client.post(
                "/v1/agents/a1/blocks/" + "0" * 32 + "/1",
                content=b"not a block",
                headers={"Content-Type": "application/vnd.edge-agent.block"},
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["status"] == "rejected"
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
        assert proc.returncode == 0, err
        assert b'"event": "cloud_receiver_stopped"' in out
        assert (tmp_path / "cloud").is_dir()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
