"""The audit trail's hash chain: how one record is hashed, and how a chain is verified.

Owns: the canonical form of an audit record (JSON, sorted keys, no whitespace, UTF-8, no
NaN), its hash (sha256 over the previous record's hash and the canonical body), and the
verification of a sequence of records (seq contiguous, each `prev` equal to the previous
hash, each hash recomputed). Anyone can re-check a chain from its records alone, in any
language.
Must not: do I/O or read a clock; agent.control.audit stores and reads the records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS", "ChainReport", "canonical", "record_hash", "verify_chain"]

GENESIS = "0" * 64
"""The `prev` of the first record ever written."""


def canonical(body: Mapping[str, Any]) -> bytes:
    """The record's canonical bytes (ValueError on NaN/inf: audit records are strict JSON)."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(prev: str, seq: int, body: Mapping[str, Any]) -> str:
    """sha256(prev || ":" || seq || ":" || canonical(body)), hex."""
    digest = hashlib.sha256()
    digest.update(f"{prev}:{seq}:".encode("ascii"))
    digest.update(canonical(body))
    return digest.hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The verdict on a chain: how many records, their seq range, and the first break."""

    ok: bool
    records: int
    first_seq: int | None
    last_seq: int | None
    problem: str | None = None


def verify_chain(
    records: Iterable[tuple[int, str, str, Mapping[str, Any]]], anchor: str | None = None
) -> ChainReport:
    """Check (seq, prev, hash, body) records in seq order.

    `anchor` is the hash the first record must follow (GENESIS for a chain never pruned, or
    the hash of the last pruned record); None accepts whatever the first record says.
    """
    count, first, last_seq, last_hash = 0, None, None, anchor
    for seq, prev, digest, body in records:
        if first is None:
            first = seq
        elif last_seq is not None and seq != last_seq + 1:
            return ChainReport(False, count, first, last_seq, f"seq {seq} follows {last_seq}")
        if last_hash is not None and prev != last_hash:
            return ChainReport(
                False, count, first, last_seq, f"record {seq}: prev does not match record before"
            )
        try:
            expected = record_hash(prev, seq, body)
        except (TypeError, ValueError) as exc:
            return ChainReport(False, count, first, last_seq, f"record {seq}: {exc}")
        if digest != expected:
            return ChainReport(False, count, first, last_seq, f"record {seq}: hash mismatch")
        count, last_seq, last_hash = count + 1, seq, digest
    return ChainReport(True, count, first, last_seq)
