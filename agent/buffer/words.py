"""The integer transforms the block format is built from, each with its exact inverse.

Owns: zigzag, delta and XOR-with-previous over uint64 words (all modulo 2**64), byte planes
(transposition of little-endian words), and unsigned LEB128 varints, vectorised with numpy.
These are the primitives docs/sync-api.md names; a decoder in another language needs only
these five to read a telemetry body.
Must not: know about samples, columns or blocks; do I/O.
Invariants: ``unzigzag(zigzag(w)) == w``, ``undelta(delta(w)) == w``,
``unxor(xor_previous(w)) == w``, ``unplanes(planes(w)) == w`` and
``read_varints(varints(w)) == w`` for every uint64 array ``w``; the readers raise
``ValueError`` instead of reading past the bytes they are given.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "U64",
    "delta",
    "planes",
    "read_varints",
    "undelta",
    "unplanes",
    "unxor",
    "unzigzag",
    "varints",
    "xor_previous",
    "zigzag",
]

U64 = NDArray[np.uint64]
_U8 = np.dtype("<u1")
_SEVEN = np.uint64(0x7F)
_MAX_VARINT = 10


def zigzag(words: U64) -> U64:
    """Signed (two's complement) to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    signed = words.view(np.int64)
    return ((signed << 1) ^ (signed >> 63)).view(np.uint64)


def unzigzag(words: U64) -> U64:
    low = (words & np.uint64(1)).view(np.int64)
    return ((words >> np.uint64(1)).view(np.int64) ^ -low).view(np.uint64)


def delta(words: U64) -> U64:
    """words[i] - words[i-1] modulo 2**64 (the first against 0)."""
    out = words.copy()
    out[1:] -= words[:-1]
    return out


def undelta(words: U64) -> U64:
    return np.cumsum(words, dtype=np.uint64)


def xor_previous(words: U64) -> U64:
    """words[i] XOR words[i-1] (the first against 0)."""
    out = words.copy()
    out[1:] ^= words[:-1]
    return out


def unxor(words: U64) -> U64:
    return np.bitwise_xor.accumulate(words) if words.size else words.copy()


def planes(words: U64) -> bytes:
    """8-byte little-endian words as byte planes: every word's byte 0, then every byte 1..."""
    flat = np.ascontiguousarray(words, dtype="<u8")
    return flat.view(_U8).reshape(-1, 8).T.tobytes()


def unplanes(data: bytes, offset: int, count: int) -> tuple[U64, int]:
    """``count`` words from the planes at ``offset``; and the offset after them."""
    end = offset + 8 * count
    if end > len(data):
        raise ValueError(f"{count} words need {8 * count} bytes at {offset}; {len(data)} in all")
    raw = np.frombuffer(data, dtype=_U8, count=8 * count, offset=offset)
    words = np.ascontiguousarray(raw.reshape(8, count).T).view("<u8").reshape(count)
    return words.astype(np.uint64), end


def varints(words: U64) -> bytes:
    """Unsigned LEB128: 7 bits a byte, least significant first, high bit set on all but the
    last byte of each number (1 byte for 0..127, at most 10 for a uint64)."""
    if words.size == 0:
        return b""
    lengths = np.ones(words.size, dtype=np.int64)
    for k in range(1, _MAX_VARINT):
        lengths += words >= np.uint64(1 << (7 * k))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for k in range(int(lengths.max())):
        has = lengths > k
        byte = ((words[has] >> np.uint64(7 * k)) & _SEVEN).astype(np.uint8)
        byte[lengths[has] > k + 1] |= 0x80
        out[starts[has] + k] = byte
    return out.tobytes()


def read_varints(data: bytes, offset: int, count: int) -> tuple[U64, int]:
    """``count`` LEB128 numbers from ``offset``; and the offset after them."""
    if count == 0:
        return np.zeros(0, dtype=np.uint64), offset
    window = min(len(data) - offset, count * _MAX_VARINT)
    if window <= 0:
        raise ValueError(f"{count} varints expected at {offset}; the data ends there")
    buf = np.frombuffer(data, dtype=_U8, count=window, offset=offset)
    last = np.flatnonzero(buf < 0x80)
    if last.size < count:
        raise ValueError(f"{count} varints expected at {offset}; found {last.size}")
    ends = last[:count] + 1
    starts = np.concatenate(([0], ends[:-1]))
    lengths = ends - starts
    if lengths.max() > _MAX_VARINT:
        raise ValueError("a varint longer than 10 bytes")
    total = int(ends[-1])
    shift = (7 * (np.arange(total) - np.repeat(starts, lengths))).astype(np.uint64)
    parts = (buf[:total].astype(np.uint64) & _SEVEN) << shift
    return np.add.reduceat(parts, starts).astype(np.uint64), offset + total
