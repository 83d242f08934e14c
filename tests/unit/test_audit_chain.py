"""The audit chain: a record's hash covers its body, seq and predecessor; every break shows."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.control.audit_chain import GENESIS, canonical, record_hash, verify_chain

Record = tuple[int, str, str, dict[str, Any]]


def chain(bodies: list[dict[str, Any]], first: int = 1, prev: str = GENESIS) -> list[Record]:
    out = []
    for seq, body in enumerate(bodies, start=first):
        digest = record_hash(prev, seq, body)
        out.append((seq, prev, digest, body))
        prev = digest
    return out


BODIES = [{"kind": "cycle", "n": i, "verdicts": [{"gate": "guard", "ok": i % 2 == 0}]}
          for i in range(6)]  # fmt: skip


def test_an_intact_chain_verifies() -> None:
    report = verify_chain(chain(BODIES), GENESIS)
    assert (report.ok, report.records, report.first_seq, report.last_seq) == (True, 6, 1, 6)


def test_the_hash_does_not_depend_on_key_order() -> None:
    assert record_hash(GENESIS, 1, {"a": 1, "b": 2}) == record_hash(GENESIS, 1, {"b": 2, "a": 1})


def test_nan_is_refused_as_audit_content() -> None:
    with pytest.raises(ValueError):
        canonical({"value": math.nan})


@given(st.integers(0, 5), st.sampled_from(["body", "hash", "prev", "drop", "swap", "seq"]))
def test_every_kind_of_tampering_is_found(at: int, how: str) -> None:
    records = chain(BODIES)
    seq, prev, digest, body = records[at]
    if how == "body":
        records[at] = (seq, prev, digest, {**body, "n": 99})
    elif how == "hash":
        records[at] = (seq, prev, "f" * 64, body)
    elif how == "prev":
        records[at] = (seq, "e" * 64, digest, body)
    elif how == "drop":
        if at in (0, 5):  # dropping an end is pruning: caught by the anchor / the count
            at = 2
        del records[at]
    elif how == "swap":
        j = (at + 1) % 6
        records[at], records[j] = records[j], records[at]
    else:
        records[at] = (seq + 10, prev, digest, body)
    report = verify_chain(records, GENESIS)
    assert not report.ok and report.problem


def test_a_pruned_chain_verifies_from_its_anchor_only() -> None:
    records = chain(BODIES)
    anchor = records[2][2]
    assert verify_chain(records[3:], anchor).ok
    assert not verify_chain(records[3:], GENESIS).ok
