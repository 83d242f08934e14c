"""The tag catalog: which tag a telemetry block's index means, and the catalog's id.

Owns: ``CatalogEntry`` (name, unit, source, optional resolution), ``Catalog`` (the ordered,
unique tags; the index of each), its canonical JSON body (what a CATALOG block carries) and its
id, and parsing such a body back.
Must not: do I/O or know about block headers (agent.buffer.blocks frames the body).
Invariants: the body is deterministic for given entries (fixed key order, no spaces, UTF-8,
``resolution`` only when set), so ``parse_catalog(c.body()) == c`` and ``c.id`` is the first
16 hex digits of sha256(body) in any language; names are unique; a resolution is a finite
number > 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Catalog", "CatalogEntry", "parse_catalog"]


@dataclass(frozen=True)
class CatalogEntry:
    """One tag as the cloud sees it. resolution: quantum of lossy storage (None: lossless)."""

    name: str
    unit: str
    source: str
    resolution: float | None = None

    def __post_init__(self) -> None:
        if self.resolution is not None and not (
            math.isfinite(self.resolution) and self.resolution > 0
        ):
            raise ValueError(f"tag {self.name!r}: resolution must be > 0, got {self.resolution}")


@dataclass(frozen=True)
class Catalog:
    """The tags telemetry blocks refer to by index (their position in ``entries``)."""

    entries: tuple[CatalogEntry, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _body: bytes = field(init=False, repr=False, compare=False)
    _resolution: np.ndarray[Any, np.dtype[np.float64]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index = {entry.name: i for i, entry in enumerate(self.entries)}
        if len(index) != len(self.entries):
            raise ValueError("catalog tag names must be unique")
        rows = [
            {"name": e.name, "unit": e.unit, "source": e.source}
            | ({} if e.resolution is None else {"resolution": e.resolution})
            for e in self.entries
        ]
        body = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        resolution = [e.resolution or 0.0 for e in self.entries]
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_body", body.encode())
        object.__setattr__(self, "_resolution", np.array(resolution, dtype=np.float64))

    @property
    def id(self) -> str:
        """16 hex digits: the first 8 bytes of SHA-256 over the canonical body."""
        return hashlib.sha256(self._body).hexdigest()[:16]

    def index(self, tag: str) -> int:
        """The index of a tag; KeyError for a tag not in the catalog."""
        return self._index[tag]

    def resolutions(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Per index: the tag's resolution, 0.0 for lossless tags (a read-only array)."""
        view = self._resolution.view()
        view.flags.writeable = False
        return view

    def body(self) -> bytes:
        """The canonical JSON: the body of this catalog's CATALOG block."""
        return self._body

    def indexes(self) -> Mapping[str, int]:
        """Tag name -> index, for encoders (do not modify)."""
        return self._index


def parse_catalog(raw: bytes) -> Catalog:
    """A catalog from its JSON body; ValueError/TypeError/KeyError when it is not one."""
    return Catalog(tuple(_entry(row) for row in json.loads(raw)))


def _entry(row: object) -> CatalogEntry:
    if not isinstance(row, dict):
        raise TypeError("a catalog entry is a JSON object")
    name, unit, source = row["name"], row["unit"], row["source"]
    resolution = row.get("resolution")
    if not all(isinstance(text, str) for text in (name, unit, source)):
        raise TypeError("name, unit and source are strings")
    if resolution is not None and (
        isinstance(resolution, bool) or not isinstance(resolution, (int, float))
    ):
        raise TypeError("resolution is a number")
    return CatalogEntry(name, unit, source, resolution)
