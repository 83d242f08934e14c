"""What the simulated lab reports, as a LIMS holds it: one record per test of one sample
(plant-model.md 4.2).

Owns: `LabRecord` (sample id, sample time, window, product, test, value, unit, entry time, the
tag that publishes it, and the hidden noise-free truth of its window), the table of the lab's
tests (`TESTS`: test name -> tag, unit, noise, window, age) and the sample-id format.
Must not: draw random numbers, hold state or know about servers; `agent.quality` is the
agent's side and is never imported here (the simulator is a separate peer).
Invariants: field names and meanings match `agent.quality.results.LabResult` (sample_time is
the window's end, unix s UTC; the window is (sample_time - window_s, sample_time]); test names
are the model output names ("blaine", "residue45", "c3s", "s2", "s7", "s28"); a sample id is
"<prefix>-<window end, UTC, %Y%m%dT%H%MZ>", so it is deterministic and shared by every test of
one sample (the identity of a result is (sample_id, test)).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from agent.demo.tags import DAY, HOUR

__all__ = ["TESTS", "LabRecord", "LabTest", "sample_id"]


@dataclass(frozen=True)
class LabTest:
    """One test the lab runs: the tag that publishes it, its unit, noise sigma, the window
    its sample stands for, its age at testing and the sample-id prefix."""

    test: str
    tag: str
    unit: str
    sigma: float
    window_s: float
    age_s: float
    prefix: str


TESTS: dict[str, LabTest] = {
    t.test: t
    for t in (
        LabTest("blaine", "LabBlaine", "cm2/g", 40.0, HOUR, 45 * 60.0, "B"),
        LabTest("residue45", "LabResidue45", "%", 0.3, HOUR, 45 * 60.0, "B"),
        LabTest("c3s", "LabClinkerC3S", "%", 1.5, 2 * HOUR, 30 * 60.0, "C"),
        LabTest("s2", "LabStrength2d", "MPa", 0.8, 4 * HOUR, 2 * DAY, "S"),
        LabTest("s7", "LabStrength7d", "MPa", 1.0, 4 * HOUR, 7 * DAY, "S"),
        LabTest("s28", "LabStrength28d", "MPa", 1.2, 4 * HOUR, 28 * DAY, "S"),
    )
}
"""The lab's tests by name. Blaine/residue: hourly composites entered 45 min after the hour;
C3S: a 2-hourly clinker spot sample entered after 30 min (its value is the C3S at the sample
time; its window is the 2 h of clinker it stands for, since the previous sample); strengths:
4-hourly composites (est.), each age entered at sample time + age + an entry delay of 2-6 h
(testing, LIMS)."""


def sample_id(prefix: str, sample_time: float) -> str:
    """The deterministic id of the sample whose window ends at sample_time."""
    end = dt.datetime.fromtimestamp(round(sample_time), dt.UTC)
    return f"{prefix}-{end:%Y%m%dT%H%MZ}"


@dataclass(frozen=True)
class LabRecord:
    """One lab result as the LIMS delivers it, plus the hidden truth (for tests only).

    value: what the lab reports (truth + lab noise); truth: the noise-free mean over the
    window of what the test measures (for the C3S spot sample: its value at the sample time);
    entry_time: when it
    was entered (= published on its tag), sim unix s.
    """

    sample_id: str
    sample_time: float
    window_s: float
    product: str
    test: str
    value: float
    unit: str
    entry_time: float
    tag: str
    truth: float

    @property
    def window_start(self) -> float:
        return self.sample_time - self.window_s
