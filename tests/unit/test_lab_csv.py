"""The LIMS CSV format (agent.quality.csv_lab): columns, numbers, local times and daylight
saving, refused rows with their line and reason, a sample repeated in one file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.config.quality_settings import LabCsv
from agent.quality.csv_lab import Problem, Superseded, decode, parse_lab_csv

HEADER = "sample_id;sample_time;window_h;product;test;value;unit;entry_time"


def settings(**overrides: Any) -> LabCsv:
    return LabCsv(folder="/srv/lims", timezone="Europe/Berlin", **overrides)


def parse(text: str, **overrides: Any) -> Any:
    return parse_lab_csv(text, settings(**overrides), name="lims.csv", default_product="CEM I")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def test_a_row_becomes_a_result_in_utc_with_its_window_and_source() -> None:
    text = f"{HEADER}\nS-1;12.01.2026 08:00;4;CEM II;s2;28,7;MPa;14.01.2026 09:30\n"
    out = parse(text)
    assert out.problems == [] and out.superseded == [] and out.rows == 1
    [result] = out.results
    assert result.sample_id == "S-1"
    assert result.sample_time == utc(2026, 1, 12, 7, 0)  # CET, +01:00
    assert result.window_s == 4 * 3600.0
    assert (result.product, result.test, result.value, result.unit) == ("CEM II", "s2", 28.7, "MPa")
    assert result.entry_time == utc(2026, 1, 14, 8, 30)
    assert result.source == "csv:lims.csv:2"
    assert result.revision == 0


def test_columns_in_any_order_extra_columns_ignored_defaults_for_empty_fields() -> None:
    text = (
        "operator;test;value;unit;entry_time;sample_id;product;window_h;sample_time\n"
        "ab;blaine;3850;cm2/g;01.07.2026 10:00;S-2;;;01.07.2026 09:00\n"
    )
    [result] = parse(text, default_window_s=1800.0).results
    assert (result.test, result.value, result.product) == ("blaine", 3850.0, "CEM I")
    assert result.window_s == 1800.0
    assert result.sample_time == utc(2026, 7, 1, 7, 0)  # CEST, +02:00


def test_comma_delimiter_with_decimal_point_and_crlf_lines() -> None:
    text = (
        "sample_id,sample_time,window_h,product,test,value,unit,entry_time\r\n"
        'S-3,2026-02-01 06:00,0.5,"CEM I 42,5 R",residue45,2.35,%,2026-02-01 07:00\r\n'
    )
    out = parse(text, delimiter=",", decimal=".", time_format="%Y-%m-%d %H:%M")
    assert out.problems == []
    [result] = out.results
    assert (result.value, result.window_s, result.product) == (2.35, 1800.0, "CEM I 42,5 R")
    assert result.sample_time == utc(2026, 2, 1, 5, 0)


def test_the_hour_skipped_in_spring_is_refused_the_minutes_around_it_are_not() -> None:
    text = (
        f"{HEADER}\n"
        "A;29.03.2026 01:59;;;s2;1;MPa;29.03.2026 05:00\n"
        "B;29.03.2026 02:30;;;s2;1;MPa;29.03.2026 05:00\n"
        "C;29.03.2026 03:00;;;s2;1;MPa;29.03.2026 05:00\n"
    )
    out = parse(text)
    assert [r.sample_time for r in out.results] == [utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1)]
    assert out.problems == [
        Problem(
            "lims.csv",
            3,
            "sample_time '29.03.2026 02:30': 02:30 does not exist on 2026-03-29 in "
            "Europe/Berlin (clocks went forward); give the time with its UTC offset or correct it",
        )
    ]


FALL_BACK = f"{HEADER}\nA;25.10.2026 02:30;;;s2;1;MPa;25.10.2026 05:00\n"


def test_the_hour_repeated_in_autumn_is_refused_by_default_saying_how_to_choose() -> None:
    out = parse(FALL_BACK)
    assert out.results == []
    assert out.problems == [
        Problem(
            "lims.csv",
            2,
            "sample_time '25.10.2026 02:30': 02:30 happens twice on 2026-10-25 in Europe/Berlin "
            '(clocks went back); set [quality.csv] ambiguous = "earlier" (UTC+02:00) or '
            '"later" (UTC+01:00), or give the time with its UTC offset',
        )
    ]


@pytest.mark.parametrize(
    ("ambiguous", "expected"),
    [("earlier", utc(2026, 10, 25, 0, 30)), ("later", utc(2026, 10, 25, 1, 30))],
)
def test_the_repeated_hour_is_read_as_configured(ambiguous: str, expected: float) -> None:
    out = parse(FALL_BACK, ambiguous=ambiguous)
    assert out.problems == []
    assert [r.sample_time for r in out.results] == [expected]


def test_an_explicit_offset_is_accepted_whatever_the_format_and_never_ambiguous() -> None:
    text = (
        f"{HEADER}\n"
        "A;2026-10-25T02:30+01:00;;;s2;1;MPa;2026-10-25T05:00Z\n"
        "B;2026-10-25T02:30+02:00;;;s2;1;MPa;25.10.2026 05:00\n"
    )
    out = parse(text)  # ambiguous = "reject", time_format "%d.%m.%Y %H:%M"
    assert out.problems == []
    assert [r.sample_time for r in out.results] == [
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 0, 30),
    ]
    assert out.results[0].entry_time == utc(2026, 10, 25, 5, 0)


def test_bad_rows_are_refused_with_line_column_expected_and_found() -> None:
    text = (
        f"{HEADER}\n"  # 1
        "A;12.01.2026 08:00;;;s2;n/a;MPa;12.01.2026 09:00\n"  # 2
        "B;12.01.2026 08:00;;;s2;NaN;MPa;12.01.2026 09:00\n"  # 3
        "C;12.01.2026 08:00;;;s2;1e400;MPa;12.01.2026 09:00\n"  # 4
        "D;12.01.2026 08:00;;;blaine;3.850;cm2/g;12.01.2026 09:00\n"  # 5
        "E;2026-01-12 08:00;;;s2;1;MPa;12.01.2026 09:00\n"  # 6
        "F;12.01.2026 08:00;;;s2;1\n"  # 7
        ";12.01.2026 08:00;;;s2;1;MPa;12.01.2026 09:00\n"  # 8
        "\n"  # 9: blank, skipped
        ";;;;;;;\n"  # 10: blank, skipped
        "G;12.01.2026 08:00;0;;s2;1;MPa;12.01.2026 09:00\n"  # 11
        "H;12.01.2026 08:00;;;28d strength;1;MPa;12.01.2026 09:00\n"  # 12
        "I;12.01.2026 08:00;;;s2;1;MPa;12.01.2026 09:00;x\n"  # 13
        "J;12.01.2026 08:00;;;s2;30,1;MPa;12.01.2026 09:00\n"  # 14: good
    )
    out = parse(text)
    assert [(p.line, p.reason) for p in out.problems] == [
        (2, "value: expected a number such as 41,5 (decimal ',', no thousands separator), "
            "found 'n/a'"),
        (3, "value: expected a finite number such as 41,5, found 'NaN'"),
        (4, "value: expected a finite number such as 41,5, found '1e400'"),
        (5, "value: expected a number such as 41,5 (decimal ',', no thousands separator), "
            "found '3.850'"),
        (6, "sample_time: expected a time as '%d.%m.%Y %H:%M' (local time, Europe/Berlin) or "
            "ISO 8601 with a UTC offset such as 2026-10-25T02:30+01:00, found '2026-01-12 08:00'"),
        (7, "missing field(s) 'unit', 'entry_time': expected 8 fields separated by ';' as in "
            "the header, found 6"),
        (8, "sample_id: expected the sample's id, found an empty field"),
        (11, "window_h: expected hours > 0, found '0'"),
        (12, "test: expected a test name such as s2, s28, blaine (a letter, then letters, "
             "digits or _, at most 32), found '28d strength'"),
        (13, "expected 8 fields separated by ';' as in the header, found 9 (a value that holds "
             "';' must be in double quotes)"),
    ]  # fmt: skip
    assert {p.file for p in out.problems} == {"lims.csv"}
    assert [(r.sample_id, r.value, r.source) for r in out.results] == [
        ("J", 30.1, "csv:lims.csv:14")
    ]
    assert out.rows == 11


def test_a_quoted_value_over_two_lines_keeps_later_line_numbers_true() -> None:
    text = (
        f"{HEADER}\n"
        'A;12.01.2026 08:00;;"CEM I\nspecial";s2;1;MPa;12.01.2026 09:00\n'  # lines 2-3
        "B;12.01.2026 08:00;;;s2;x;MPa;12.01.2026 09:00\n"  # line 4
    )
    out = parse(text)
    assert out.results[0].product == "CEM I\nspecial"
    assert out.results[0].source == "csv:lims.csv:2"
    assert [p.line for p in out.problems] == [4]


def test_a_bad_header_refuses_the_file_in_one_problem() -> None:
    text = "sample;sample_time;window_h;product;test;value;entry_time\nA;1;2;3;4;5;6\n"
    out = parse(text)
    assert out.results == [] and out.rows == 0
    assert out.problems == [
        Problem(
            "lims.csv",
            1,
            "header: missing column(s) 'sample_id', 'unit'; expected the columns "
            "sample_id;sample_time;window_h;product;test;value;unit;entry_time (any order, "
            "separated by ';'), found 'sample;sample_time;window_h;product;test;value;entry_time'",
        )
    ]
    assert parse("").problems == [
        Problem(
            "lims.csv",
            1,
            "the file is empty; expected a header row such as "
            "sample_id;sample_time;window_h;product;test;value;unit;entry_time",
        )
    ]


def test_the_same_sample_and_test_twice_in_a_file_the_later_row_wins() -> None:
    text = (
        f"{HEADER}\n"
        "A;12.01.2026 08:00;;;s2;30,1;MPa;12.01.2026 09:00\n"  # 2: corrected by 4
        "A;12.01.2026 08:00;;;s28;50,0;MPa;12.01.2026 09:00\n"  # 3: another test
        "A;12.01.2026 08:00;;;s2;30,4;MPa;12.01.2026 10:00\n"  # 4: wins over 2, repeated by 5
        "A;12.01.2026 08:00;;;s2;30,4;MPa;12.01.2026 11:00\n"  # 5: the same again
    )
    out = parse(text)
    assert [(r.test, r.value, r.source) for r in out.results] == [
        ("s28", 50.0, "csv:lims.csv:3"),
        ("s2", 30.4, "csv:lims.csv:5"),
    ]
    assert out.superseded == [Superseded(2, 4, False), Superseded(4, 5, True)]
    assert out.rows == 4


def test_bytes_that_are_not_the_encoding_name_the_line() -> None:
    data = f"{HEADER}\nA;12.01.2026 08:00;;Zement Gr\xfcn;s2;1;MPa;12.01.2026 09:00\n"
    problem = decode(data.encode("latin-1"), settings(), "lims.csv")
    assert problem == Problem(
        "lims.csv",
        2,
        "the file is not utf-8-sig text (byte 0xfc, line 2); set [quality.csv] encoding to the "
        "LIMS export's (for example 'cp1252')",
    )
    text = decode(data.encode("cp1252"), settings(encoding="cp1252"), "lims.csv")
    assert isinstance(text, str)
    assert parse(text).results[0].product == "Zement Gr\xfcn"
