"""`edge-agent read`, `browse` and `opcua trust` as subprocesses against the simulated plant."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.demo.certs import OpcUaSecurity
from agent.demo.runner import SimulatedPlant
from tests.support.config import agent_config, mill_tags, modbus_source, opcua_source

AGENT = [sys.executable, "-m", "agent"]
NSU = "nsu=urn:edge-agent:demo:cement-mill;s=Plant/Mill1/"


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *AGENT, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)  # a busy machine
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _config(tmp: Path, opcua_url: str, modbus_port: int, *, secure: bool = False) -> Path:
    security = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
                "username": "operator", "password_file": "pw"}  # fmt: skip
    opcua = opcua_source(opcua_url, **(security if secure else {}))
    feeders = {"name": "TotalFeedRateSwapped", "source": "feeders", "address": "input:12",
               "type": "float32", "byte_order": "CDAB", "unit": "t/h"}  # fmt: skip
    (tmp / "pw").write_text("s3cret-pw\n")
    (tmp / "pw").chmod(0o600)
    return agent_config(
        "commissioning",
        sources=[opcua, modbus_source(modbus_port)],
        tags=[*mill_tags("SeparatorSpeed", unit="rpm"), *mill_tags("Running"), feeders],
        api={"enabled": False},
    ).write(tmp / "agent.toml")


@pytest.fixture
async def plant() -> AsyncIterator[SimulatedPlant]:
    async with SimulatedPlant(opcua_port=0, modbus_port=0, time_scale=5) as running:
        yield running


async def test_read_prints_every_tag_with_quality(plant: SimulatedPlant, tmp_path: Path) -> None:
    config = _config(tmp_path, plant.opcua_url, plant.modbus_port)
    code, out, err = await _cli("read", "--config", str(config))
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert set(rows) == {"SeparatorSpeed", "Running", "TotalFeedRateSwapped"}
    assert 900 < float(rows["SeparatorSpeed"][1]) < 1000
    assert rows["SeparatorSpeed"][2:4] == ["rpm", "GOOD"]
    assert rows["Running"][1:3] == ["True", "GOOD"]
    feed = float(rows["TotalFeedRateSwapped"][1])
    truth = plant.mill.read("FeedRate").value
    assert isinstance(truth, float) and abs(feed - truth) < 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rows["Running"][-1])


async def test_read_names_the_status_of_every_tag_not_good_and_exits_1(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    plant.mill.inject("bad", "SeparatorSpeed")  # OPC UA: the server's BadSensorFailure
    plant.mill.inject("uncertain", "Running")  # OPC UA: UncertainSensorNotAccurate, value kept
    plant.mill.inject("bad", "FeedRate")  # Modbus: input:12 is refused with 0x04
    config = _config(tmp_path, plant.opcua_url, plant.modbus_port)
    code, out, err = await _cli("read", "--config", str(config))
    assert code == 1, err
    rows = {line.split()[0]: line.split()[1:-1] for line in out.splitlines()[1:]}
    assert rows == {
        "SeparatorSpeed": ["-", "rpm", "BAD", "BadSensorFailure", "0x808C0000"],
        "Running": ["True", "UNCERTAIN", "UncertainSensorNotAccurate", "0x40930000"],
        "TotalFeedRateSwapped": ["-", "t/h", "BAD", "BadDeviceFailure", "0x808B0000"],
    }
    said = [line for line in err.splitlines() if not line.startswith("{")]  # not the JSON log
    assert said == [
        "edge-agent: 3 of 3 tags not Good: SeparatorSpeed BadSensorFailure, "
        "Running UncertainSensorNotAccurate, TotalFeedRateSwapped BadDeviceFailure"
    ]
    plant.mill.clear("bad", "FeedRate")
    code, out, err = await _cli("read", "--config", str(config), "TotalFeedRateSwapped")
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[3:6] == ["GOOD", "Good", "0x00000000"]


async def test_read_of_a_dead_endpoint_says_which_source(
    plant: SimulatedPlant, tmp_path: Path
) -> None:
    config = _config(tmp_path, "opc.tcp://127.0.0.1:1", plant.modbus_port)
    code, out, err = await _cli("read", "--config", str(config))
    assert code == 1
    assert "TotalFeedRateSwapped" in out  # the other source still answers
    assert "edge-agent: source 'mill': " in err
    assert "127.0.0.1:1" in err
    assert "Traceback" not in err


async def test_browse_lists_tags_with_nsu_ids(plant: SimulatedPlant, tmp_path: Path) -> None:
    code, out, err = await _cli(
        "browse", plant.opcua_url, "--depth", "3", "--state-dir", str(tmp_path / "state")
    )
    assert code == 0, err
    assert f"{NSU}SeparatorSpeedSetpoint" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("SeparatorSpeedSetpoint "))
    assert "Double" in line and "read/write" in line


async def test_untrusted_server_then_trust_then_read(tmp_path: Path) -> None:
    security = OpcUaSecurity(cert_dir=tmp_path / "plc-pki", users={"operator": "s3cret-pw"})
    async with SimulatedPlant(opcua_port=0, modbus_port=0, security=security) as plant:
        config = _config(tmp_path, plant.opcua_url, plant.modbus_port, secure=True)
        code, _, err = await _cli("read", "--config", str(config), "SeparatorSpeed")
        assert code == 1
        rejected = sorted((tmp_path / "state" / "pki" / "rejected").glob("*.der"))
        assert len(rejected) == 1
        assert str(rejected[0]) in err and "Traceback" not in err
        code, out, err = await _cli("opcua", "trust", str(rejected[0]), "--config", str(config))
        assert code == 0, err
        assert out.startswith(f"trusted: {tmp_path / 'state' / 'pki' / 'trusted'}")
        code, out, err = await _cli("read", "--config", str(config), "SeparatorSpeed")
        assert code == 0, err
        assert "SeparatorSpeed" in out and "GOOD" in out
        assert "s3cret-pw" not in out + err
