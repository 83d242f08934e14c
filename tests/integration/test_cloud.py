"""The reference receiver on 127.0.0.1 (uvicorn in-process, real SQLite): the HTTP contract."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from agent.buffer import blocks
from agent.buffer.blocks import BlockKind, Catalog, CatalogEntry
from agent.demo.cloud import CloudReceiver, Fault
from agent.domain.samples import Sample
from agent.sync.policy import BLOCK_MEDIA_TYPE

AGENT = "plant-1"
EPOCH = uuid.uuid4().hex
T0 = 1_700_000_000.0
CATALOG = Catalog(tuple(CatalogEntry(f"Mill.T{i}", "degC", "plc") for i in range(3)))
HEADERS = {"Content-Type": BLOCK_MEDIA_TYPE}


def telemetry(seq: int, value: float = 1.5) -> bytes:
    samples = [Sample(f"Mill.T{i}", T0 + seq, value + i) for i in range(3)]
    return blocks.encode_telemetry(
        epoch=EPOCH, seq=seq, created=T0 + seq, samples=samples, catalog=CATALOG
    )


def catalog_block(seq: int) -> bytes:
    return blocks.encode_catalog(epoch=EPOCH, seq=seq, created=T0, catalog=CATALOG)


def url(seq: int, epoch: str = EPOCH) -> str:
    return f"/v1/agents/{AGENT}/blocks/{epoch}/{seq}"


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[CloudReceiver]:
    async with CloudReceiver(tmp_path / "cloud") as receiver:
        yield receiver


@pytest.fixture
async def client(cloud: CloudReceiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=cloud.url, headers=HEADERS, trust_env=False) as c:
        yield c


async def test_a_block_is_stored_once_and_a_resend_is_a_duplicate(
    cloud: CloudReceiver, client: httpx.AsyncClient
) -> None:
    first = await client.post(url(1), content=catalog_block(1))
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "stored"
    stored = await client.post(url(2), content=telemetry(2))
    again = await client.post(url(2), content=telemetry(2))
    assert (stored.status_code, again.status_code) == (201, 200)
    body = again.json()
    assert body["status"] == "duplicate"
    assert (body["agent_id"], body["epoch"], body["seq"], body["kind"]) == (
        AGENT,
        EPOCH,
        2,
        "telemetry",
    )
    assert body["count"] == 3
    assert [b.seq for b in cloud.store.blocks(AGENT)] == [1, 2]
    assert cloud.store.samples(AGENT) == [(f"Mill.T{i}", T0 + 2, 1.5 + i, 0) for i in range(3)]


async def test_same_identity_with_other_bytes_is_a_conflict(
    cloud: CloudReceiver, client: httpx.AsyncClient
) -> None:
    await client.post(url(1), content=catalog_block(1))
    assert (await client.post(url(2), content=telemetry(2, 1.5))).status_code == 201
    conflict = await client.post(url(2), content=telemetry(2, 9.5))
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "conflict"
    assert {v for _, _, v, _ in cloud.store.samples(AGENT)} == {1.5, 2.5, 3.5}


async def test_the_header_must_match_the_url(
    cloud: CloudReceiver, client: httpx.AsyncClient
) -> None:
    wrong_seq = await client.post(url(3), content=telemetry(2))
    wrong_epoch = await client.post(url(2, uuid.uuid4().hex), content=telemetry(2))
    garbage = await client.post(url(4), content=b"not a block at all" * 10)
    flipped = bytearray(telemetry(5))
    flipped[-1] ^= 0xFF
    corrupt = await client.post(url(5), content=bytes(flipped))
    for answer in (wrong_seq, wrong_epoch):
        assert answer.status_code == 400
        assert answer.json()["error"] == "header_mismatch"
    for answer in (garbage, corrupt):
        assert answer.status_code == 400
        assert answer.json()["error"] == "bad_block"
    assert cloud.store.blocks(AGENT) == []


async def test_wrong_media_type_and_bad_path(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        url(2), content=telemetry(2), headers={"Content-Type": "application/octet-stream"}
    )
    assert answer.status_code == 415
    bad = await client.post(f"/v1/agents/{AGENT}/blocks/{EPOCH}/-1", content=telemetry(2))
    assert bad.status_code == 422


async def test_telemetry_before_its_catalog_is_decoded_when_the_catalog_arrives(
    cloud: CloudReceiver, client: httpx.AsyncClient
) -> None:
    early = await client.post(url(2), content=telemetry(2))
    assert early.status_code == 201
    counts = (await client.get(f"/v1/agents/{AGENT}/counts")).json()
    assert (counts["samples"], counts["samples_waiting_catalog"]) == (0, 3)
    assert (await client.post(url(1), content=catalog_block(1))).status_code == 201
    counts = (await client.get(f"/v1/agents/{AGENT}/counts")).json()
    assert (counts["samples"], counts["samples_waiting_catalog"]) == (3, 0)
    assert {b.state for b in cloud.store.blocks(AGENT)} == {"decoded"}
    assert cloud.store.decode_pending() == 0  # nothing left behind
    rows = (await client.get(f"/v1/agents/{AGENT}/tags/Mill.T1/samples")).json()
    assert rows == {"tag": "Mill.T1", "samples": [{"time": T0 + 2, "value": 2.5, "status": 0}]}


async def test_events_are_stored_and_served(client: httpx.AsyncClient) -> None:
    events: list[dict[str, object]] = [
        {"kind": "sync_block_quarantined", "time": T0, "seq": 9},
        {"kind": "note"},
    ]
    data = blocks.encode_events(epoch=EPOCH, seq=7, created=T0, events=events)
    assert (await client.post(url(7), content=data)).json()["kind"] == "events"
    served = (await client.get(f"/v1/agents/{AGENT}/events")).json()["events"]
    assert served == events
    assert (await client.get("/v1/agents")).json() == {"agents": [AGENT]}


async def test_the_token_is_required_when_configured(tmp_path: Path) -> None:
    secret = "s3cr3t-t0ken-value"
    async with (
        CloudReceiver(tmp_path, token=SecretStr(secret)) as cloud,
        httpx.AsyncClient(base_url=cloud.url, headers=HEADERS, trust_env=False) as client,
    ):
        missing = await client.post(url(1), content=catalog_block(1))
        wrong = await client.post(
            url(1), content=catalog_block(1), headers={"Authorization": "Bearer nope"}
        )
        right = await client.post(
            url(1), content=catalog_block(1), headers={"Authorization": f"Bearer {secret}"}
        )
        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 201)
        assert missing.headers["www-authenticate"] == "Bearer"
        assert secret not in missing.text + wrong.text
        assert (await client.get(f"/v1/agents/{AGENT}/counts")).status_code == 401
        assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_openapi_publishes_the_contract(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    post = schema["paths"]["/v1/agents/{agent_id}/blocks/{epoch}/{seq}"]["post"]
    assert BLOCK_MEDIA_TYPE in post["requestBody"]["content"]
    assert {"200", "201", "400", "401", "409"} <= set(post["responses"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


async def test_faults_hit_block_posts_only_and_in_order(
    cloud: CloudReceiver, client: httpx.AsyncClient
) -> None:
    cloud.faults.add(Fault.error(429, retry_after="3"), Fault.error(503))
    assert (await client.get("/healthz")).status_code == 200  # reads are never faulted
    throttled = await client.post(url(1), content=catalog_block(1))
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")
    assert (await client.post(url(1), content=catalog_block(1))).status_code == 503
    assert cloud.store.blocks(AGENT) == []
    cloud.faults.add(Fault.drop_after_store())
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(url(1), content=catalog_block(1))
    assert [b.kind for b in cloud.store.blocks(AGENT)] == [BlockKind.CATALOG]  # stored anyway
    cloud.faults.add(Fault.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(url(2), content=telemetry(2))
    assert len(cloud.store.blocks(AGENT)) == 1  # dropped before storing
    assert (await client.post(url(1), content=catalog_block(1))).json()["status"] == "duplicate"
    assert cloud.faults.pending == 0


async def test_a_receiver_that_cannot_start_says_so_and_leaks_nothing(tmp_path: Path) -> None:
    receiver = CloudReceiver(
        tmp_path, ssl_certfile=tmp_path / "missing.pem", ssl_keyfile=tmp_path / "missing.key"
    )
    with pytest.raises(FileNotFoundError):
        await receiver.__aenter__()
    with pytest.raises(RuntimeError, match="not running"):
        _ = receiver.store
