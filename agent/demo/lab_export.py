"""The simulated LIMS's CSV export folder (plant-model 4.2): the lab's results as a plant's LIMS
drops them for other systems, one file per export period.

Owns: the export format (below), the export periods and their file names, and writing each
file atomically into the folder.
Must not: step the mill, draw random numbers, or read a clock (sim time comes from the mill).
Invariants:
- periods are aligned to multiples of `period_s` of unix time (4 h: 00:00, 04:00, ... UTC); the
  file of the period (end - period_s, end] holds every result whose entry time lies in it, and
  is written once the mill's time has reached its end (an empty period gives a header-only
  file); a period is never written twice, and periods are written in time order;
- a file appears complete or not at all: it is written under a temporary name that does not
  match *.csv (".lims_....csv.tmp") and then renamed;
- file name: lims_<period end in UTC, %Y%m%d_%H%M>.csv (UTC, so names never repeat when the
  local clock falls back);
- content, UTF-8, lines ending "\\n", ";" between fields, no quoting (no field holds ";"):
  header `sample_id;sample_time;window_h;product;test;value;unit;entry_time`, then one row per
  result, by entry time (then sample id, then test as in lab_record.TESTS): sample_time and
  entry_time in local time of `timezone` formatted "%d.%m.%Y %H:%M" (no offset: like a real
  LIMS, the hour the clock repeats in autumn is ambiguous), window_h the window in hours and
  value with 3 decimals, both with a decimal comma ("4", "2", "51,234").
"""

from __future__ import annotations

import datetime as dt
import math
import os
import zoneinfo
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.demo.lab_record import TESTS, LabRecord
from agent.demo.tags import HOUR

__all__ = ["COLUMNS", "EXPORT_PERIOD_S", "TIME_FORMAT", "LabCsvExport", "render"]

COLUMNS = ("sample_id", "sample_time", "window_h", "product", "test", "value", "unit",
           "entry_time")  # fmt: skip
TIME_FORMAT = "%d.%m.%Y %H:%M"
EXPORT_PERIOD_S = 4 * HOUR
_ORDER = {name: i for i, name in enumerate(TESTS)}


def _number(x: float, fmt: str) -> str:
    return format(x, fmt).replace(".", ",")


def render(records: Sequence[LabRecord], zone: zoneinfo.ZoneInfo) -> str:
    """The text of one export file holding `records`."""

    def local(t: float) -> str:
        return dt.datetime.fromtimestamp(t, zone).strftime(TIME_FORMAT)

    lines = [";".join(COLUMNS)]
    for r in sorted(records, key=lambda r: (r.entry_time, r.sample_id, _ORDER[r.test])):
        row = (
            r.sample_id, local(r.sample_time), _number(r.window_s / HOUR, "g"), r.product,
            r.test, _number(r.value, ".3f"), r.unit, local(r.entry_time),
        )  # fmt: skip
        lines.append(";".join(row))
    return "\n".join(lines) + "\n"


class LabCsvExport:
    """Writes the export files of every period that has ended; call export() after steps."""

    def __init__(
        self, folder: Path, *, start_time: float, timezone: str = "Europe/Berlin",
        period_s: float = EXPORT_PERIOD_S,
    ) -> None:  # fmt: skip
        if not period_s > 0.0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        try:
            self.zone = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (an IANA name)") from None
        self.folder = folder
        self.period_s = period_s
        self.next_end = (math.floor(start_time / period_s + 1e-9) + 1) * period_s
        self.written: list[Path] = []

    def export(self, now: float, results: Callable[[float], list[LabRecord]]) -> list[Path]:
        """Write the file of each period that ended by `now` (sim time); `results(since)` gives
        the results entered after `since` (Mill.lab_results). Returns the files written."""
        out: list[Path] = []
        while self.next_end <= now + 1e-6:
            start, end = self.next_end - self.period_s, self.next_end
            due = [r for r in results(start) if r.entry_time <= end]
            out.append(self._write(end, render(due, self.zone)))
            self.next_end += self.period_s
        self.written += out
        return out

    def _write(self, end: float, text: str) -> Path:
        name = f"lims_{dt.datetime.fromtimestamp(round(end), dt.UTC):%Y%m%d_%H%M}.csv"
        path = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        with tmp.open("w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path
