"""Write the sync API's golden test vectors: docs/sync-vectors/ (block bytes and their content).

Owns: the vectors an independent receiver checks its decoder against: a CATALOG block, a
TELEMETRY block with every value type (null, float with NaN, +-Infinity and -0.0, int, false,
true, string, an integer beyond int64, a quantised float, a non-finite value of a quantised
tag), a TELEMETRY block whose columns use the XOR and delta-varint modes, and an EVENTS block
with the events a receiver must understand (the announcement of evicted seqs and of dropped
samples, a quarantine alert). Each ``N-name.block`` is the exact body of a POST; beside it
``N-name.json`` holds its URL path, header fields, body modes and decoded content, written
so that no value is lost to JSON (see docs/sync-vectors/README.md).
Must not: depend on the time, randomness or the machine: the same code writes the same bytes
(tests/unit/test_sync_vectors.py regenerates them and compares, and decodes them with the
agent's decoder).

Run: ``.venv/bin/python tools/make_sync_vectors.py [--out docs/sync-vectors]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.buffer.blocks import (  # noqa: E402 (after the path set-up)
    HEADER_SIZE,
    Catalog,
    CatalogEntry,
    encode_catalog,
    encode_events,
    encode_telemetry,
    read_header,
)
from agent.domain.samples import Sample  # noqa: E402

AGENT_ID = "plant-1"
EPOCH = "9f1c0d7e5b2a4c6e8f10213243546576"
T = 1_767_225_600.0  # 2026-01-01T00:00:00Z
GOOD, UNCERTAIN_LAST_USABLE, BAD_NO_COMMUNICATION = 0, 0x40A40000, 0x80310000
TYPE_NAMES = {0: "null", 1: "float", 2: "int", 3: "false", 4: "true", 5: "string",
              6: "bigint", 7: "quantised"}  # fmt: skip

CATALOG = Catalog(
    (
        CatalogEntry("FeedRate", "t/h", "mill_plc"),
        CatalogEntry("MillPower", "kW", "mill_plc", resolution=0.5),
        CatalogEntry("Running", "", "mill_plc"),
        CatalogEntry("Recipe", "", "mill_plc"),
        CatalogEntry("Counter", "", "feeders"),
        CatalogEntry("EnergyTotal", "Wh", "feeders"),
        CatalogEntry("Mode", "", "feeders"),
    )
)

EVERY_TYPE = [
    Sample("FeedRate", T + 0.1, 152.25, GOOD),
    Sample("MillPower", T + 0.1, 3712.4, GOOD),  # quantised: q = 7425, decoded 3712.5
    Sample("Running", T + 0.1, True, GOOD),
    Sample("Recipe", T + 0.1, "CEM II/B-M (S-LL) 42,5 N, Mahlgut für Kunde Ä", GOOD),
    Sample("Counter", T + 0.1, 42, GOOD),
    Sample("EnergyTotal", T + 0.1, 2**64 - 1, GOOD),  # a UInt64 beyond int64: text
    Sample("Mode", T + 0.1, 3, UNCERTAIN_LAST_USABLE),
    Sample("FeedRate", T + 0.2, None, BAD_NO_COMMUNICATION),  # a failed read: no value
    Sample("FeedRate", T + 0.3, -0.0, GOOD),
    Sample("FeedRate", T + 0.4, math.nan, GOOD),
    Sample("FeedRate", T + 0.5, math.inf, GOOD),
    Sample("FeedRate", T + 0.6, -math.inf, GOOD),
    Sample("MillPower", T + 0.2, math.nan, GOOD),  # not finite: an ordinary float
    Sample("Running", T + 0.2, False, GOOD),
    Sample("Counter", T + 0.05, -7, GOOD),  # arrival order is kept, time order is not
    Sample("EnergyTotal", T + 0.2, -(2**63), GOOD),  # the least int64: still an int
]

MODES = [Sample("FeedRate", T + 10 + i * 0.1, 150.0 + i / 64, GOOD) for i in range(16)] + [
    Sample("Counter", T + 10 + i * 0.1, 1_000_000 + i, GOOD) for i in range(16)
]

EVENTS: list[dict[str, Any]] = [
    {"kind": "suggestion", "time": T + 60, "loop": "mill_feed", "value": 152.5, "unit": "t/h",
     "model": "vrm@1.3.0", "text": "Zielwert 152,5 t/h"},
    {"kind": "buffer_blocks_evicted", "time": T + 61, "reason": "telemetry",
     "seqs": [[5, 9], [12, 12]], "blocks": 6, "samples": 5100, "events": 0, "bytes": 41230,
     "created_first": T - 3600, "created_last": T - 3000},
    {"kind": "buffer_samples_dropped", "time": T + 61, "reason": "disk_full", "blocks": 2,
     "samples": 170, "events": 0, "created_first": T - 10, "created_last": T - 9},
    {"kind": "sync_block_quarantined", "time": T + 62, "seq": 13, "status": 400,
     "reason": "HTTP 400: the receiver refused this block",
     "detail": "{\"status\":\"rejected\",\"error\":\"bad_block\",\"detail\":\"CRC mismatch\"}"},
]  # fmt: skip


def _bits(x: float) -> str:
    return struct.pack(">d", x).hex()


def _number(x: float) -> float | str:
    """A float as JSON: itself when finite, else "NaN", "Infinity" or "-Infinity"."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _varints(data: bytes, at: int, count: int) -> tuple[list[int], int]:
    out = []
    for _ in range(count):
        value = shift = 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        out.append(value)
    return out, at


def _body(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data[HEADER_SIZE:])


def _types(body: bytes, count: int) -> tuple[int, int, list[int]]:
    """The modes and the type column (grouped order) of a telemetry body, read by hand."""
    at = 2
    _, at = _varints(body, at, count)  # tag column
    _, at = _varints(body, at, count)  # time column
    return body[0], body[1], list(body[at : at + count])


def _grouped(samples: list[Sample]) -> list[int]:
    """Arrival positions in grouped order: a stable sort by catalog index."""
    index = CATALOG.indexes()
    return sorted(range(len(samples)), key=lambda i: index[samples[i].tag])


def _sample(s: Sample, type_code: int) -> dict[str, Any]:
    row: dict[str, Any] = {"tag": s.tag, "time": s.source_time, "time_bits": _bits(s.source_time),
                           "type": type_code, "type_name": TYPE_NAMES[type_code],
                           "status": s.status}  # fmt: skip
    value = s.value
    if type_code == 6:
        row["value"] = str(value)  # as the block stores it: decimal text
    elif type_code == 7:
        assert isinstance(value, float)
        resolution = CATALOG.entries[CATALOG.index(s.tag)].resolution
        assert resolution is not None
        q = round(value / resolution)
        decoded = q / (1 / resolution) if (1 / resolution).is_integer() else q * resolution
        row |= {"value": decoded, "value_bits": _bits(decoded), "q": q, "resolution": resolution,
                "original": value}  # fmt: skip
    elif isinstance(value, float):
        row |= {"value": _number(value), "value_bits": _bits(value)}
    else:
        row["value"] = value
    return row


def _header(data: bytes) -> dict[str, Any]:
    h = read_header(data)
    return {
        "magic": data[:4].decode(), "version": data[4], "kind": int(h.kind),
        "kind_name": h.kind.name.lower(), "crc": struct.unpack_from("<I", data, 6)[0],
        "seq": h.seq,
        "created": h.created, "count": h.count, "first_time": _number(h.first_time),
        "last_time": _number(h.last_time), "epoch": h.epoch, "catalog_id": h.catalog_id,
    }  # fmt: skip


def _vector(name: str, data: bytes, content: dict[str, Any]) -> dict[str, Any]:
    h = read_header(data)
    return {
        "file": f"{name}.block",
        "post": f"/v1/agents/{AGENT_ID}/blocks/{h.epoch}/{h.seq}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "header": _header(data),
        "body_size": len(_body(data)),
        **content,
    }


def _telemetry(seq: int, samples: list[Sample]) -> tuple[bytes, dict[str, Any]]:
    data = encode_telemetry(epoch=EPOCH, seq=seq, created=T + 1, samples=samples, catalog=CATALOG)
    float_mode, int_mode, grouped_types = _types(_body(data), len(samples))
    types = [0] * len(samples)
    for position, code in zip(_grouped(samples), grouped_types, strict=True):
        types[position] = code
    content = {
        "catalog_id": CATALOG.id,
        "float_mode": float_mode,
        "int_mode": int_mode,
        "samples": [_sample(s, t) for s, t in zip(samples, types, strict=True)],
    }
    return data, content


def vectors() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """name -> (block bytes, what a decoder must find in them)."""
    catalog = encode_catalog(epoch=EPOCH, seq=1, created=T, catalog=CATALOG)
    body = CATALOG.body()
    events = encode_events(epoch=EPOCH, seq=4, created=T + 62, events=EVENTS)
    return {
        "1-catalog": (
            catalog,
            {"catalog_id": CATALOG.id, "catalog_body": body.decode(), "catalog": json.loads(body)},
        ),
        "2-telemetry-every-type": _telemetry(2, EVERY_TYPE),
        "3-telemetry-modes": _telemetry(3, MODES),
        "4-events": (events, {"events": EVENTS}),
    }


def write(out: Path) -> list[Path]:
    """Write every vector into ``out``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (data, content) in vectors().items():
        block, doc = out / f"{name}.block", out / f"{name}.json"
        block.write_bytes(data)
        text = json.dumps(_vector(name, data, content), indent=2, ensure_ascii=False)
        doc.write_text(text + "\n", encoding="utf-8")
        written += [block, doc]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_sync_vectors", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "sync-vectors")
    args = parser.parse_args(argv)
    for path in write(args.out):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
