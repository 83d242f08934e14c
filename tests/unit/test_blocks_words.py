"""The block format's integer transforms: each undone exactly by its inverse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.buffer.words import (
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

words = st.lists(st.integers(0, 2**64 - 1), max_size=64).map(
    lambda xs: np.array(xs, dtype=np.uint64)
)


@given(words)
def test_every_transform_is_undone_by_its_inverse(w: np.ndarray) -> None:
    assert np.array_equal(unzigzag(zigzag(w)), w)
    assert np.array_equal(undelta(delta(w)), w)
    assert np.array_equal(unxor(xor_previous(w)), w)
    back, end = unplanes(b"xx" + planes(w), 2, w.size)
    assert np.array_equal(back, w) and end == 2 + 8 * w.size
    encoded = varints(w)
    back, end = read_varints(encoded + b"\x7f", 0, w.size)
    assert np.array_equal(back, w) and end == len(encoded)


def test_known_encodings() -> None:
    signed = np.array([0, -1, 1, -2, 2**63 - 1], dtype=np.int64).view(np.uint64)
    assert zigzag(signed).tolist() == [0, 1, 2, 3, 2**64 - 2]
    assert varints(np.array([0, 127, 128, 300, 2**64 - 1], dtype=np.uint64)) == bytes.fromhex(
        "00" "7f" "8001" "ac02" "ffffffffffffffffff01"
    )  # fmt: skip
    assert planes(np.array([0x0102, 0x0304], dtype=np.uint64)) == bytes.fromhex(
        "0204" "0103" + "0000" * 6
    )  # fmt: skip


def test_readers_refuse_to_read_past_the_end() -> None:
    with pytest.raises(ValueError):
        read_varints(b"\x80\x80", 0, 1)
    with pytest.raises(ValueError):
        read_varints(b"\x01", 0, 2)
    with pytest.raises(ValueError):
        read_varints(b"\x01", 1, 1)
    with pytest.raises(ValueError):
        read_varints(b"\xff" * 11 + b"\x01", 0, 1)
    with pytest.raises(ValueError):
        unplanes(b"\x00" * 15, 0, 2)
