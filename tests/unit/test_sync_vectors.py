"""The sync API's golden vectors (docs/sync-vectors/): the agent's decoder reads every block
to exactly the content written beside it, and regenerating them gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.buffer.blocks import (
    BlockKind,
    Catalog,
    decode_catalog,
    decode_events,
    decode_telemetry,
    read_header,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "docs" / "sync-vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.block"))


def vector(name: str) -> tuple[bytes, dict[str, Any]]:
    doc = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    return (VECTORS / f"{name}.block").read_bytes(), doc


def bits(x: float) -> str:
    return struct.pack(">d", x).hex()


def number(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    return ("Infinity" if x > 0 else "-Infinity") if math.isinf(x) else x


def the_catalog() -> Catalog:
    return decode_catalog(vector("1-catalog")[0])


def test_there_is_a_catalog_telemetry_and_events_vector() -> None:
    kinds = {read_header(vector(name)[0]).kind for name in NAMES}
    assert kinds == set(BlockKind)
    every = {s["type"] for s in vector("2-telemetry-every-type")[1]["samples"]}
    assert every == set(range(8))  # every value type
    modes = vector("3-telemetry-modes")[1]
    assert (modes["float_mode"], modes["int_mode"]) == (1, 1)  # and the other column modes


@pytest.mark.parametrize("name", NAMES)
def test_the_agent_decodes_each_block_to_its_documented_content(name: str) -> None:
    data, doc = vector(name)
    assert len(data) == doc["size"] and hashlib.sha256(data).hexdigest() == doc["sha256"]
    h = read_header(data)
    expected = doc["header"]
    assert (h.kind, h.seq, h.count, h.epoch, h.catalog_id) == (
        expected["kind"], expected["seq"], expected["count"], expected["epoch"],
        expected["catalog_id"],
    )  # fmt: skip
    assert (h.created, number(h.first_time), number(h.last_time)) == (
        expected["created"],
        expected["first_time"],
        expected["last_time"],
    )
    assert doc["post"] == f"/v1/agents/plant-1/blocks/{h.epoch}/{h.seq}"
    if h.kind is BlockKind.CATALOG:
        catalog = decode_catalog(data)
        assert catalog.id == doc["catalog_id"] and catalog.body().decode() == doc["catalog_body"]
        assert json.loads(catalog.body()) == doc["catalog"]
    elif h.kind is BlockKind.EVENTS:
        assert decode_events(data) == doc["events"]
    else:
        catalog = the_catalog()
        assert catalog.id == h.catalog_id == doc["catalog_id"]
        samples = decode_telemetry(data, catalog)
        assert len(samples) == len(doc["samples"])
        for got, want in zip(samples, doc["samples"], strict=True):
            assert (got.tag, bits(got.source_time), got.status) == (
                want["tag"], want["time_bits"], want["status"]
            )  # fmt: skip
            assert_value(got.value, want)


def assert_value(value: object, want: dict[str, Any]) -> None:
    code = want["type"]
    if code == 0:
        assert value is None
    elif code in (1, 7):
        assert isinstance(value, float) and bits(value) == want["value_bits"]
        assert number(value) == want["value"] or math.isnan(value)
    elif code in (3, 4):
        assert value is (code == 4)
    elif code == 2:
        assert type(value) is int and value == want["value"] and -(2**63) <= value < 2**63
    elif code == 6:
        assert type(value) is int and str(value) == want["value"] and not -(2**63) <= value < 2**63
    else:
        assert code == 5 and value == want["value"]


def test_regenerating_the_vectors_gives_the_same_bytes(tmp_path: Path) -> None:
    tool = ROOT / "tools" / "make_sync_vectors.py"
    subprocess.run([sys.executable, str(tool), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in VECTORS.iterdir() if p.name != "README.md")
    for name in made:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name
