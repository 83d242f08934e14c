"""Laboratory and online-analyser model of the simulated mill (plant-model.md 1.4).

Owns: the sampling windows (hourly Blaine/residue composites, 2-hourly clinker C3S spot samples,
daily 2-day/28-day strength composites), the online fineness analyser's 3-minute dead time, and
the queue of results waiting for publication.
Must not: advance the process, touch tags' published state directly (it returns results to the
mill, which publishes them), or own a random generator (it asks the mill's `normal` callable).
Invariants:
- windows are aligned to absolute unix time (hours, 2 hours, UTC days); a sample taken at tick
  time t represents (t - dt, t] and belongs to the window that ends at or after t;
- a result's source time is the end of its sampling window (the sample time for spot samples);
  its publication time is that plus the delay divided by lab_time_scale;
- composites average only samples taken while the mill runs; a window without any is not
  reported; noise is drawn when a window closes, so the draw order depends on time only;
- the analyser publishes every 60 s the Blaine of 3 minutes earlier; its source time is the
  publication time (the dead time is part of the measurement, not age).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from agent.demo.tags import DAY, HOUR

ANALYSER_PERIOD_S = 60.0
ANALYSER_DELAY_S = 180.0
BLAINE_DELAY_S = 45 * 60.0
C3S_PERIOD_S = 2 * HOUR
C3S_DELAY_S = 30 * 60.0
S2_DELAY_S = 48 * HOUR
S28_DELAY_S = 28 * DAY
_EPS = 1e-6

Result = tuple[str, float, float]
"""(tag name, value, source time) of one published result."""


def _next_boundary(t: float, period: float) -> float:
    """The first multiple of period strictly after t."""
    return (math.floor(t / period + _EPS) + 1) * period


class Lab:
    """Sampling, composites and publication queue. Call tick() once per dt after the process."""

    def __init__(
        self, start_time: float, lab_time_scale: float, normal: Callable[[], float]
    ) -> None:
        if not lab_time_scale > 0.0:
            raise ValueError(f"lab_time_scale must be > 0, got {lab_time_scale}")
        self.normal = normal
        self.scale = lab_time_scale
        self.h_end = _next_boundary(start_time, HOUR)
        self.d_end = _next_boundary(start_time, DAY)
        self.c_next = _next_boundary(start_time, C3S_PERIOD_S)
        self.a_next = _next_boundary(start_time, ANALYSER_PERIOD_S)
        self.sb = self.sr = self.s2 = self.s28 = 0.0
        self.nh = self.nd = 0
        self.analyser: deque[float] = deque([3800.0] * round(ANALYSER_DELAY_S / ANALYSER_PERIOD_S))
        self.pending: list[tuple[float, int, str, float, float]] = []
        self.seq = 0

    def _schedule(self, name: str, value: float, source_time: float, delay: float) -> None:
        item = (source_time + delay / self.scale, self.seq, name, value, source_time)
        heapq.heappush(self.pending, item)
        self.seq += 1

    def tick(
        self, t: float, running: bool, *, b: float, r45: float, s2: float, s28: float, c3s: float
    ) -> list[Result]:
        """Take the samples of time t, close windows that ended, return results due by t."""
        if running:
            self.sb += b
            self.sr += r45
            self.s2 += s2
            self.s28 += s28
            self.nh += 1
            self.nd += 1
        out: list[Result] = []
        while t >= self.a_next - _EPS:
            self.analyser.append(b)
            out.append(("ProductFineness", self.analyser.popleft() + 30.0 * self.normal(), t))
            self.a_next += ANALYSER_PERIOD_S
        while t >= self.h_end - _EPS:
            self._close_hour()
        while t >= self.c_next - _EPS:
            value = c3s + 1.5 * self.normal()
            self._schedule("LabClinkerC3S", value, self.c_next, C3S_DELAY_S)
            self.c_next += C3S_PERIOD_S
        while t >= self.d_end - _EPS:
            self._close_day()
        pending = self.pending
        while pending and pending[0][0] <= t + _EPS:
            _, _, name, value, source_time = heapq.heappop(pending)
            out.append((name, value, source_time))
        return out

    def _close_hour(self) -> None:
        if self.nh:
            blaine = self.sb / self.nh + 40.0 * self.normal()
            residue = self.sr / self.nh + 0.3 * self.normal()
            self._schedule("LabBlaine", blaine, self.h_end, BLAINE_DELAY_S)
            self._schedule("LabResidue45", residue, self.h_end, BLAINE_DELAY_S)
        self.sb = self.sr = 0.0
        self.nh = 0
        self.h_end += HOUR

    def _close_day(self) -> None:
        if self.nd:
            s2 = self.s2 / self.nd + 0.8 * self.normal()
            s28 = self.s28 / self.nd + 1.2 * self.normal()
            self._schedule("LabStrength2d", s2, self.d_end, S2_DELAY_S)
            self._schedule("LabStrength28d", s28, self.d_end, S28_DELAY_S)
        self.s2 = self.s28 = 0.0
        self.nd = 0
        self.d_end += DAY
