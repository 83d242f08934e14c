"""`edge-agent demo` and `edge-agent simulate` as subprocesses, checked over the protocols."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from asyncua.client.client import Client

from agent.demo.tags import NAMESPACE_URI

AGENT = [sys.executable, "-m", "agent"]


def test_demo_runs_for_its_duration_and_exits_0() -> None:
    result = subprocess.run(
        [*AGENT, "demo", "--duration", "5", "--opcua-port", "0", "--modbus-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(
        r"simulated mill serving OPC UA at opc\.tcp://127\.0\.0\.1:\d+/ and Modbus "
        r"TCP at 127\.0\.0\.1:\d+; the agent reads 55 tags",
        lines[0],
    )
    readings = [line for line in lines if line.startswith("t=")]
    assert len(readings) >= 2
    last = readings[-1]
    feed = re.search(r"FeedRate=([\d,.]+) t/h", last)
    modbus_feed = re.search(r"TotalFeedRate=([\d,.]+) t/h", last)
    assert feed is not None and modbus_feed is not None, last
    assert 150 < float(feed[1].replace(",", "")) < 210
    assert 150 < float(modbus_feed[1].replace(",", "")) < 210
    assert "WatchdogFault=yes" in last  # nobody writes the heartbeat yet: the PLC falls back
    summary = re.search(
        r"the agent received samples over OPC UA and Modbus: "
        r"mill (\d+), modbus_gateway (\d+)",
        result.stdout,
    )
    assert summary is not None, result.stdout
    assert int(summary[1]) > 100 and int(summary[2]) > 21
    assert "Traceback" not in result.stderr


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


async def test_simulate_serves_the_mill_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        *AGENT,
        "simulate",
        "--opcua-port",
        "48411",
        "--modbus-port",
        "50211",
        "--time-scale",
        "10",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                async with Client("opc.tcp://127.0.0.1:48411", timeout=2) as client:
                    index = await client.get_namespace_index(NAMESPACE_URI)
                    node = client.get_node(f"ns={index};s=Plant/Mill1/SeparatorSpeed")
                    value = await node.read_value()
                    break
            except (OSError, TimeoutError):
                assert time.monotonic() < deadline, "simulator did not come up"
                await asyncio.sleep(0.3)
        assert 900 < value < 1000
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
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
        deadline = time.monotonic() + 20
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
        out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0, err
        assert b'"event": "cloud_receiver_stopped"' in out
        assert (tmp_path / "cloud").is_dir()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
