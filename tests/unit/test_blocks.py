"""The block format: round trips (property-tested), headers, corruption, and a golden block."""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.buffer.blocks import (
    HEADER_SIZE,
    BlockFormatError,
    BlockKind,
    Catalog,
    CatalogEntry,
    decode_catalog,
    decode_events,
    decode_telemetry,
    encode_catalog,
    encode_events,
    encode_telemetry,
    read_header,
    sample_problem,
)
from agent.domain.errors import RejectedError
from agent.domain.samples import BAD_NO_COMMUNICATION, UNCERTAIN_LAST_USABLE_VALUE, Sample

EPOCH = "0123456789abcdef0123456789abcdef"
T = 1_767_225_600.0


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


# -- strategies ------------------------------------------------------------------------------

resolutions = st.none() | st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 0.3, 25.0])


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    names = draw(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
    return Catalog(
        tuple(CatalogEntry(n, draw(st.text(max_size=4)), "src", draw(resolutions)) for n in names)
    )


values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e6, max_value=1e6)
    | st.text()
)
statuses = st.sampled_from([0, BAD_NO_COMMUNICATION, UNCERTAIN_LAST_USABLE_VALUE]) | st.integers(
    0, 2**32 - 1
)
times = st.floats(allow_nan=True, allow_infinity=True) | st.floats(T - 10, T + 10)


@st.composite
def telemetry(draw: st.DrawFn) -> tuple[Catalog, list[Sample]]:
    catalog = draw(catalogs())
    names = [e.name for e in catalog.entries]
    samples = draw(
        st.lists(st.builds(Sample, st.sampled_from(names), times, values, statuses), max_size=120)
    )
    return catalog, samples


def assert_same(original: Sample, decoded: Sample, resolution: float | None) -> None:
    assert decoded.tag == original.tag
    assert bits(decoded.source_time) == bits(original.source_time)
    assert decoded.status == original.status
    v, d = original.value, decoded.value
    assert type(d) is type(v)
    if isinstance(v, float) and isinstance(d, float):
        if resolution is not None and math.isfinite(v) and abs(v / resolution) <= 2.0**53:
            assert abs(d - v) <= resolution / 2 * (1 + 1e-9) + abs(v) * 1e-15
        else:
            assert bits(d) == bits(v)
    else:
        assert d == v


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(telemetry(), st.integers(0, 2**64 - 1), st.floats(allow_nan=False))
def test_telemetry_round_trips_every_sample_in_order(
    data: tuple[Catalog, list[Sample]], seq: int, created: float
) -> None:
    catalog, samples = data
    block = encode_telemetry(
        epoch=EPOCH, seq=seq, created=created, samples=samples, catalog=catalog
    )
    decoded = decode_telemetry(block, catalog)
    assert len(decoded) == len(samples)
    for original, back in zip(samples, decoded, strict=True):
        assert_same(original, back, catalog.entries[catalog.index(original.tag)].resolution)
    header = read_header(block)
    assert (header.kind, header.epoch, header.seq, header.count) == (
        BlockKind.TELEMETRY, EPOCH, seq, len(samples),
    )  # fmt: skip
    assert bits(header.created) == bits(created)
    assert header.catalog_id == catalog.id
    known = [s.source_time for s in samples if not math.isnan(s.source_time)]
    assert (header.first_time, header.last_time) == (
        (min(known), max(known)) if known else (created, created)
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.text(), json_values, max_size=5), max_size=8))
def test_events_round_trip(events: list[dict[str, Any]]) -> None:
    block = encode_events(epoch=EPOCH, seq=7, created=T, events=events)
    assert decode_events(block) == events
    header = read_header(block)
    assert (header.kind, header.count, header.catalog_id) == (BlockKind.EVENTS, len(events), "")


def test_events_span_their_time_keys_and_refuse_nan() -> None:
    block = encode_events(epoch=EPOCH, seq=1, created=T, events=[{"time": T + 5}, {"time": T - 2}])
    header = read_header(block)
    assert (header.first_time, header.last_time) == (T - 2, T + 5)
    untimed = read_header(encode_events(epoch=EPOCH, seq=2, created=T, events=[{"a": 1}]))
    assert (untimed.first_time, untimed.last_time) == (T, T)
    with pytest.raises(ValueError):
        encode_events(epoch=EPOCH, seq=3, created=T, events=[{"x": math.nan}])


@settings(max_examples=100, deadline=None)
@given(catalogs())
def test_catalog_round_trips_and_its_id_is_the_hash_of_its_body(catalog: Catalog) -> None:
    block = encode_catalog(epoch=EPOCH, seq=3, created=T, catalog=catalog)
    assert decode_catalog(block) == catalog
    header = read_header(block)
    assert (header.kind, header.count, header.catalog_id) == (
        BlockKind.CATALOG, len(catalog.entries), "",
    )  # fmt: skip
    body = zstandard.ZstdDecompressor().decompress(block[HEADER_SIZE:])
    assert catalog.id == hashlib.sha256(body).hexdigest()[:16]
    for i, entry in enumerate(catalog.entries):
        assert catalog.index(entry.name) == i


def test_catalog_rules() -> None:
    with pytest.raises(ValueError):
        Catalog((CatalogEntry("a", "", "s"), CatalogEntry("a", "", "t")))
    with pytest.raises(ValueError):
        CatalogEntry("a", "", "s", resolution=0.0)
    with pytest.raises(KeyError):
        Catalog((CatalogEntry("a", "", "s"),)).index("b")
    one = Catalog((CatalogEntry("a", "", "s"),))
    assert one.id == Catalog((CatalogEntry("a", "", "s"),)).id
    assert one.id != Catalog((CatalogEntry("a", "", "s", 0.1),)).id


def test_unstorable_samples_are_refused_and_explained() -> None:
    catalog = Catalog((CatalogEntry("a", "", "s"),))
    for bad in (Sample("a", T, object()), Sample("a", T, 1.0, 2**32), Sample("zz", T, 1.0)):  # type: ignore[arg-type]
        assert sample_problem(bad, catalog) is not None
        with pytest.raises((TypeError, ValueError, KeyError)):
            encode_telemetry(epoch=EPOCH, seq=1, created=T, samples=[bad], catalog=catalog)
    assert sample_problem(Sample("a", T, "ok"), catalog) is None
    with pytest.raises(ValueError):
        encode_telemetry(epoch="not-hex", seq=1, created=T, samples=[], catalog=catalog)


# -- corruption ------------------------------------------------------------------------------


CATALOG = Catalog((CatalogEntry("A", "", "s"), CatalogEntry("B", "", "s", 0.1)))
SAMPLES = [Sample("A", T + i / 10, float(i)) for i in range(20)] + [Sample("B", T, 2.5)]
BLOCK = encode_telemetry(epoch=EPOCH, seq=9, created=T, samples=SAMPLES, catalog=CATALOG)


def test_block_format_error_means_reject() -> None:
    assert issubclass(BlockFormatError, RejectedError)


@given(st.integers(0, len(BLOCK) - 1))
def test_every_truncation_is_refused(length: int) -> None:
    with pytest.raises(BlockFormatError):
        read_header(BLOCK[:length])
    with pytest.raises(BlockFormatError):
        decode_telemetry(BLOCK[:length], CATALOG)


@given(st.integers(0, len(BLOCK) - 1), st.integers(1, 255))
def test_every_flipped_byte_is_refused(position: int, flip: int) -> None:
    damaged = bytearray(BLOCK)
    damaged[position] ^= flip
    with pytest.raises(BlockFormatError):
        decode_telemetry(bytes(damaged), CATALOG)


@given(st.binary(max_size=300))
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(BlockFormatError):
        decode_telemetry(garbage, CATALOG)
    with pytest.raises(BlockFormatError):
        decode_events(garbage)


def resealed(block: bytes, offset: int, value: bytes) -> bytes:
    """The block with bytes replaced and the CRC recomputed: damage the CRC cannot see."""
    data = bytearray(block)
    data[offset : offset + len(value)] = value
    struct.pack_into("<I", data, 6, zlib.crc32(bytes(data[10:]), zlib.crc32(bytes(data[:6]))))
    return bytes(data)


def test_wrong_version_kind_catalog_or_body_is_refused() -> None:
    assert decode_telemetry(resealed(BLOCK, 4, b"\x01"), CATALOG)  # resealing alone is fine
    with pytest.raises(BlockFormatError, match="version 2"):
        read_header(resealed(BLOCK, 4, b"\x02"))
    with pytest.raises(BlockFormatError, match="kind"):
        read_header(resealed(BLOCK, 5, b"\x09"))
    with pytest.raises(BlockFormatError, match="EVENTS"):
        decode_telemetry(encode_events(epoch=EPOCH, seq=1, created=T, events=[]), CATALOG)
    with pytest.raises(BlockFormatError, match="catalog"):
        decode_telemetry(BLOCK, Catalog((CatalogEntry("A", "", "s"),)))
    with pytest.raises(BlockFormatError):  # a count the body does not hold
        decode_telemetry(resealed(BLOCK, 26, struct.pack("<I", 22)), CATALOG)
    raw = zstandard.ZstdDecompressor().decompress(BLOCK[HEADER_SIZE:])
    bad_body = zstandard.ZstdCompressor().compress(raw[:-3])
    with pytest.raises(BlockFormatError):
        decode_telemetry(resealed(BLOCK[:HEADER_SIZE] + bad_body, 0, b"EDGB"), CATALOG)


# -- the golden block ------------------------------------------------------------------------

GOLDEN_CATALOG = Catalog(
    (
        CatalogEntry("FeedRate", "t/h", "mill_plc"),
        CatalogEntry("MillPower", "kW", "mill_plc", 0.5),
        CatalogEntry("Running", "", "mill_plc"),
        CatalogEntry("Recipe", "", "packer"),
        CatalogEntry("BagCount", "", "packer"),
    )
)
GOLDEN_SAMPLES = [
    Sample("FeedRate", T + 0.1, 180.25),
    Sample("MillPower", T + 0.1, 3240.5),  # put as 3240.4 with resolution 0.5
    Sample("Running", T, True),
    Sample("FeedRate", T + 0.2, 180.5),
    Sample("MillPower", T + 0.3, 3239.5),  # put as 3239.6
    Sample("Recipe", T - 5, "CEM I 42,5 R"),
    Sample("BagCount", T + 0.2, 123456),
    Sample("BagCount", T + 0.15, 2**64 + 1, UNCERTAIN_LAST_USABLE_VALUE),
    Sample("FeedRate", T + 0.3, None, BAD_NO_COMMUNICATION),
    Sample("MillPower", T + 0.4, math.nan),
    Sample("MillPower", T + 0.5, -math.inf),
    Sample("Running", T + 0.5, False),
    Sample("BagCount", T + 0.5, -7),
]
GOLDEN_HEX = (
    "454447420101f60105842a00000000000000000040406e55da410d0000000000c03e6e55da41000020406e55da41"
    "0123456789abcdef0123456789abcdef79d3b6b7f2342eda28b52ffd20bdcd0400e408000000020203020402000"
    "702000204cc99b380c8dbaada830100cb99339ab366cc9933e5cc99159ab3e614e5cc19b2e64cce9933cc993300"
    "000101000707010104030502060200008080c48108008080c0840400889000006666f8f040407fffa29e800d32"
    "32c400000003000c1443454d20492034322c3520523138343436373434303733373039353531363137031000d0"
    "8342c78d02"
)
GOLDEN_CATALOG_ID = "79d3b6b7f2342eda"


def test_the_golden_block_decodes_to_known_samples() -> None:
    """Format version 1, frozen: if this fails, the format changed (bump FORMAT_VERSION)."""
    block = bytes.fromhex(GOLDEN_HEX)
    assert GOLDEN_CATALOG.id == GOLDEN_CATALOG_ID
    header = read_header(block)
    assert header.kind is BlockKind.TELEMETRY
    assert (header.epoch, header.seq, header.count) == (EPOCH, 42, 13)
    assert (header.created, header.first_time, header.last_time) == (T + 1, T - 5, T + 0.5)
    assert header.catalog_id == GOLDEN_CATALOG_ID
    decoded = decode_telemetry(block, GOLDEN_CATALOG)
    for expected, got in zip(GOLDEN_SAMPLES, decoded, strict=True):
        assert_same(expected, got, None)
