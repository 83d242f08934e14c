"""The columnar body of a telemetry block: samples <-> uncompressed bytes (zstd is the caller's).

Owns: the layout of the telemetry body (docs/sync-api.md, "Block format"): a two-byte mode
preamble, then the tag, time, type, status, float, integer and text columns, the choice of
each column's transform (by trial: the smaller after compression wins), and the optional
per-tag quantisation (``resolution``). The word transforms are agent.buffer.words.
Must not: do I/O, compress (the caller passes ``size_of`` for the trials), know about headers
or catalogs beyond a name->index mapping and a resolution per index.
Invariants:
- Lossless for every value except finite floats of a tag with a resolution, which come back
  within resolution/2 (plus float rounding); ints, bools, strings, None, NaN and +-inf are
  exact, and so are times (any float, bit for bit) and status codes (any uint32).
- Arrival order is kept: the tag and time columns are in arrival order; the value columns
  (type, status, float, int, text) in "grouped order" (a stable sort by tag index, so one
  tag's values sit together), which the decoder recomputes from the tag column for free.
- ``decode_columns`` validates every length and code it reads and raises ``ValueError`` on
  anything malformed; it never reads past the body it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agent.buffer.words import (
    U64,
    delta,
    planes,
    read_varints,
    undelta,
    unplanes,
    unxor,
    unzigzag,
    varints,
    xor_previous,
    zigzag,
)
from agent.domain.samples import Sample, Value

__all__ = ["decode_columns", "encode_columns", "scaled_values", "value_problem"]

NONE, FLOAT, INT, FALSE, TRUE, STR, BIGINT, SCALED = range(8)
_INT64 = (-(2**63), 2**63 - 1)
_MAX_STATUS = 2**32 - 1
_EXACT = 2.0**53
_U8 = np.dtype("<u1")
FLOAT_RAW, FLOAT_XOR = 0, 1
INT_PLANES, INT_DELTA_VARINTS = 0, 1
_TRIAL_MIN = 8  # fewer words than this: mode 0 without a trial


# -- values --------------------------------------------------------------------------------


def value_problem(value: object) -> str | None:
    """Why a value cannot be stored (None when it can): for callers that filter samples."""
    if value is None or isinstance(value, (bool, int, float)):
        return None
    if isinstance(value, str):
        return None
    return f"value of type {type(value).__name__} (expected float, int, bool, str or None)"


def scaled_values(q: NDArray[np.int64], resolution: NDArray[np.float64]) -> NDArray[np.float64]:
    """Quantised integers back to floats: q / (1/res) when 1/res is an integer, else q * res."""
    with np.errstate(divide="ignore", over="ignore"):
        inverse = 1.0 / resolution
    exact = np.isfinite(inverse) & (inverse == np.round(inverse)) & (inverse <= _EXACT)
    qf = q.astype(np.float64)
    return np.where(exact, qf / np.where(exact, inverse, 1.0), qf * resolution)


_PLAIN = frozenset({float, int, bool, str, type(None)})


def _plain(value: object) -> Value:
    """A subclass value (numpy scalar, IntEnum, ...) as its base type; TypeError otherwise."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cannot store a {value_problem(value)}")


def _classify(
    values: Sequence[Value], types: bytearray
) -> tuple[list[float], list[int], dict[int, bytes]]:
    """Type code per value (into ``types``), and the float, int and text columns' entries."""
    floats = [0.0] * len(values)
    ints = [0] * len(values)
    strings: dict[int, bytes] = {}
    lo, hi = _INT64
    for i, value in enumerate(values):
        v = value if type(value) in _PLAIN else _plain(value)
        if type(v) is float:
            types[i], floats[i] = FLOAT, v
        elif v is None:
            pass  # NONE is 0
        elif isinstance(v, bool):
            types[i] = TRUE if v else FALSE
        elif isinstance(v, int):
            if lo <= v <= hi:
                types[i], ints[i] = INT, v
            else:
                types[i], strings[i] = BIGINT, str(v).encode()
        else:
            assert isinstance(v, str)
            types[i], strings[i] = STR, v.encode("utf-8", "replace")
    return floats, ints, strings


# -- encode / decode -----------------------------------------------------------------------


def _smaller(size_of: Callable[[bytes], int], count: int, *candidates: bytes) -> int:
    """Index of the candidate encoding that compresses smallest (0 for tiny columns)."""
    if count < _TRIAL_MIN:
        return 0
    sizes = [size_of(candidate) for candidate in candidates]
    return sizes.index(min(sizes))


def encode_columns(
    samples: Sequence[Sample],
    index: Mapping[str, int],
    resolution: NDArray[np.float64],
    size_of: Callable[[bytes], int],
) -> tuple[bytes, tuple[float, float] | None]:
    """The uncompressed body and (first_time, last_time) over the non-NaN times (or None).

    index: tag name -> catalog index (a KeyError names an unknown tag); resolution: per
    catalog index, 0.0 for lossless tags; size_of: compressed size, to choose column modes.
    Raises TypeError/ValueError for unstorable samples.
    """
    n = len(samples)
    tag = np.fromiter((index[s.tag] for s in samples), dtype=np.int64, count=n)
    times = np.fromiter((s.source_time for s in samples), dtype=np.float64, count=n)
    try:
        status = np.array([s.status for s in samples], dtype=np.int64).reshape(n)
    except OverflowError as exc:
        raise ValueError("status codes must be unsigned 32-bit integers") from exc
    if n and (status.min() < 0 or status.max() > _MAX_STATUS):
        raise ValueError("status codes must be unsigned 32-bit integers")
    types = bytearray(n)
    float_list, int_list, strings = _classify([s.value for s in samples], types)
    kinds = np.frombuffer(bytes(types), dtype=_U8)
    floats = np.array(float_list, dtype=np.float64).reshape(n)
    ints = np.array(int_list, dtype=np.int64).reshape(n)

    res = resolution[tag]
    quantise = (kinds == FLOAT) & (res > 0) & np.isfinite(floats)
    if quantise.any():
        with np.errstate(all="ignore"):
            q = np.rint(floats[quantise] / res[quantise])
        fits = np.abs(q) <= _EXACT
        where = np.flatnonzero(quantise)[fits]
        ints[where] = q[fits].astype(np.int64)
        kinds = kinds.copy()
        kinds[where] = SCALED

    order = np.argsort(tag, kind="stable")
    kinds_g = kinds[order]
    float_g = floats[order][kinds_g == FLOAT].view(np.uint64)
    int_g = ints[order][(kinds_g == INT) | (kinds_g == SCALED)].view(np.uint64)
    texts = [strings[p] for p in order[(kinds_g == STR) | (kinds_g == BIGINT)].tolist()]

    float_cols = (planes(float_g), planes(xor_previous(float_g)))
    float_mode = _smaller(size_of, float_g.size, *float_cols)
    int_cols = (planes(zigzag(int_g)), varints(zigzag(delta(int_g))))
    int_mode = _smaller(size_of, int_g.size, *int_cols)
    parts = [
        bytes((float_mode, int_mode)),
        varints(zigzag(delta(tag.view(np.uint64)))),
        varints(zigzag(delta(times.view(np.uint64)))),
        kinds_g.tobytes(),
        varints(status[order].view(np.uint64)),
        float_cols[float_mode],
        int_cols[int_mode],
        varints(np.array([len(t) for t in texts], dtype=np.uint64)),
        *texts,
    ]
    known = times[~np.isnan(times)]
    span = (float(known.min()), float(known.max())) if known.size else None
    return b"".join(parts), span


@dataclass(frozen=True)
class _Columns:
    tag: NDArray[np.int64]  # arrival order
    times: U64  # arrival order (float64 bit patterns)
    kinds: NDArray[np.uint8]  # the rest in grouped order
    status: U64
    floats: NDArray[np.float64]
    ints: NDArray[np.int64]
    lengths: list[int]
    text_at: int


def _split(body: bytes, n: int, catalog_size: int) -> _Columns:
    """Cut a body into its columns, checking every size and code against the body."""
    if len(body) < 2 + 3 * n:
        raise ValueError(f"body of {len(body)} bytes is too short for {n} samples")
    float_mode, int_mode = body[0], body[1]
    if float_mode > FLOAT_XOR or int_mode > INT_DELTA_VARINTS:
        raise ValueError(f"unknown column modes {float_mode}, {int_mode}")
    words, at = read_varints(body, 2, n)
    tag = undelta(unzigzag(words))
    if n and tag.max() >= catalog_size:
        raise ValueError(f"tag index {int(tag.max())} outside a catalog of {catalog_size} tags")
    words, at = read_varints(body, at, n)
    times = undelta(unzigzag(words))
    if at + n > len(body):
        raise ValueError("body ends inside the type column")
    kinds = np.frombuffer(body, dtype=_U8, count=n, offset=at)
    if n and kinds.max() > SCALED:
        raise ValueError(f"unknown value type code {int(kinds.max())}")
    status, at = read_varints(body, at + n, n)
    if n and status.max() > _MAX_STATUS:
        raise ValueError("a status code larger than 32 bits")
    words, at = unplanes(body, at, int(np.count_nonzero(kinds == FLOAT)))
    floats = unxor(words) if float_mode == FLOAT_XOR else words
    n_int = int(np.count_nonzero((kinds == INT) | (kinds == SCALED)))
    if int_mode == INT_DELTA_VARINTS:
        words, at = read_varints(body, at, n_int)
        ints = undelta(unzigzag(words))
    else:
        words, at = unplanes(body, at, n_int)
        ints = unzigzag(words)
    words, at = read_varints(body, at, int(np.count_nonzero((kinds == STR) | (kinds == BIGINT))))
    lengths = words.tolist()
    if len(body) != at + sum(lengths):
        raise ValueError(f"body of {len(body)} bytes, columns need {at + sum(lengths)}")
    return _Columns(
        tag=tag.astype(np.int64),
        times=times,
        kinds=kinds,
        status=status,
        floats=floats.view(np.float64),
        ints=ints.view(np.int64),
        lengths=lengths,
        text_at=at,
    )


def _values(
    body: bytes, cols: _Columns, order: NDArray[np.intp], resolution: NDArray[np.float64]
) -> list[Value]:
    """Every sample's value, in arrival order."""
    kinds = cols.kinds
    is_int = (kinds == INT) | (kinds == SCALED)
    int_values: list[Value] = list(cols.ints.tolist())
    scaled = kinds[is_int] == SCALED
    if scaled.any():
        res = resolution[cols.tag[order][is_int][scaled]]
        if not np.all(res > 0):
            raise ValueError("a quantised value for a tag without a resolution")
        scaled_list = scaled_values(cols.ints[scaled], res).tolist()
        for j, v in zip(np.flatnonzero(scaled).tolist(), scaled_list, strict=True):
            int_values[j] = v
    values: list[Value] = [None] * len(kinds)
    float_iter, int_iter = iter(cols.floats.tolist()), iter(int_values)
    for pos, kind in zip(order.tolist(), kinds.tolist(), strict=True):
        if kind == FLOAT:
            values[pos] = next(float_iter)
        elif kind in (INT, SCALED):
            values[pos] = next(int_iter)
        elif kind == TRUE:
            values[pos] = True
        elif kind == FALSE:
            values[pos] = False
    is_text = (kinds == STR) | (kinds == BIGINT)
    if cols.lengths:
        texts = _texts(body, cols.text_at, cols.lengths, kinds[is_text].tolist())
        for pos, v in zip(order[is_text].tolist(), texts, strict=True):
            values[pos] = v
    return values


def decode_columns(
    body: bytes, count: int, names: Sequence[str], resolution: NDArray[np.float64]
) -> list[Sample]:
    """The samples of a body written by encode_columns, in arrival order; ValueError if bad."""
    cols = _split(body, count, len(names))
    order = np.argsort(cols.tag, kind="stable")
    values = _values(body, cols, order, resolution)
    status = np.empty(count, dtype=np.uint64)
    status[order] = cols.status
    return [
        Sample(names[t], when, value, code)
        for t, when, value, code in zip(
            cols.tag.tolist(),
            cols.times.view(np.float64).tolist(),
            values,
            status.tolist(),
            strict=True,
        )
    ]


def _texts(body: bytes, offset: int, lengths: list[int], kinds: list[int]) -> list[Value]:
    out: list[Value] = []
    for size, kind in zip(lengths, kinds, strict=True):
        raw = body[offset : offset + size]
        offset += size
        text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
        out.append(int(text) if kind == BIGINT else text)
    return out
