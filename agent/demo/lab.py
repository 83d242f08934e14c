"""Laboratory and online-analyser model of the simulated mill (plant-model.md 1.4, 4.2).

Owns: the sampling windows (hourly Blaine/residue composites, 2-hourly clinker C3S spot
samples, 4-hourly strength composites tested at 2, 7 and 28 days), the online fineness
analyser's 3-minute dead time, the queue of results waiting for entry, and the record of
every result entered so far (`records`, `lab_record.LabRecord`).
Must not: advance the process, touch tags' published state directly (it returns results to the
mill, which publishes them), or own a random generator (it asks the mill's callables).
Invariants:
- windows are aligned to absolute unix time (hours, 2 hours, 4 hours from 00:00 UTC); a sample
  taken at tick time t represents (t - dt, t] and belongs to the window that ends at or after t;
- a result's source time (its sample time) is the end of its window (the sample time for spot
  samples); its entry time is that plus its delay divided by lab_time_scale: 45 min for
  Blaine/residue, 30 min for C3S, age + U(2 h, 6 h) rounded to whole minutes for each strength
  age (one draw per test; a LIMS records entries to the minute);
- composites average only samples taken while the mill runs; a window without any is not
  reported; noise is drawn when a window closes, so the draw order depends on time only.
  Blaine, residue and C3S noise come from `normal` (the mill's main stream, as before issue
  14); strength noise and entry delays from `strength_normal`/`uniform` (a second stream), so
  the strength lab never shifts the process's random sequence; the delays are drawn even when
  the lab is noise-free, so a noise-free lab has the same entry times as a noisy one;
- `records` is in entry order (ties: in scheduling order); a record's value is what its tag
  publishes;
- the analyser publishes every 60 s the Blaine of 3 minutes earlier; its source time is the
  publication time (the dead time is part of the measurement, not age);
- every record names the product whose material its sample is: `product(sample_time)` (the
  mill routes material to a new product only after a change's transition, plant-model 4.1).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable

from agent.demo.lab_record import TESTS, LabRecord, sample_id
from agent.demo.tags import HOUR

ANALYSER_PERIOD_S = 60.0
ANALYSER_DELAY_S = 180.0
C3S_PERIOD_S = 2 * HOUR
STRENGTH_PERIOD_S = 4 * HOUR
ENTRY_DELAY_S = (2 * HOUR, 6 * HOUR)
"""Testing and LIMS entry after a strength age is reached: uniform in this range."""
_EPS = 1e-6

Result = tuple[str, float, float]
"""(tag name, value, source time) of one published result."""


def _next_boundary(t: float, period: float) -> float:
    """The first multiple of period strictly after t."""
    return (math.floor(t / period + _EPS) + 1) * period


class Lab:
    """Sampling, composites and entry queue. Call tick() once per dt after the process."""

    def __init__(
        self,
        start_time: float,
        lab_time_scale: float,
        normal: Callable[[], float],
        *,
        product: Callable[[float], str],
        strength_normal: Callable[[], float],
        uniform: Callable[[], float],
    ) -> None:
        if not lab_time_scale > 0.0:
            raise ValueError(f"lab_time_scale must be > 0, got {lab_time_scale}")
        self.normal, self.strength_normal, self.uniform = normal, strength_normal, uniform
        self.product = product  # sample time -> the product name its material is
        self.scale = lab_time_scale
        self.h_end = _next_boundary(start_time, HOUR)
        self.s_end = _next_boundary(start_time, STRENGTH_PERIOD_S)
        self.c_next = _next_boundary(start_time, C3S_PERIOD_S)
        self.a_next = _next_boundary(start_time, ANALYSER_PERIOD_S)
        self.sb = self.sr = self.s2 = self.s7 = self.s28 = 0.0
        self.nh = self.ns = 0
        self.analyser: deque[float] = deque([3800.0] * round(ANALYSER_DELAY_S / ANALYSER_PERIOD_S))
        self.pending: list[tuple[float, int, LabRecord]] = []
        self.records: list[LabRecord] = []
        self.seq = 0

    def _schedule(self, test: str, truth: float, noise: float, sample_time: float,
                  delay: float) -> None:  # fmt: skip
        spec = TESTS[test]
        entry = sample_time + delay / self.scale
        record = LabRecord(
            sample_id=sample_id(spec.prefix, sample_time), sample_time=sample_time,
            window_s=spec.window_s, product=self.product(sample_time), test=test,
            value=truth + noise, unit=spec.unit, entry_time=entry, tag=spec.tag, truth=truth,
        )  # fmt: skip
        heapq.heappush(self.pending, (entry, self.seq, record))
        self.seq += 1

    def tick(
        self, t: float, running: bool, *, b: float, r45: float, s2: float, s7: float,
        s28: float, c3s: float,
    ) -> list[Result]:  # fmt: skip
        """Take the samples of time t, close windows that ended, return results due by t."""
        if running:
            self.sb += b
            self.sr += r45
            self.s2 += s2
            self.s7 += s7
            self.s28 += s28
            self.nh += 1
            self.ns += 1
        out: list[Result] = []
        while t >= self.a_next - _EPS:
            self.analyser.append(b)
            out.append(("ProductFineness", self.analyser.popleft() + 30.0 * self.normal(), t))
            self.a_next += ANALYSER_PERIOD_S
        while t >= self.h_end - _EPS:
            self._close_hour()
        while t >= self.c_next - _EPS:
            self._schedule("c3s", c3s, 1.5 * self.normal(), self.c_next, TESTS["c3s"].age_s)
            self.c_next += C3S_PERIOD_S
        while t >= self.s_end - _EPS:
            self._close_strength()
        pending = self.pending
        while pending and pending[0][0] <= t + _EPS:
            record = heapq.heappop(pending)[2]
            self.records.append(record)
            out.append((record.tag, record.value, record.sample_time))
        return out

    def _close_hour(self) -> None:
        if self.nh:
            blaine, residue = self.sb / self.nh, self.sr / self.nh
            delay = TESTS["blaine"].age_s
            self._schedule("blaine", blaine, 40.0 * self.normal(), self.h_end, delay)
            self._schedule("residue45", residue, 0.3 * self.normal(), self.h_end, delay)
        self.sb = self.sr = 0.0
        self.nh = 0
        self.h_end += HOUR

    def _close_strength(self) -> None:
        if self.ns:
            lo, hi = ENTRY_DELAY_S
            for test, total in (("s2", self.s2), ("s7", self.s7), ("s28", self.s28)):
                spec = TESTS[test]
                delay = spec.age_s + 60.0 * round((lo + (hi - lo) * self.uniform()) / 60.0)
                noise = spec.sigma * self.strength_normal()
                self._schedule(test, total / self.ns, noise, self.s_end, delay)
        self.s2 = self.s7 = self.s28 = 0.0
        self.ns = 0
        self.s_end += STRENGTH_PERIOD_S

    def scheduled(self) -> list[LabRecord]:
        """Every result taken but not entered yet (its test or entry is still to come), in
        entry order."""
        return [entry[2] for entry in sorted(self.pending)]

    def results(self, since_entry: float = -math.inf) -> list[LabRecord]:
        """Every result entered so far whose entry time is after since_entry, in entry order."""
        records = self.records
        return records[bisect.bisect_right(records, since_entry, key=lambda r: r.entry_time) :]
