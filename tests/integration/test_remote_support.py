"""Remote support against the real reference receiver on 127.0.0.1.

The agent side (``RemoteSupport``) runs on a FakeClock; HTTP, SQLite (the receiver's and the
agent's buffer), TCP connects and the model files are real. Support staff's side is plain
HTTP against the receiver: PUT the desired state, GET what the agent sent back.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent.buffer.buffer import Buffer
from agent.config.settings import Settings, SyncSection
from agent.demo.cloud import CloudReceiver
from agent.domain.backoff import Backoff
from agent.domain.clock import FakeClock
from agent.packages.keys import generate_keypair, sign_package
from agent.packages.package import load_package, load_public_key
from agent.remote.client import RemoteSupport
from agent.remote.diagnostics import Diagnostics, LogRing
from agent.service.logs import configure_logging, get_logger
from tests.support.config import ConfigDoc, agent_config, modbus_source, opcua_source
from tests.support.logs import kept_logging
from tests.support.model_packages import linear_model, write_package
from tests.support.tasks import running

AGENT = "plant-1"
TOKEN = SecretStr("t0ken-for-remote-tests")
STATUS: dict[str, Any] = {
    "versions": {"agent": "0.1.0"},
    "config_sha256": "ab" * 32,
    "drivers": {"mill_plc": "connected", "packer": "reconnecting"},
    "outage_budget": {"hours_left": None},
    "last_errors": [],
    "active_model": None,
}


class Rig:
    """The receiver, the agent's pieces and support staff's HTTP client."""

    def __init__(self, cloud: CloudReceiver, tmp_path: Path, buffer: Buffer, ring: LogRing):
        self.cloud, self.tmp, self.buffer, self.ring = cloud, tmp_path, buffer, ring
        self.clock = FakeClock()
        self.audits: list[tuple[str, dict[str, Any]]] = []
        self.models_dir = tmp_path / "agent" / "models"
        self.private_key, self.public_key = tmp_path / "sign.pem", tmp_path / "sign.pub.pem"
        generate_keypair(self.private_key, self.public_key)
        self.staff = httpx.AsyncClient(
            base_url=cloud.url, headers={"Authorization": "Bearer " + TOKEN.get_secret_value()}
        )
        self.config_path = tmp_path / "agent.toml"

    async def audit(self, kind: str, body: dict[str, Any]) -> None:
        self.audits.append((kind, body))

    def audited(self, kind: str) -> list[dict[str, Any]]:
        return [body for k, body in self.audits if k == kind]

    def remote(self, settings: Settings, **options: Any) -> RemoteSupport:
        public_key = options.pop("public_key", load_public_key(self.public_key))
        return RemoteSupport(
            SyncSection(url=self.cloud.url, status_interval_s=60.0),
            agent_id=AGENT,
            token=options.pop("token", TOKEN),
            clock=self.clock,
            base_dir=self.tmp,
            status_fn=lambda: dict(STATUS),
            audit=self.audit,
            models_dir=self.models_dir,
            public_key=public_key,
            diagnostics=Diagnostics(
                self.clock,
                settings=settings,
                config_path=self.config_path,
                budget=self.buffer.budget,
                log_ring=self.ring,
            ),
            backoff=Backoff(initial_s=0.5, max_s=8.0),
            rand=lambda: 0.5,
            **options,
        )

    async def desire(self, document: dict[str, Any]) -> None:
        (await self.staff.put(f"/v1/agents/{AGENT}/desired", json=document)).raise_for_status()

    async def get(self, path: str) -> Any:
        response = await self.staff.get(f"/v1/agents/{AGENT}{path}")
        return response.json() if response.status_code == 200 else None

    async def results(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in (await self.get("/diagnostics"))["results"]}

    async def until(
        self, check: Callable[[], Awaitable[bool]], within: float = 20.0, step: float = 1.0
    ) -> None:
        """Advance fake time by ``step`` until ``check``, letting real I/O run in between."""
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not done within {within} s (fake t={self.clock.monotonic()})"
                )
            await self.clock.advance(step)
            await asyncio.sleep(0.01)

    async def more_rounds(self, n: int) -> None:
        """Until ``n`` more status reports arrived: every round before the last is complete."""
        start = len((await self.get("/status/history"))["reports"])
        await self.until(lambda: _count(self, "/status/history", "reports", start + n), step=10)

    def offer(self, version: str = "1.0.0") -> Path:
        """A signed package in the receiver's models directory: models/vrm/<version>."""
        directory = write_package(self.tmp / "offer", linear_model())
        if version != "1.0.0":
            manifest = json.loads((directory / "manifest.json").read_text())
            manifest["version"] = version
            (directory / "manifest.json").write_text(json.dumps(manifest))
            directory = directory.rename(directory.with_name(version))
        sign_package(directory, self.private_key)
        return directory


@pytest.fixture
def ring() -> Iterator[LogRing]:
    """JSON logging configured (to a string, debug: repeats show the progress of retries),
    with a LogRing on the root logger."""
    with kept_logging():
        configure_logging("debug", json=True, stream=io.StringIO())
        log_ring = LogRing.install(capacity=5000)
        yield log_ring
        log_ring.uninstall()


@pytest.fixture
async def rig(tmp_path: Path, ring: LogRing) -> AsyncIterator[Rig]:
    clock = FakeClock()
    buffer = await Buffer.open(tmp_path / "buffer.db", agent_id=AGENT, max_bytes=10**7, clock=clock)
    async with CloudReceiver(
        tmp_path / "cloud", token=TOKEN, models_dir=tmp_path / "offer" / "models"
    ) as cloud:
        r = Rig(cloud, tmp_path, buffer, ring)
        try:
            yield r
        finally:
            await r.staff.aclose()
            await buffer.close()


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A real TCP listener standing in for a PLC's port."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(rig: Rig, open_port: int) -> Settings:
    """The agent's config (a PLC port that answers, one that does not), written where
    config_masked reads it."""
    plc = opcua_source(f"opc.tcp://127.0.0.1:{open_port}", name="mill_plc", username="edge",
                       password_file="/etc/edge-agent/opcua-password")  # fmt: skip
    config = agent_config(
        AGENT,
        sources=[plc, modbus_source(closed_port(), name="packer")],
        tags=[],
        sync={"url": rig.cloud.url, "token_file": "/etc/edge-agent/cloud-token"},
    ).write(rig.config_path)
    return Settings(**ConfigDoc.read(config).data)


# -- status -----------------------------------------------------------------------------------


async def test_the_status_report_reaches_the_receiver_every_interval(
    rig: Rig, listener: int
) -> None:
    async with running(rig.remote(settings_for(rig, listener)).run):
        await rig.until(lambda: _has(rig, "/status"))
        latest = await rig.get("/status")
        assert latest["report"] == STATUS
        await rig.until(lambda: _count(rig, "/status/history", "reports", 2))
    assert rig.clock.monotonic() >= 60.0  # the second one came a status interval later


async def _has(rig: Rig, path: str) -> bool:
    return await rig.get(path) is not None


async def _count(rig: Rig, path: str, key: str, n: int) -> bool:
    body = await rig.get(path)
    return body is not None and len(body[key]) >= n


# -- diagnostics ------------------------------------------------------------------------------


async def test_allowed_diagnostics_are_served_and_their_results_stored(
    rig: Rig, listener: int
) -> None:
    settings = settings_for(rig, listener)
    await rig.buffer.put_events([{"kind": "something_happened", "time": 1.0}])
    await rig.buffer.flush()
    get_logger("tests.remote").warning("remote_test_marker", token="do-not-show", n=7)
    await rig.desire(
        {
            "model": None,
            "diagnostics": [
                # the whole ring: it logs at debug, and the marker is followed by many lines
                {"id": "logs-1", "kind": "log_bundle", "args": {"lines": 5000}},
                {"id": "net-1", "kind": "connectivity"},
                {"id": "cfg-1", "kind": "config_masked"},
                {"id": "buf-1", "kind": "buffer_stats", "args": {}},
            ],
        }
    )
    async with running(rig.remote(settings).run):
        await rig.until(lambda: _count(rig, "/diagnostics", "results", 4))
    results = await rig.results()
    assert {r["status"] for r in results.values()} == {"done"}

    lines = [json.loads(line) for line in results["logs-1"]["result"]["lines"]]
    marker = next(line for line in lines if line["event"] == "remote_test_marker")
    assert marker["n"] == 7
    assert marker["token"] != "do-not-show"

    checks = {c["source"]: c for c in results["net-1"]["result"]["sources"]}
    assert checks["mill_plc"]["ok"] is True
    assert checks["mill_plc"]["port"] == listener
    assert checks["packer"]["ok"] is False
    assert "ConnectionRefusedError" in checks["packer"]["error"]

    config = results["cfg-1"]["result"]
    text = json.dumps(config)
    assert "/etc/edge-agent/cloud-token" not in text
    assert "/etc/edge-agent/opcua-password" not in text
    assert config["config"]["sources"][0]["username"] == "edge"
    assert config["effective"]["sync"]["status_interval_s"] == 60.0

    stats = results["buf-1"]["result"]
    assert stats["blocks_pending"] == 1
    assert stats["max_bytes"] == 10**7

    served = rig.audited("remote_diagnostic_served")
    assert sorted(a["id"] for a in served) == ["buf-1", "cfg-1", "logs-1", "net-1"]
    assert TOKEN.get_secret_value() not in json.dumps(results)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"id": "bad-1", "kind": "shell", "args": {"command": "id"}}, '"shell" is not allowed'),
        (
            {"id": "bad-2", "kind": "write_tag", "args": {"tag": "Mill.Feed", "value": 99}},
            "allowed",
        ),
        ({"id": "bad-3", "kind": "log_bundle", "args": {"limit": "max_step"}}, '"limit" is not'),
        ({"id": "bad-4", "kind": "buffer_stats", "exec": "reboot"}, "unknown keys ['exec']"),
    ],
)
async def test_a_forbidden_request_is_refused_audited_and_reported(
    rig: Rig, listener: int, item: dict[str, Any], reason: str
) -> None:
    await rig.desire({"diagnostics": [item, {"id": "ok-1", "kind": "buffer_stats"}]})
    async with running(rig.remote(settings_for(rig, listener)).run):
        await rig.until(lambda: _count(rig, "/diagnostics", "results", 2))
        results = await rig.results()
        await rig.more_rounds(2)  # two more rounds: refused once, not again
    refused = results[item["id"]]
    assert refused["status"] == "refused"
    assert reason in refused["reason"]
    assert refused["result"] is None
    assert results["ok-1"]["status"] == "done"
    (audit,) = rig.audited("remote_request_refused")
    assert audit["id"] == item["id"]
    assert reason in audit["reason"]
    assert [a["id"] for a in rig.audited("remote_diagnostic_served")] == ["ok-1"]


async def test_a_request_id_is_processed_once(rig: Rig, listener: int) -> None:
    dup = [{"id": "d1", "kind": "buffer_stats"}, {"id": "d1", "kind": "config_masked"}]
    await rig.desire({"diagnostics": dup})
    async with running(rig.remote(settings_for(rig, listener)).run):
        await rig.until(lambda: _count(rig, "/diagnostics", "results", 1))
        # the same id again, for another kind: the receiver offers it, the agent ignores it
        again = [{"id": "d1", "kind": "log_bundle"}, {"id": "d2", "kind": "buffer_stats"}]
        await rig.desire({"diagnostics": again})
        await rig.until(lambda: _count(rig, "/diagnostics", "results", 2))
        await rig.more_rounds(2)
    results = await rig.results()
    assert results["d1"]["kind"] == "buffer_stats"
    assert [a["id"] for a in rig.audited("remote_diagnostic_served")] == ["d1", "d2"]
    assert rig.audited("remote_request_refused") == []
    assert (await rig.get("/desired"))["diagnostics"] == [{"id": "d1", "kind": "log_bundle"}]


# -- models -----------------------------------------------------------------------------------


async def test_a_signed_model_version_is_delivered_into_models_dir(rig: Rig, listener: int) -> None:
    offered = rig.offer()
    await rig.desire({"model": {"name": "vrm", "version": "1.0.0"}, "diagnostics": []})
    async with running(rig.remote(settings_for(rig, listener)).run):
        await rig.until(lambda: _count(rig, "/deliveries", "deliveries", 1))
        await rig.more_rounds(2)  # present now: not fetched or reported again
    (delivery,) = (await rig.get("/deliveries"))["deliveries"]
    assert delivery["status"] == "delivered"
    placed = rig.models_dir / "vrm" / "1.0.0"
    assert sorted(p.name for p in (rig.models_dir / "vrm").iterdir()) == ["1.0.0"]
    for name in ("manifest.json", "manifest.sig", "model.onnx"):
        assert (placed / name).read_bytes() == (offered / name).read_bytes()
    load_package(placed, load_public_key(rig.public_key))  # usable as delivered
    (audit,) = rig.audited("remote_model_delivered")
    assert (audit["model"], audit["version"], audit["directory"]) == ("vrm", "1.0.0", str(placed))


@pytest.mark.parametrize("tamper", ["model", "manifest", "other_key", "wrong_version"])
async def test_a_tampered_model_is_refused_and_nothing_lands(
    rig: Rig, listener: int, tamper: str
) -> None:
    offered = rig.offer()
    asked = "1.0.0"
    if tamper == "model":
        (offered / "model.onnx").write_bytes((offered / "model.onnx").read_bytes() + b"\0")
    elif tamper == "manifest":
        manifest = json.loads((offered / "manifest.json").read_text())
        manifest["inputs"][0]["max"] = 1e9
        (offered / "manifest.json").write_text(json.dumps(manifest))
    elif tamper == "other_key":
        generate_keypair(rig.tmp / "other.pem", rig.tmp / "other.pub.pem")
        sign_package(offered, rig.tmp / "other.pem")
    else:  # a validly signed 1.0.0 offered as 2.0.0
        offered.rename(offered.with_name("2.0.0"))
        asked = "2.0.0"
    await rig.desire({"model": {"name": "vrm", "version": asked}})
    async with running(rig.remote(settings_for(rig, listener)).run):
        await rig.until(lambda: _count(rig, "/deliveries", "deliveries", 1))
        # the document changes (ETag too), the model stays: rejected once, not fetched again
        more = [{"id": "x1", "kind": "buffer_stats"}]
        await rig.desire({"model": {"name": "vrm", "version": asked}, "diagnostics": more})
        await rig.until(lambda: _count(rig, "/diagnostics", "results", 1))
        await rig.more_rounds(2)
    (delivery,) = (await rig.get("/deliveries"))["deliveries"]
    assert delivery["status"] == "rejected"
    assert delivery["reason"]
    assert list((rig.models_dir / "vrm").iterdir()) == []
    (audit,) = rig.audited("remote_model_rejected")
    assert audit["reason"] == delivery["reason"]
    assert rig.audited("remote_model_delivered") == []


async def test_without_a_public_key_no_model_is_delivered(rig: Rig, listener: int) -> None:
    rig.offer()
    await rig.desire({"model": {"name": "vrm", "version": "1.0.0"}})
    async with running(rig.remote(settings_for(rig, listener), public_key=None).run):
        await rig.until(lambda: _count(rig, "/deliveries", "deliveries", 1))
    (delivery,) = (await rig.get("/deliveries"))["deliveries"]
    assert delivery["status"] == "rejected"
    assert "model_public_key_file" in delivery["reason"]
    assert not rig.models_dir.exists()


# -- the cloud away ---------------------------------------------------------------------------


async def test_an_unreachable_cloud_is_retried_with_backoff_and_never_stops_the_task(
    tmp_path: Path, ring: LogRing
) -> None:
    port, clock = closed_port(), FakeClock()
    remote = RemoteSupport(
        SyncSection(url=f"http://127.0.0.1:{port}", status_interval_s=60.0),
        agent_id=AGENT,
        token=TOKEN,
        clock=clock,
        base_dir=tmp_path,
        status_fn=lambda: dict(STATUS),
        audit=_no_audit,
        models_dir=tmp_path / "models",
        public_key=None,
        diagnostics=Diagnostics(clock),
        backoff=Backoff(initial_s=0.5, max_s=8.0),
        rand=lambda: 0.5,
    )
    async with running(remote.run) as task:
        deadline = time.monotonic() + 60  # generous: a busy machine is only slower
        while len(sync_failures(ring)) < 5:  # 0.5 + 1 + 2 + 4 + 8 ...: failed rounds seen
            assert time.monotonic() < deadline, f"failures seen: {len(sync_failures(ring))}"
            await clock.advance(1.0)
            await asyncio.sleep(0.01)
        assert not task.done()
        async with CloudReceiver(tmp_path / "cloud", port=port, token=TOKEN) as cloud:
            staff = httpx.AsyncClient(
                base_url=cloud.url, headers={"Authorization": "Bearer " + TOKEN.get_secret_value()}
            )
            async with staff:
                deadline = time.monotonic() + 60  # generous: a busy machine is only slower
                while (await staff.get(f"/v1/agents/{AGENT}/status")).status_code != 200:
                    assert time.monotonic() < deadline, "no status after the cloud came back"
                    await clock.advance(1.0)
                    await asyncio.sleep(0.01)
    events = [json.loads(line) for line in ring.lines(5000)]
    failed = sync_failures(ring)
    assert [e["level"] for e in failed] == ["warning"] + ["debug"] * (len(failed) - 1)
    assert "ConnectError" in failed[0]["error"]
    (recovered,) = [e for e in events if e["event"] == "remote_sync_recovered"]
    assert recovered["after_failures"] >= 4


def sync_failures(ring: LogRing) -> list[dict[str, Any]]:
    """The ``remote_sync_failed`` lines so far (one per failed round, repeats at debug)."""
    lines = (json.loads(line) for line in ring.lines(5000))
    return [e for e in lines if e["event"] == "remote_sync_failed"]


async def _at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def _no_audit(kind: str, body: dict[str, Any]) -> None:
    raise AssertionError(f"nothing to audit, got {kind} {body}")


async def test_a_wrong_token_is_logged_with_what_to_check_and_retried(
    rig: Rig, listener: int
) -> None:
    settings = settings_for(rig, listener)
    async with running(rig.remote(settings, token=SecretStr("Wr0ngT0ken-xyz")).run) as task:
        await rig.until(lambda: _at_least(sync_failures(rig.ring), 3))  # retried, refused
        assert not task.done()
    assert await rig.get("/status") is None
    events = [json.loads(line) for line in rig.ring.lines(5000)]
    (failed,) = [e for e in sync_failures(rig.ring) if e["level"] == "warning"]
    assert "401" in failed["error"]
    assert "check sync.token_file" in failed["error"]
    assert "Wr0ngT0ken-xyz" not in json.dumps(events)
