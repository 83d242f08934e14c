"""The block format: what the buffer stores and the uploader sends, byte for byte.

Owns: format version 1 of the three block kinds (TELEMETRY: columnar samples; EVENTS: a JSON
array of objects; CATALOG: the JSON list of tags that telemetry refers to by index), the fixed
70-byte header, the CRC and zstd compression. The layout is documented for the cloud team in
docs/sync-api.md ("Block format"). Parts: the ``Catalog`` and its id are in
agent.buffer.catalog (re-exported here), the telemetry columns in
agent.buffer.columns, their word transforms in agent.buffer.words.
Must not: do I/O, read a clock or know where blocks are kept or sent (pure: imports only
zstandard, numpy, the standard library, agent.domain.samples and agent.domain.errors).
Invariants:
- ``decode_*(encode_*(x)) == x`` for every storable input (telemetry: exact, except finite
  floats of a tag with a ``resolution``, which come back within resolution/2); the order of
  samples and events is kept.
- ``read_header`` never decompresses; it and every decoder raise ``BlockFormatError`` (a
  RejectedError: this block is refused, carry on with the rest) on anything that is not a
  whole, intact block of this version: wrong magic, unknown version or kind, CRC mismatch
  (which is what truncation or a flipped bit look like), bad lengths or bad columns.
- ``restamp(block, seq)`` changes only the seq field and the CRC: the body, and so every
  decoded value, stays byte for byte the same (the store gives a block its final seq when
  it commits it; the encoder used the seq it expected).
- A block is self-contained except for telemetry, which needs the catalog named by its
  header (``catalog_id``); a catalog's id is the first 8 bytes (16 hex digits) of the
  SHA-256 of its block's decompressed body, so any receiver can compute it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import zstandard

from agent.buffer.catalog import Catalog, CatalogEntry, parse_catalog
from agent.buffer.columns import decode_columns, encode_columns, value_problem
from agent.domain.errors import RejectedError
from agent.domain.samples import Sample

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "BlockFormatError",
    "BlockHeader",
    "BlockKind",
    "Catalog",
    "CatalogEntry",
    "decode_catalog",
    "decode_events",
    "decode_telemetry",
    "encode_catalog",
    "encode_events",
    "encode_telemetry",
    "read_header",
    "restamp",
    "sample_problem",
]

FORMAT_VERSION = 1
MAGIC = b"EDGB"
ZSTD_LEVEL = 9
_HEADER = struct.Struct("<4sBBIQdIdd16s8s")
HEADER_SIZE = _HEADER.size  # 70
_CRC_AT = 6
_SEQ = struct.Struct("<Q")
_SEQ_AT = 10
_MAX_RAW = 1 << 30  # a body larger than 1 GiB is refused rather than allocated
_NO_CATALOG = bytes(8)


class BlockFormatError(RejectedError):
    """These bytes are not an intact block of a format version this code reads."""


class BlockKind(IntEnum):
    TELEMETRY = 1
    EVENTS = 2
    CATALOG = 3


@dataclass(frozen=True)
class BlockHeader:
    kind: BlockKind
    epoch: str
    seq: int
    created: float
    count: int
    first_time: float
    last_time: float
    catalog_id: str  # "" for EVENTS/CATALOG blocks


# -- framing -------------------------------------------------------------------------------


def _frame(header: BlockHeader, raw: bytes) -> bytes:
    try:
        epoch = bytes.fromhex(header.epoch)
    except ValueError:
        epoch = b""
    if len(epoch) != 16:
        raise ValueError(f"epoch must be 32 hex digits (a uuid4 hex), got {header.epoch!r}")
    catalog = bytes.fromhex(header.catalog_id) if header.catalog_id else _NO_CATALOG
    if len(catalog) != 8:
        raise ValueError(f"catalog id must be 16 hex digits, got {header.catalog_id!r}")
    if not 0 <= header.seq < 2**64 or not 0 <= header.count < 2**32 or len(raw) > _MAX_RAW:
        raise ValueError("seq, count or body size out of range")
    fields = (
        MAGIC, FORMAT_VERSION, int(header.kind), 0, header.seq, header.created,
        header.count, header.first_time, header.last_time, epoch, catalog,
    )  # fmt: skip
    block = bytearray(_HEADER.pack(*fields))
    block += _compressor().compress(raw)
    struct.pack_into("<I", block, _CRC_AT, _crc(block))
    return bytes(block)


def _compressor() -> zstandard.ZstdCompressor:
    """A new one per block (8 us): instances must not be shared between threads."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False)


def _compressed_size(raw: bytes) -> int:
    return len(_compressor().compress(raw))


def _crc(block: bytes | bytearray) -> int:
    """CRC-32 (zlib/IEEE) of the block with the CRC field (bytes 6..9) left out."""
    view = memoryview(block)
    return zlib.crc32(view[_CRC_AT + 4 :], zlib.crc32(view[:_CRC_AT]))


def _unpack(data: bytes) -> BlockHeader:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BlockFormatError(f"a block is bytes, got {type(data).__name__}")
    if len(data) < HEADER_SIZE:
        raise BlockFormatError(f"{len(data)} bytes is shorter than a block header")
    (magic, version, kind, crc, seq, created, count, first, last, epoch, catalog) = (
        _HEADER.unpack_from(data)
    )
    if magic != MAGIC:
        raise BlockFormatError(f"not a block (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise BlockFormatError(f"block format version {version}; this code reads {FORMAT_VERSION}")
    if kind not in BlockKind._value2member_map_:
        raise BlockFormatError(f"unknown block kind {kind}")
    if _crc(data) != crc:
        raise BlockFormatError("CRC mismatch: the block is truncated or corrupt")
    kind = BlockKind(kind)
    catalog_id = catalog.hex() if kind is BlockKind.TELEMETRY else ""
    return BlockHeader(kind, epoch.hex(), seq, created, count, first, last, catalog_id)


def _body(data: bytes, kind: BlockKind) -> tuple[BlockHeader, bytes]:
    header = _unpack(data)
    if header.kind is not kind:
        raise BlockFormatError(f"a {header.kind.name} block, expected {kind.name}")
    frame = bytes(data[HEADER_SIZE:])
    try:
        size = zstandard.frame_content_size(frame)
        if not 0 <= size <= _MAX_RAW:
            raise BlockFormatError(f"compressed body declares {size} bytes (0..{_MAX_RAW})")
        raw = zstandard.ZstdDecompressor().decompress(frame)
    except zstandard.ZstdError as exc:
        raise BlockFormatError(f"body does not decompress: {exc}") from exc
    if len(raw) != size:
        raise BlockFormatError(f"body is {len(raw)} bytes, its frame says {size}")
    return header, raw


def read_header(data: bytes) -> BlockHeader:
    """The header of a block, checked (magic, version, kind, CRC) but not decompressed."""
    return _unpack(data)


def restamp(data: bytes, seq: int) -> bytes:
    """The same block with ``seq`` in its header (and its CRC recomputed); ``data`` itself
    when it already carries that seq. BlockFormatError when ``data`` is not an intact block."""
    if _unpack(data).seq == seq:
        return data
    if not 0 <= seq < 2**64:
        raise ValueError(f"seq out of range: {seq}")
    block = bytearray(data)
    _SEQ.pack_into(block, _SEQ_AT, seq)
    struct.pack_into("<I", block, _CRC_AT, _crc(block))
    return bytes(block)


# -- telemetry -----------------------------------------------------------------------------


def sample_problem(sample: Sample, catalog: Catalog) -> str | None:
    """Why a sample cannot go into a telemetry block of this catalog (None when it can)."""
    if sample.tag not in catalog.indexes():
        return f"tag {sample.tag!r} is not in the catalog"
    if not isinstance(sample.source_time, (int, float)):
        return f"source_time of type {type(sample.source_time).__name__}"
    if not isinstance(sample.status, int) or not 0 <= sample.status < 2**32:
        return f"status {sample.status!r} is not an unsigned 32-bit code"
    return value_problem(sample.value)


def encode_telemetry(
    *, epoch: str, seq: int, created: float, samples: Sequence[Sample], catalog: Catalog
) -> bytes:
    """A TELEMETRY block. KeyError for a tag not in the catalog; TypeError/ValueError for a
    sample that cannot be stored (see ``sample_problem``)."""
    raw, span = encode_columns(samples, catalog.indexes(), catalog.resolutions(), _compressed_size)
    first, last = span if span is not None else (created, created)
    header = BlockHeader(
        BlockKind.TELEMETRY, epoch, seq, created, len(samples), first, last, catalog.id
    )
    return _frame(header, raw)


def decode_telemetry(data: bytes, catalog: Catalog) -> list[Sample]:
    """The samples of a TELEMETRY block written with ``catalog``, in their original order."""
    header, raw = _body(data, BlockKind.TELEMETRY)
    if header.catalog_id != catalog.id:
        raise BlockFormatError(
            f"block was written with catalog {header.catalog_id}, got catalog {catalog.id}"
        )
    names = [entry.name for entry in catalog.entries]
    try:
        return decode_columns(raw, header.count, names, catalog.resolutions())
    except ValueError as exc:
        raise BlockFormatError(f"bad telemetry body: {exc}") from exc


# -- events --------------------------------------------------------------------------------


def encode_events(
    *, epoch: str, seq: int, created: float, events: Sequence[Mapping[str, Any]]
) -> bytes:
    """An EVENTS block: strict JSON (ValueError for NaN/Infinity, TypeError for objects JSON
    cannot represent). first/last_time span the events' numeric "time" keys, else created."""
    rows = [dict(event) for event in events]
    raw = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    times = [
        float(t)
        for row in rows
        if isinstance(t := row.get("time"), (int, float)) and not isinstance(t, bool)
    ]
    first, last = (min(times), max(times)) if times else (created, created)
    header = BlockHeader(BlockKind.EVENTS, epoch, seq, created, len(rows), first, last, "")
    return _frame(header, raw)


def decode_events(data: bytes) -> list[dict[str, Any]]:
    header, raw = _body(data, BlockKind.EVENTS)
    try:
        rows = json.loads(raw)
    except ValueError as exc:
        raise BlockFormatError(f"events body is not JSON: {exc}") from exc
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BlockFormatError("events body is not a JSON array of objects")
    if len(rows) != header.count:
        raise BlockFormatError(f"{len(rows)} events, header says {header.count}")
    return rows


# -- catalog -------------------------------------------------------------------------------


def encode_catalog(*, epoch: str, seq: int, created: float, catalog: Catalog) -> bytes:
    header = BlockHeader(
        BlockKind.CATALOG, epoch, seq, created, len(catalog.entries), created, created, ""
    )
    return _frame(header, catalog.body())


def decode_catalog(data: bytes) -> Catalog:
    header, raw = _body(data, BlockKind.CATALOG)
    try:
        catalog = parse_catalog(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise BlockFormatError(f"bad catalog body: {exc!r}") from exc
    if catalog.body() != raw or len(catalog.entries) != header.count:
        raise BlockFormatError("catalog body is not in canonical form")
    return catalog
