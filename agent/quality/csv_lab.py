"""A LIMS CSV export read into lab results: one file's text in, results and refused rows out
(plant-model 4.2; docs/operations.md "Connecting the LIMS", `[quality.csv]`).

Owns: the column format (a header row naming exactly the columns of `COLUMNS`, in any order,
other columns ignored), numbers with the configured decimal mark, local times in the configured
time format and IANA time zone (or ISO 8601 with an explicit UTC offset, accepted whatever the
format), the daylight-saving rules, the text of every refusal, and the rule for a sample id and
test repeated inside one file.
Must not: do I/O, read a clock, log or raise for bad input (a bad row is a `Problem`; the
caller, agent.quality.csv_folder, reads the file and reports).

Invariants:
- Every data row ends up exactly once: as a result, as a `Problem` (file, 1-based line of the
  row's start, the header is line 1; a reason naming the column, what was expected and what
  was found), or as `superseded` by a later row of the same file. Blank rows (nothing but
  delimiters and spaces) are skipped and not counted.
- A local time that does not exist (the hour skipped when clocks go forward) is refused; one
  that happens twice (the hour repeated when clocks go back) follows `ambiguous`: "reject"
  refuses it and says how to choose, "earlier" takes the first (summer-time) reading (fold=0),
  "later" the second (fold=1). An explicit offset ("2026-10-25T02:30+01:00") is never
  ambiguous.
- The same (sample_id, test) twice in one file: the later row wins and the earlier is
  `superseded` (a correction made in the file itself; with the same value it is a repeat). The
  winner is returned at its own line, as source "csv:<file>:<line>".
- Numbers are finite; with decimal "," a "." in a number is refused (and with "." a ","), so a
  thousands separator is never read as a decimal mark.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.config.quality_settings import LabCsv
from agent.quality.results import LabResult, same_value

__all__ = ["COLUMNS", "ParsedCsv", "Problem", "Superseded", "decode", "parse_lab_csv"]

COLUMNS = (
    "sample_id",
    "sample_time",
    "window_h",
    "product",
    "test",
    "value",
    "unit",
    "entry_time",
)
_TEST = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_NOT_FINITE = re.compile(r"^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """A row (or the file) refused: where, and why."""

    file: str
    line: int
    reason: str


@dataclass(frozen=True)
class Superseded:
    """A row replaced by a later row of the same file with the same sample id and test."""

    line: int
    by_line: int
    same_value: bool


@dataclass
class ParsedCsv:
    """One file read: the results to ingest (in line order), the refused rows, the rows a later
    row replaced, and `rows`: the data rows the file held (blank rows not counted)."""

    results: list[LabResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    superseded: list[Superseded] = field(default_factory=list)
    rows: int = 0


class _Refused(Exception):  # noqa: N818 (a row refused, caught in this module)
    pass


def decode(data: bytes, settings: LabCsv, name: str) -> str | Problem:
    """The file's bytes as text in `settings.encoding`, or the Problem that names the line."""
    try:
        return data.decode(settings.encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        return Problem(
            name,
            line,
            f"the file is not {settings.encoding} text (byte 0x{byte}, line {line}); "
            "set [quality.csv] encoding to the LIMS export's (for example 'cp1252')",
        )


def parse_lab_csv(text: str, settings: LabCsv, *, name: str, default_product: str) -> ParsedCsv:
    """Read one file's text (see the module docstring for the rules)."""
    out = ParsedCsv()
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=settings.delimiter)
    zone = ZoneInfo(settings.timezone)
    header: _Header | None = None
    kept: dict[tuple[str, str], int] = {}  # identity -> index in out.results
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.rows += header is not None
            out.problems.append(Problem(name, start, f"not readable as CSV: {exc}"))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if header is None:
            header = _header(row, settings, name, out)
            if header is None:
                return out
            continue
        if not any(cell.strip() for cell in row):
            continue
        out.rows += 1
        try:
            result = _row(
                row,
                header,
                settings,
                zone,
                source=f"csv:{name}:{line}",
                default_product=default_product,
            )
        except _Refused as exc:
            out.problems.append(Problem(name, line, str(exc)))
            continue
        identity = (result.sample_id, result.test)
        if identity in kept:
            earlier = out.results[kept[identity]]
            repeat = same_value(earlier.value, result.value)
            out.superseded.append(Superseded(_line_of(earlier), line, repeat))
            out.results[kept[identity]] = result
        else:
            kept[identity] = len(out.results)
            out.results.append(result)
    if header is None:
        expected = settings.delimiter.join(COLUMNS)
        out.problems.append(
            Problem(name, 1, f"the file is empty; expected a header row such as {expected}")
        )
    out.results.sort(key=_line_of)
    return out


def _line_of(result: LabResult) -> int:
    return int(result.source.rsplit(":", 1)[1])


@dataclass(frozen=True)
class _Header:
    index: dict[str, int]  # column -> field position
    width: int  # fields in the header row


def _header(row: list[str], settings: LabCsv, name: str, out: ParsedCsv) -> _Header | None:
    names = [cell.strip().lstrip("\ufeff") for cell in row]
    missing = [column for column in COLUMNS if column not in names]
    twice = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    if not missing and not twice:
        return _Header({column: names.index(column) for column in COLUMNS}, len(names))
    expected = settings.delimiter.join(COLUMNS)
    what = f"missing column(s) {_listed(missing)}" if missing else f"twice: {_listed(twice)}"
    found = settings.delimiter.join(names)
    out.problems.append(
        Problem(
            name,
            1,
            f"header: {what}; expected the columns {expected} (any order, separated by "
            f"{settings.delimiter!r}), found {found!r}",
        )
    )
    return None


def _listed(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _row(
    row: list[str],
    header: _Header,
    settings: LabCsv,
    zone: ZoneInfo,
    *,
    source: str,
    default_product: str,
) -> LabResult:
    sep = settings.delimiter
    absent = [column for column, i in header.index.items() if i >= len(row)]
    if absent:
        raise _Refused(
            f"missing field(s) {_listed(absent)}: expected {header.width} fields separated by "
            f"{sep!r} as in the header, found {len(row)}"
        )
    if any(cell.strip() for cell in row[header.width :]):
        raise _Refused(
            f"expected {header.width} fields separated by {sep!r} as in the header, found "
            f"{len(row)} (a value that holds {sep!r} must be in double quotes)"
        )
    cell = {column: row[index].strip() for column, index in header.index.items()}
    sample_id = cell["sample_id"]
    if not sample_id:
        raise _Refused("sample_id: expected the sample's id, found an empty field")
    test = cell["test"]
    if not _TEST.match(test):
        raise _Refused(
            "test: expected a test name such as s2, s28, blaine (a letter, then letters, "
            f"digits or _, at most 32), found {test!r}"
        )
    value = _number("value", cell["value"], settings)
    window_s = settings.default_window_s
    if cell["window_h"]:
        hours = _number("window_h", cell["window_h"], settings)
        if hours <= 0:
            raise _Refused(f"window_h: expected hours > 0, found {cell['window_h']!r}")
        window_s = hours * 3600.0
    return LabResult(
        sample_id=sample_id,
        sample_time=_time("sample_time", cell["sample_time"], settings, zone),
        window_s=window_s,
        product=cell["product"] or default_product,
        test=test,
        value=value,
        unit=cell["unit"],
        entry_time=_time("entry_time", cell["entry_time"], settings, zone),
        source=source,
    )


def _number(column: str, text: str, settings: LabCsv) -> float:
    other = "." if settings.decimal == "," else ","
    example = "41" + settings.decimal + "5"
    if _NOT_FINITE.match(text):
        raise _Refused(f"{column}: expected a finite number such as {example}, found {text!r}")
    if not text or other in text or not _NUMBER.match(text.replace(settings.decimal, ".")):
        mark = f"decimal {settings.decimal!r}, no thousands separator"
        raise _Refused(f"{column}: expected a number such as {example} ({mark}), found {text!r}")
    number = float(text.replace(settings.decimal, "."))
    if not math.isfinite(number):
        raise _Refused(f"{column}: expected a finite number such as {example}, found {text!r}")
    return number


def _time(column: str, text: str, settings: LabCsv, zone: ZoneInfo) -> float:
    """Unix seconds of a local time in `settings.time_format`, or of an explicit offset."""
    try:
        explicit = datetime.fromisoformat(text)
    except ValueError:
        explicit = None
    if explicit is not None and explicit.utcoffset() is not None:
        return explicit.timestamp()
    try:
        parsed = datetime.strptime(text, settings.time_format)
    except ValueError:
        raise _Refused(
            f"{column}: expected a time as {settings.time_format!r} (local time, "
            f"{settings.timezone}) or ISO 8601 with a UTC offset such as "
            f"2026-10-25T02:30+01:00, found {text!r}"
        ) from None
    if parsed.utcoffset() is not None:  # the format itself carries %z
        return parsed.timestamp()
    return _local(column, text, parsed, settings, zone)


def _local(column: str, text: str, naive: datetime, settings: LabCsv, zone: ZoneInfo) -> float:
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.timestamp()
    wall = f"{naive:%H:%M}"
    day = f"{naive:%Y-%m-%d}"
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise _Refused(
            f"{column} {text!r}: {wall} does not exist on {day} in {settings.timezone} "
            "(clocks went forward); give the time with its UTC offset or correct it"
        )
    if settings.ambiguous == "earlier":
        return first.timestamp()
    if settings.ambiguous == "later":
        return second.timestamp()
    raise _Refused(
        f"{column} {text!r}: {wall} happens twice on {day} in {settings.timezone} (clocks went "
        f'back); set [quality.csv] ambiguous = "earlier" (UTC{_offset(first)}) or "later" '
        f"(UTC{_offset(second)}), or give the time with its UTC offset"
    )


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
