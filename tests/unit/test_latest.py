"""LatestValues keeps the newest sample per tag and never invents one."""

from __future__ import annotations

from agent.domain.latest import LatestValues
from agent.domain.samples import BAD_NO_COMMUNICATION, Quality, Sample


def test_newest_sample_wins_and_bad_replaces_good() -> None:
    latest = LatestValues({"A": "plc", "B": "plc", "C": "meter"})
    latest.update([Sample("A", 1.0, 10.0), Sample("B", 1.0, 5.0)])
    latest.update([Sample("A", 2.0, 11.0)])
    assert latest.get("A") == Sample("A", 2.0, 11.0)
    latest.update([Sample("A", 3.0, None, BAD_NO_COMMUNICATION)])
    sample = latest.get("A")
    assert sample is not None and sample.value is None and sample.quality is Quality.BAD
    assert latest.get("C") is None
    assert latest.received == {"plc": 4, "meter": 0}


def test_snapshot_is_a_copy() -> None:
    latest = LatestValues({"A": "plc"})
    latest.update([Sample("A", 1.0, 1.0)])
    snap = latest.snapshot()
    latest.update([Sample("A", 2.0, 2.0)])
    assert snap["A"].value == 1.0
