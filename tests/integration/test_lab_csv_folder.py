"""The watched folder of LIMS exports (agent.quality.csv_folder) over real files and the real
quality.db (agent.quality.store.QualityStore), on a FakeClock.

The folder polls every 30 s of fake time; a round is over when the watcher sleeps again
(`clock.sleepers == 1`), so every wait follows the watcher's own progress. `ingest` stores
each result in the real store (the truth loop's ingest does that and then joins it).
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.config.quality_settings import LabCsv
from agent.domain.clock import FakeClock
from agent.quality.csv_folder import MAX_ROWS_LOGGED, CsvFolder
from agent.quality.results import Ingested, LabResult
from agent.quality.store import QualityStore
from tests.support.logs import events
from tests.support.tasks import running
from tests.support.wait import until

POLL_S = 30.0
PRODUCT = "CEM I 42,5 R"
DEFAULT_PRODUCT = "CEM II/B-S 42,5 N"
HEADER = "sample_id;sample_time;window_h;product;test;value;unit;entry_time"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


class Rig:
    def __init__(self, tmp_path: Path, store: QualityStore, clock: FakeClock) -> None:
        self.folder = tmp_path / "lims"
        self.store, self.clock = store, clock
        self.settings = LabCsv(folder=self.folder, timezone="Europe/Berlin", poll_interval_s=POLL_S)

    async def ingest(self, results: Sequence[LabResult]) -> list[Ingested]:
        return [(await self.store.put_result(r)).outcome for r in results]

    def watcher(self) -> CsvFolder:
        return CsvFolder(
            self.settings,
            store=self.store,
            ingest=self.ingest,
            clock=self.clock,
            default_product=DEFAULT_PRODUCT,
        )

    async def started(self) -> None:
        await until(lambda: self.clock.sleepers == 1, "the watcher's first round")

    async def round(self) -> None:
        """One more poll, and wait until the watcher is done with it."""
        await self.clock.advance(POLL_S)
        await until(lambda: self.clock.sleepers == 1, "the watcher's round")

    def drop(self, name: str, text: str) -> Path:
        self.folder.mkdir(exist_ok=True)
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock(now=utc(2026, 10, 27, 6, 0))
    store = await QualityStore.open(tmp_path / "quality.db", clock=clock)
    try:
        yield Rig(tmp_path, store, clock)
    finally:
        await store.close()


def reads(logs: io.StringIO) -> list[dict[str, Any]]:
    return [
        {k: e[k] for k in ("file", "rows", "new", "duplicates", "corrections", "problems")}
        for e in events(logs)
        if e["event"] == "lab_csv_read"
    ]


def refused(logs: io.StringIO) -> list[tuple[str, int, str]]:
    return [
        (e["file"], e["line"], e["reason"])
        for e in events(logs)
        if e["event"] == "lab_csv_row_refused"
    ]


FIRST = (  # dropped on 25 Oct, the night the clocks went back (03:00 CEST -> 02:00 CET)
    f"{HEADER};operator\n"  # 1
    f"S-1001;25.10.2026 01:30;1;{PRODUCT};blaine;3850;cm2/g;25.10.2026 04:10;ab\n"  # 2
    f"S-1002;25.10.2026 02:30;1;{PRODUCT};blaine;3870;cm2/g;25.10.2026 04:12;ab\n"  # 3
    f"S-1002;2026-10-25T02:30+01:00;1;{PRODUCT};blaine;3870;cm2/g;25.10.2026 04:12;ab\n"  # 4
    "S-1003;25.10.2026 03:30;1;;residue45;2,1;%;25.10.2026 04:15;ab\n"  # 5
    f"S-1004;25.10.2026 04:00;4;{PRODUCT};s2;n/a;MPa;27.10.2026 06:00;ab\n"  # 6
    f"S-1005;25.10.2026 04:00;4;{PRODUCT};s2;28,4;MPa\n"  # 7
    f"S-1006;25.10.2026 04:00;4;{PRODUCT};s2;28,9;MPa;27.10.2026 06:05;ab\n"  # 8
    f"S-1006;25.10.2026 04:00;4;{PRODUCT};s2;29,3;MPa;27.10.2026 06:30;ab\n"  # 9
    f"S-0999;29.03.2026 02:30;1;{PRODUCT};blaine;3800;cm2/g;29.03.2026 05:00;ab\n"  # 10
)
SECOND = (  # two days later: other column order, three re-delivered, one corrected, one new
    "test;value;unit;sample_id;sample_time;window_h;product;entry_time\n"  # 1
    f"blaine;3850;cm2/g;S-1001;25.10.2026 01:30;1;{PRODUCT};25.10.2026 04:10\n"  # 2
    "residue45;2,1;%;S-1003;25.10.2026 03:30;1;;25.10.2026 04:15\n"  # 3
    f"s2;29,3;MPa;S-1006;25.10.2026 04:00;4;{PRODUCT};27.10.2026 06:30\n"  # 4
    f"blaine;3890;cm2/g;S-1002;2026-10-25T02:30+01:00;1;{PRODUCT};27.10.2026 05:00\n"  # 5
    f"s2;28,1;MPa;S-1005;25.10.2026 04:00;4;{PRODUCT};27.10.2026 06:40\n"  # 6
)


async def test_csv_drop_is_ingested_exactly_as_documented(rig: Rig, logs: io.StringIO) -> None:
    first = rig.drop("lims_20261025.csv", FIRST)
    async with running(rig.watcher().run):
        await rig.started()  # first sight of the file: not read yet
        assert reads(logs) == []
        await rig.round()  # unchanged since the last poll: read
        assert reads(logs) == [
            {"file": "lims_20261025.csv", "rows": 9, "new": 4, "duplicates": 0,
             "corrections": 1, "problems": 4},
        ]  # fmt: skip
        assert refused(logs) == [
            ("lims_20261025.csv", 3,
             "sample_time '25.10.2026 02:30': 02:30 happens twice on 2026-10-25 in "
             "Europe/Berlin (clocks went back); set [quality.csv] ambiguous = \"earlier\" "
             "(UTC+02:00) or \"later\" (UTC+01:00), or give the time with its UTC offset"),
            ("lims_20261025.csv", 6,
             "value: expected a number such as 41,5 (decimal ',', no thousands separator), "
             "found 'n/a'"),
            ("lims_20261025.csv", 7,
             "missing field(s) 'entry_time': expected 9 fields separated by ';' as in the "
             "header, found 7"),
            ("lims_20261025.csv", 10,
             "sample_time '29.03.2026 02:30': 02:30 does not exist on 2026-03-29 in "
             "Europe/Berlin (clocks went forward); give the time with its UTC offset or "
             "correct it"),
        ]  # fmt: skip

        rig.drop("lims_20261027.csv", SECOND)
        await rig.round()
        await rig.round()
        await rig.round()  # a third round: nothing is read twice
    assert reads(logs)[1:] == [
        {"file": "lims_20261027.csv", "rows": 5, "new": 1, "duplicates": 3,
         "corrections": 1, "problems": 0},
    ]  # fmt: skip
    assert len(refused(logs)) == 4

    stored = {
        (r.sample_id, r.test): (r.sample_time, r.window_s, r.product, r.value, r.unit,
                                r.entry_time, r.source, r.revision)
        for key in [("S-1001", "blaine"), ("S-1002", "blaine"), ("S-1003", "residue45"),
                    ("S-1005", "s2"), ("S-1006", "s2")]
        if (r := await rig.store.result(*key)) is not None
    }  # fmt: skip
    assert stored == {
        # 01:30 CEST, before the clocks went back
        ("S-1001", "blaine"): (utc(2026, 10, 24, 23, 30), 3600.0, PRODUCT, 3850.0, "cm2/g",
                               utc(2026, 10, 25, 3, 10), "csv:lims_20261025.csv:2", 0),
        # the repeated 02:30, given with its offset (+01:00: the second one); corrected later
        ("S-1002", "blaine"): (utc(2026, 10, 25, 1, 30), 3600.0, PRODUCT, 3890.0, "cm2/g",
                               utc(2026, 10, 27, 4, 0), "csv:lims_20261027.csv:5", 1),
        # 03:30 CET, after; no product: the default
        ("S-1003", "residue45"): (utc(2026, 10, 25, 2, 30), 3600.0, DEFAULT_PRODUCT, 2.1, "%",
                                  utc(2026, 10, 25, 3, 15), "csv:lims_20261025.csv:5", 0),
        # refused in the first file (no entry_time), complete in the second: new
        ("S-1005", "s2"): (utc(2026, 10, 25, 3, 0), 14400.0, PRODUCT, 28.1, "MPa",
                           utc(2026, 10, 27, 5, 40), "csv:lims_20261027.csv:6", 0),
        # twice in the first file: the later row (line 9) won
        ("S-1006", "s2"): (utc(2026, 10, 25, 3, 0), 14400.0, PRODUCT, 29.3, "MPa",
                           utc(2026, 10, 27, 5, 30), "csv:lims_20261025.csv:9", 0),
    }  # fmt: skip
    assert await rig.store.result_count() == 5
    assert first.read_text(encoding="utf-8") == FIRST  # the plant's file is left as it was
    assert sorted(p.name for p in rig.folder.iterdir()) == [
        "lims_20261025.csv",
        "lims_20261027.csv",
    ]


ROW = "S-{n};12.01.2026 08:00;4;;s2;{value};MPa;14.01.2026 09:30\n"


async def test_a_file_still_being_written_is_read_once_it_stopped_changing(
    rig: Rig, logs: io.StringIO
) -> None:
    async with running(rig.watcher().run):
        await rig.started()
        path = rig.drop("growing.csv", HEADER + "\n" + ROW.format(n=1, value="30,0"))
        await rig.round()  # first seen
        with path.open("a", encoding="utf-8") as file:
            file.write(ROW.format(n=2, value="31,0"))
        await rig.round()  # changed since: not read
        assert reads(logs) == []
        await rig.round()  # the same as at the last poll: read, whole
    assert [(r["file"], r["rows"], r["new"]) for r in reads(logs)] == [("growing.csv", 2, 2)]


async def test_a_rewritten_file_is_read_again_a_touched_one_is_not(
    rig: Rig, logs: io.StringIO
) -> None:
    path = rig.drop("day.csv", HEADER + "\n" + ROW.format(n=1, value="30,0"))
    async with running(rig.watcher().run):
        await rig.started()
        await rig.round()
        assert len(reads(logs)) == 1
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched only
        await rig.round()
        await rig.round()
        assert len(reads(logs)) == 1
        rig.drop("day.csv", HEADER + "\n" + ROW.format(n=1, value="30,5")
                 + ROW.format(n=2, value="29,0"))  # fmt: skip
        await rig.round()
        await rig.round()
    assert reads(logs)[1] == {"file": "day.csv", "rows": 2, "new": 1, "duplicates": 0,
                              "corrections": 1, "problems": 0}  # fmt: skip
    corrected = await rig.store.result("S-1", "s2")
    assert corrected is not None and (corrected.value, corrected.revision) == (30.5, 1)


async def test_a_restarted_watcher_does_not_read_a_remembered_file_again(
    rig: Rig, logs: io.StringIO
) -> None:
    rig.drop("day.csv", HEADER + "\n" + ROW.format(n=1, value="30,0"))
    async with running(rig.watcher().run):
        await rig.started()
        await rig.round()
    assert len(reads(logs)) == 1
    async with running(rig.watcher().run):  # the agent restarted: same quality.db
        await until(lambda: rig.clock.sleepers == 1, "the new watcher's first round")
        await rig.round()
        await rig.round()
    assert len(reads(logs)) == 1


async def test_a_missing_folder_is_one_warning_and_is_watched_until_it_appears(
    rig: Rig, logs: io.StringIO
) -> None:
    async with running(rig.watcher().run):
        await rig.started()
        await rig.round()
        await rig.round()
        rig.drop("late.csv", HEADER + "\n" + ROW.format(n=1, value="30,0"))
        await rig.round()
        await rig.round()
    unreadable = [e for e in events(logs) if e["event"] == "lab_csv_folder_unreadable"]
    assert [(e["level"], e["folder"]) for e in unreadable] == [("warning", str(rig.folder))]
    assert "FileNotFoundError" in unreadable[0]["error"]
    assert [e["level"] for e in events(logs) if e["event"] == "lab_csv_folder_readable"] == ["info"]
    assert [(r["file"], r["new"]) for r in reads(logs)] == [("late.csv", 1)]


async def test_many_bad_rows_log_the_first_ones_and_a_count(rig: Rig, logs: io.StringIO) -> None:
    bad = "".join(ROW.format(n=n, value="x") for n in range(MAX_ROWS_LOGGED + 5))
    rig.drop("bad.csv", HEADER + "\n" + bad)
    async with running(rig.watcher().run):
        await rig.started()
        await rig.round()
    assert [line for _, line, _ in refused(logs)] == list(range(2, MAX_ROWS_LOGGED + 2))
    more = [e for e in events(logs) if e["event"] == "lab_csv_more_rows_refused"]
    assert [(e["file"], e["count"], e["level"]) for e in more] == [("bad.csv", 5, "warning")]
    assert reads(logs)[0]["problems"] == MAX_ROWS_LOGGED + 5
