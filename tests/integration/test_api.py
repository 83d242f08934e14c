"""The local HTTP API over real sockets: the App in-process against the simulated plant.

/healthz, /readyz, /metrics (parsed with prometheus_client's own parser) and /status are read
with httpx over 127.0.0.1 while the agent reads the simulator over OPC UA and Modbus and
uploads to the reference receiver; a busy port is an error line and a retry, not a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from agent.api.server import serve_api
from agent.config.loader import load_config
from agent.config.settings import ApiSection
from agent.control.loop_stats import LoopStats
from agent.demo.cloud import CloudReceiver
from agent.demo.runner import SimulatedPlant
from agent.domain.backoff import Backoff
from agent.service.app import App
from tests.support.config import FEEDER_TAG, agent_config, mill_tags, modbus_source, opcua_source
from tests.support.ports import free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


def write_config(tmp: Path, plant: SimulatedPlant, cloud_url: str, api_port: int) -> Path:
    return agent_config(
        "api-1",
        sources=[
            opcua_source(plant.opcua_url),
            modbus_source(plant.modbus_port, poll_interval_s=0.2),
        ],
        tags=[*mill_tags("MillPower", "Vibration"), FEEDER_TAG],
        sync={"url": cloud_url, "flush_interval_s": 0.2},
        api={"port": api_port},
    ).write(tmp / "agent.toml")


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Any, suffix: str = "", **labels: str) -> float:
    found = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family.name, labels, family.samples)
    return float(found[0])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(
    sim_plant: SimulatedPlant, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    """The agent running in this event loop, and a client for its API."""
    tmp = tmp_path_factory.mktemp("api")
    async with CloudReceiver(tmp / "cloud") as cloud:
        port = free_port()
        (tmp / "state").mkdir()
        app = App(load_config(write_config(tmp, sim_plant, cloud.url, port)), tmp / "state")
        task = asyncio.create_task(app.run())
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                async def listening() -> bool:
                    if task.done():
                        await task  # raises what stopped it
                    with contextlib.suppress(httpx.TransportError):
                        return (await client.get("/healthz")).status_code == 200
                    return False

                await eventually(listening, within=20.0)
                yield app, client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_status_reports_every_section(running: tuple[App, httpx.AsyncClient]) -> None:
    app, client = running

    async def samples_flowing() -> bool:
        doc = (await client.get("/status")).json()
        return all(
            d["state"] == "connected" and d["samples_total"] > 0 and d["tags"]["waiting"] == 0
            for d in doc["drivers"]
        )

    await eventually(samples_flowing, within=20.0)
    response = await client.get("/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert set(doc) >= {"agent", "health", "drivers", "buffer", "uploader", "loops", "models"}
    agent = doc["agent"]
    assert agent["id"] == "api-1"
    assert agent["uptime_s"] >= 0
    ready = await client.get("/readyz")  # what readiness means, not a stale snapshot
    assert ready.json() == {"ready": True, "detail": "buffer open, sources configured"}
    memory = agent["memory"]  # this test process's own, read from /proc/self/status
    assert 20 * 2**20 < memory["rss_bytes"] <= memory["peak_rss_bytes"]
    config = app.loaded.path
    assert agent["config"] == {
        "path": str(config),
        "sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
    }
    kinds = {d["name"]: d["kind"] for d in doc["drivers"]}
    assert kinds == {"mill": "opcua", "feeders": "modbus"}
    sources = {d["name"]: d for d in doc["drivers"]}
    for d in sources.values():  # a healthy plant: every tag Good, nothing to explain
        assert (d["health"], d["problems"], d["not_good"]) == ("ok", [], [])
        assert d["tags"]["good"] == d["tags"]["total"] > 0
    feeders, mill = sources["feeders"], sources["mill"]
    assert feeders["requests_total"] > 0
    assert feeders["exceptions_total"] == feeders["timeouts_total"] == feeders["garbled_total"] == 0
    assert mill["requests_total"] is None  # OPC UA has no Modbus request counters
    buffer = doc["buffer"]
    assert buffer["max_bytes"] == app.loaded.settings.sync.max_buffer_bytes
    assert buffer["bytes_used"] > 0
    assert app.buffer is not None and buffer["epoch"] == app.buffer.epoch
    assert doc["uploader"]["progress"]["remaining_blocks"] >= 0
    assert doc["loops"] == []
    assert doc["health"]["healthy"] is True


async def test_metrics_families_labels_and_growth(
    running: tuple[App, httpx.AsyncClient],
) -> None:
    _, client = running
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    first = families(response.text)
    expected = {
        "edge_agent_info", "edge_agent_ready", "edge_agent_stalled_loops", "edge_agent_uptime_seconds",
        "edge_agent_driver_connected", "edge_agent_driver_state", "edge_agent_samples",
        "edge_agent_driver_degraded", "edge_agent_driver_tags", "edge_agent_modbus_requests",
        "edge_agent_modbus_exceptions", "edge_agent_modbus_timeouts",
        "edge_agent_modbus_garbled_answers",
        "edge_agent_reconnects", "edge_agent_buffer_bytes", "edge_agent_buffer_max_bytes",
        "edge_agent_buffer_oldest_unsent_seconds", "edge_agent_buffer_evictions",
        "edge_agent_buffer_hours_left", "edge_agent_buffer_blocks_pending",
        "edge_agent_upload_errors", "edge_agent_upload_latency_seconds",
        "edge_agent_upload_acks", "edge_agent_upload_draining", "edge_agent_inference_seconds",
        "edge_agent_loop_verdicts", "edge_agent_loop_outcomes", "edge_agent_loop_writes",
        "process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
    }  # fmt: skip
    assert expected <= set(first), expected - set(first)
    assert first["edge_agent_samples"].type == "counter"
    assert first["edge_agent_upload_latency_seconds"].type == "summary"
    for source in ("mill", "feeders"):
        assert value(first["edge_agent_driver_connected"], source=source) == 1
        assert value(first["edge_agent_reconnects"], "_total", source=source) == 0
        assert value(first["edge_agent_driver_state"], source=source, state="connected") == 1
        assert value(first["edge_agent_driver_degraded"], source=source) == 0
        assert value(first["edge_agent_driver_tags"], source=source, quality="bad") == 0
    assert value(first["edge_agent_modbus_requests"], "_total", source="feeders", unit="1") > 0
    assert value(first["edge_agent_modbus_exceptions"], "_total", source="feeders", unit="1") == 0
    assert value(first["edge_agent_stalled_loops"]) == 0
    assert value(first["process_resident_memory_bytes"]) > 20 * 2**20
    assert value(first["edge_agent_buffer_bytes"]) > 0
    assert value(first["edge_agent_upload_errors"], "_total", verdict="retry") >= 0

    async def grown() -> bool:
        later = families((await client.get("/metrics")).text)
        return (
            all(
                value(later["edge_agent_samples"], "_total", source=source)
                > value(first["edge_agent_samples"], "_total", source=source)
                for source in ("mill", "feeders")
            )
            and value(later["edge_agent_upload_latency_seconds"], "_count") > 0
        )

    await eventually(grown, within=20.0)
    later = families((await client.get("/metrics")).text)
    latency = later["edge_agent_upload_latency_seconds"]
    assert value(latency, "_sum") > 0
    assert value(later["edge_agent_upload_acks"], "_total") == value(latency, "_count")


async def test_loop_stats_become_labelled_series(
    running: tuple[App, httpx.AsyncClient],
) -> None:
    app, client = running
    stats = LoopStats(name="feed", mode="shadow", state="running", model_version="1.2.0")
    stats.cycles = 3
    stats.verdicts.update({("remote", "pass"): 3, ("inputs", "refuse"): 1})
    stats.outcomes.update({"shadow": 2, "blocked": 1})
    stats.writes.update({"ok": 2})
    stats.inference_s.extend([0.001 * n for n in range(1, 101)])
    app.loop_stats.append(stats)
    try:
        found = families((await client.get("/metrics")).text)
        doc = (await client.get("/status")).json()
    finally:
        app.loop_stats.remove(stats)
    verdicts = found["edge_agent_loop_verdicts"]
    assert value(verdicts, "_total", loop="feed", gate="inputs", verdict="refuse") == 1
    assert value(verdicts, "_total", loop="feed", gate="remote", verdict="pass") == 3
    assert value(found["edge_agent_loop_outcomes"], "_total", loop="feed", outcome="shadow") == 2
    assert value(found["edge_agent_loop_writes"], "_total", loop="feed", result="ok") == 2
    inference = found["edge_agent_inference_seconds"]
    assert value(inference, loop="feed", quantile="0.5") == pytest.approx(0.05)
    assert value(inference, loop="feed", quantile="0.99") == pytest.approx(0.099)
    (loop,) = doc["loops"]
    assert loop["name"] == "feed"
    assert loop["model_version"] == "1.2.0"
    assert {"gate": "inputs", "verdict": "refuse", "count": 1} in loop["verdicts"]
    assert loop["outcomes"] == {"blocked": 1, "shadow": 2}
    assert loop["inference"]["count"] == 100
    assert loop["inference"]["p90_s"] == pytest.approx(0.09)


@pytest_asyncio.fixture(loop_scope="module")
async def idle_app(tmp_path: Path, sim_plant: SimulatedPlant) -> App:
    """An App that was built but never started: not ready, no buffer, no uploader."""
    config = write_config(tmp_path, sim_plant, "http://127.0.0.1:9", free_port())
    return App(load_config(config), tmp_path / "state")


@contextlib.asynccontextmanager
async def serving(app: App, settings: ApiSection, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    task = asyncio.create_task(serve_api(app, settings, **kw))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}") as client:
            yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def get_when_up(client: httpx.AsyncClient, path: str) -> httpx.Response:
    deadline = time.monotonic() + 60  # generous: a busy machine is only slower
    while True:
        try:
            return await client.get(path)
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "the API did not start listening"
            await asyncio.sleep(0.05)


async def test_not_ready_and_stalled_answer_503(idle_app: App) -> None:
    settings = ApiSection(port=free_port())
    idle_app.health.watch("control:feed", now=idle_app.clock.monotonic() - 60, max_silence_s=5)
    idle_app.health.watch("spare", now=idle_app.clock.monotonic() - 60, max_silence_s=5,
                          critical=False)  # fmt: skip
    async with serving(idle_app, settings) as client:
        ready = await get_when_up(client, "/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "detail": "starting"}
        health = await client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "stalled", "stalled": ["control:feed"]}
        doc = (await client.get("/status")).json()
        assert doc["buffer"] is None and doc["uploader"] is None
        assert [w["stalled"] for w in doc["health"]["watched"]] == [True, True]
        metrics = families((await client.get("/metrics")).text)
        assert value(metrics["edge_agent_ready"]) == 0
        assert value(metrics["edge_agent_stalled_loops"]) == 1
        assert "edge_agent_buffer_bytes" not in metrics

        idle_app.health.beat("control:feed", idle_app.clock.monotonic())
        idle_app.health.set_ready(True, "buffer open, sources configured")
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["detail"] == "buffer open, sources configured"


async def test_busy_port_is_one_error_line_then_a_retry(idle_app: App) -> None:
    settings = ApiSection(port=free_port())
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", settings.port))
    squatter.listen()
    quick = Backoff(initial_s=0.05, max_s=0.1)
    with capture_logs() as logs:
        async with serving(idle_app, settings, backoff=quick) as client:

            async def refused_thrice() -> bool:
                return len([e for e in logs if e["event"] == "api_bind_failed"]) >= 3

            await eventually(refused_thrice, within=20.0)
            squatter.close()
            assert (await get_when_up(client, "/healthz")).status_code == 200
    failed = [e for e in logs if e["event"] == "api_bind_failed"]
    assert [e["log_level"] for e in failed[:3]] == ["error", "debug", "debug"]
    assert failed[0]["port"] == settings.port
    assert failed[0]["error"] == "Address already in use"
    assert [e["log_level"] for e in logs if e["event"] == "api_listening"] == ["info"]
