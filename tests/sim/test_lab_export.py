"""The simulated LIMS's CSV export folder: exact text (semicolon, decimal comma, local time
across both DST changes of Europe/Berlin), one atomic file per period, and the `simulate
--lab-csv` command that writes it while serving the plant."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

import pytest

from agent.config.quality_settings import LabCsv
from agent.demo.lab_export import LabCsvExport
from agent.demo.mill import Mill
from agent.quality.csv_lab import parse_lab_csv

SPRING = 1_774_656_000.0  # 2026-03-28 00:00 UTC; Berlin springs forward 2026-03-29 01:00 UTC
AUTUMN = 1_792_872_000.0  # 2026-10-24 20:00 UTC; Berlin falls back 2026-10-25 01:00 UTC
HEADER = "sample_id;sample_time;window_h;product;test;value;unit;entry_time\n"
P = "CEM II/A-LL 42.5 R"
AGENT = [sys.executable, "-m", "agent"]
WAIT_S = 240.0

COMMA = str.maketrans(",", ".")  # the export's decimal comma


def exported(tmp_path: Path, start: float, hours: float) -> LabCsvExport:
    mill = Mill(noise=False, dt=60.0, start_time=start, wd_timeout_s=1e9)
    export = LabCsvExport(tmp_path, start_time=start)  # Europe/Berlin by default
    while mill.time < start + hours * 3600.0 - 1e-6:
        mill.step(7)  # the exporter catches up with however far the mill went
        export.export(mill.time, mill.lab_results)
    return export


def test_spring_forward_night_in_local_time(tmp_path: Path) -> None:
    export = exported(tmp_path, SPRING, 28.5)
    names = [p.name for p in export.written]
    assert names == [f"lims_20260328_{h:02d}00.csv" for h in (4, 8, 12, 16, 20)] + [
        "lims_20260329_0000.csv", "lims_20260329_0400.csv",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left
    text = (tmp_path / "lims_20260329_0400.csv").read_bytes().decode("utf-8")
    assert text == HEADER + "".join(
        f"{row}\n"
        for row in (
            f"C-20260329T0000Z;29.03.2026 01:00;2;{P};c3s;60,000;%;29.03.2026 01:30",
            f"B-20260329T0000Z;29.03.2026 01:00;1;{P};blaine;3800,000;cm2/g;29.03.2026 01:45",
            f"B-20260329T0000Z;29.03.2026 01:00;1;{P};residue45;4,000;%;29.03.2026 01:45",
            f"B-20260329T0100Z;29.03.2026 03:00;1;{P};blaine;3800,000;cm2/g;29.03.2026 03:45",
            f"B-20260329T0100Z;29.03.2026 03:00;1;{P};residue45;4,000;%;29.03.2026 03:45",
            f"C-20260329T0200Z;29.03.2026 04:00;2;{P};c3s;60,000;%;29.03.2026 04:30",
            f"B-20260329T0200Z;29.03.2026 04:00;1;{P};blaine;3800,000;cm2/g;29.03.2026 04:45",
            f"B-20260329T0200Z;29.03.2026 04:00;1;{P};residue45;4,000;%;29.03.2026 04:45",
            f"B-20260329T0300Z;29.03.2026 05:00;1;{P};blaine;3800,000;cm2/g;29.03.2026 05:45",
            f"B-20260329T0300Z;29.03.2026 05:00;1;{P};residue45;4,000;%;29.03.2026 05:45",
        )
    )
    export.export(SPRING + 30 * 3600.0, lambda since: [])  # nothing new is due: no rewrite
    assert len(export.written) == 7


def test_a_file_that_cannot_be_placed_is_never_seen_half_and_is_retried(tmp_path: Path) -> None:
    mill = Mill(noise=False, dt=60.0, wd_timeout_s=1e9)  # 2026-01-01 00:00 UTC
    export = LabCsvExport(tmp_path, start_time=mill.time, timezone="UTC")
    mill.step(round(4 * 3600 / 60.0))
    (tmp_path / "lims_20260101_0400.csv").mkdir()  # the name is taken: the rename fails
    with pytest.raises(OSError):
        export.export(mill.time, mill.lab_results)
    assert [p.name for p in tmp_path.glob("*.csv")] == ["lims_20260101_0400.csv"]  # the dir
    assert export.written == []
    (tmp_path / "lims_20260101_0400.csv").rmdir()
    (written,) = export.export(mill.time, mill.lab_results)  # the same period, again
    assert written.name == "lims_20260101_0400.csv"
    rows = written.read_text(encoding="utf-8").splitlines()
    assert rows[0] + "\n" == HEADER and len(rows) == 1 + 2 * 3 + 1  # B 01-03 h, C 02 h
    assert rows[1] == f"B-20260101T0100Z;01.01.2026 01:00;1;{P};blaine;3800,000;cm2/g;" \
        "01.01.2026 01:45"  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [written.name]


def test_fall_back_night_repeats_the_local_hour_like_a_real_lims(tmp_path: Path) -> None:
    exported(tmp_path, AUTUMN, 8.0)
    rows = (tmp_path / "lims_20261025_0400.csv").read_text(encoding="utf-8").splitlines()
    blaine = [r for r in rows if ";blaine;" in r]
    assert blaine[:2] == [
        f"B-20261025T0000Z;25.10.2026 02:00;1;{P};blaine;3800,000;cm2/g;25.10.2026 02:45",
        f"B-20261025T0100Z;25.10.2026 02:00;1;{P};blaine;3800,000;cm2/g;25.10.2026 02:45",
    ]  # 00:00 UTC is 02:00 CEST, 01:00 UTC is 02:00 CET: the sample id tells them apart


def parse(path: Path) -> list[tuple[str, str, float, str, float, str]]:
    """An independent reader: (sample_id, test, sample_time UTC, product, value, unit)."""
    zone = zoneinfo.ZoneInfo("Europe/Berlin")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] + "\n" == HEADER
    out = []
    for line in lines[1:]:
        sid, stime, window, product, test, value, unit, _entry = line.split(";")
        local = dt.datetime.strptime(stime, "%d.%m.%Y %H:%M").replace(tzinfo=zone)
        assert "." not in value and "," in value
        float(window.translate(COMMA))
        out.append((sid, test, local.timestamp(), product, float(value.translate(COMMA)), unit))
    return out


def test_every_result_is_exported_once_with_its_value(tmp_path: Path) -> None:
    # A noisy lab, 2 days, strengths entered 24x faster: every test appears.
    mill = Mill(9, dt=60.0, lab_time_scale=24.0, start_time=SPRING, wd_timeout_s=1e9)
    export = LabCsvExport(tmp_path, start_time=SPRING, period_s=6 * 3600.0)
    mill.step(round(2 * 86400 / 60.0))
    files = export.export(mill.time, mill.lab_results)
    assert len(files) == 8 and files[-1].name == "lims_20260330_0000.csv"
    got = [row for path in files for row in parse(path)]
    want = [
        (r.sample_id, r.test, r.sample_time, r.product, r.value, r.unit)
        for r in mill.lab_results()
        if r.entry_time <= SPRING + 2 * 86400.0
    ]
    assert {test for _, test, *_ in got} == {"blaine", "residue45", "c3s", "s2", "s7", "s28"}
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:4] == w[:4] and g[5] == w[5]
        assert g[4] == pytest.approx(w[4], abs=5e-4)  # three decimals
    assert len({(sid, test) for sid, test, *_ in got}) == len(got)


def test_the_agents_lims_reader_takes_every_row(tmp_path: Path) -> None:
    # The contract with agent.quality.csv_lab (its own implementation of the same format).
    mill = Mill(11, dt=60.0, lab_time_scale=24.0, start_time=SPRING, wd_timeout_s=1e9)
    export = LabCsvExport(tmp_path, start_time=SPRING)
    mill.step(round(2 * 86400 / 60.0))
    settings = LabCsv(folder=tmp_path, timezone="Europe/Berlin")
    got = []
    for path in export.export(mill.time, mill.lab_results):
        parsed = parse_lab_csv(path.read_text(encoding="utf-8"), settings, name=path.name,
                               default_product="none")  # fmt: skip
        assert parsed.problems == [] and parsed.superseded == []
        got += parsed.results
    want = [r for r in mill.lab_results() if r.entry_time <= SPRING + 2 * 86400.0]
    assert len(got) == len(want) > 100
    for g, w in zip(got, want, strict=True):
        assert (g.sample_id, g.test, g.product, g.unit) == (w.sample_id, w.test, w.product, w.unit)
        assert (g.sample_time, g.window_s) == (w.sample_time, w.window_s)
        assert g.value == pytest.approx(w.value, abs=5e-4)
        assert 0.0 <= w.entry_time - g.entry_time < 60.0  # written to the minute


async def test_simulate_writes_the_export_folder_while_serving(tmp_path: Path) -> None:
    folder = tmp_path / "lims"
    proc = await asyncio.create_subprocess_exec(
        *AGENT, "simulate", "--opcua-port", "0", "--modbus-port", "0", "--time-scale", "1000",
        "--lab-csv", str(folder), "--lab-csv-timezone", "UTC",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        first = folder / "lims_20260101_0400.csv"  # plant time starts 2026-01-01 00:00 UTC
        deadline = time.monotonic() + WAIT_S
        while not first.exists():
            assert proc.returncode is None, "simulate ended"
            assert time.monotonic() < deadline, "no export file"
            await asyncio.sleep(0.2)
        rows = first.read_text(encoding="utf-8").splitlines()
        assert rows[0] + "\n" == HEADER
        assert rows[1].startswith("B-20260101T0100Z;01.01.2026 01:00;1;CEM II/A-LL 42.5 R;blaine;")
        assert rows[1].endswith(";cm2/g;01.01.2026 01:45")
        for path in folder.glob("*.csv"):  # any file seen under its name is complete
            text = path.read_text(encoding="utf-8")
            assert text.startswith(HEADER) and text.endswith("\n"), path
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


def test_simulate_refuses_a_bad_time_zone_or_folder(tmp_path: Path) -> None:
    bad_zone = subprocess.run(
        [*AGENT, "simulate", "--lab-csv", str(tmp_path), "--lab-csv-timezone", "Mars/Base"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad_zone.returncode == 2
    assert "--lab-csv-timezone: an IANA time zone such as Europe/Berlin or UTC, found " \
        "'Mars/Base'" in bad_zone.stderr  # fmt: skip
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad_dir = subprocess.run(
        [*AGENT, "simulate", "--lab-csv", str(blocker / "lims")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad_dir.returncode == 78, bad_dir.stderr
    assert f"--lab-csv {blocker / 'lims'}: expected a folder it can write" in bad_dir.stderr
    assert "Traceback" not in bad_dir.stderr + bad_zone.stderr
