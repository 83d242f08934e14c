"""The watched folder of LIMS CSV exports: every new or rewritten file read once, its results
ingested, its refused rows reported (`[quality.csv]`; docs/operations.md "Connecting the
LIMS").

Owns: `CsvFolder.run` (every `poll_interval_s` on the injected Clock: list `folder/pattern`,
sorted by name; read each file that is new or changed and has stopped changing; parse it with
agent.quality.csv_lab off the event loop; ingest; remember it), the rule that tells a finished
file from one still being written, and the logs: one INFO "lab_csv_read" per file read, one
WARNING "lab_csv_row_refused" per refused row (the first `MAX_ROWS_LOGGED` of a file, then one
"lab_csv_more_rows_refused" with the count).
Must not: move, rename, delete or write the plant's files; decide what a result does to the
store (the injected `ingest` does), crash on a missing folder, an unreadable file or bad rows.

Invariants:
- A file is read only when its size and mtime were the same at two consecutive polls (so
  one being written is left until it stops changing), and again whenever its content changes:
  a file is known by name + sha256 (the store's `seen_file`), so a file rewritten with new
  content is read again whole (its unchanged rows come back as duplicates, changed values as
  corrections), and one only touched (same bytes) is not.
- `remember_file` is called only after `ingest` returned: a crash in between reads the file
  again at the next start, and the store recognises its results as duplicates (stored once;
  one left pending is joined and forwarded then: agent.quality.truth).
- Counts of a file: rows = new + duplicates + corrections + problems, where a row replaced by
  a later row of the same file counts as a correction (another value) or a duplicate (the same
  value), and the later row as what the store made of it. A file refused whole (its header, its
  encoding, its size) is one problem at line 1 and no rows.
- A missing or unreadable folder is one WARNING until it is readable again (INFO); a store
  failure (RetryableError) is WARNING once, DEBUG while it lasts, INFO on recovery, and the file
  is tried again at the next poll. Cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
import codecs
import fnmatch
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.config.quality_settings import LabCsv
from agent.domain.clock import Clock
from agent.domain.errors import ConfigError, ConfigProblem, RetryableError
from agent.domain.logger import get_logger
from agent.quality.csv_lab import ParsedCsv, Problem, decode, parse_lab_csv
from agent.quality.results import Ingested, LabResult

__all__ = ["MAX_FILE_BYTES", "MAX_ROWS_LOGGED", "CsvFileStore", "CsvFolder", "CsvRead", "Ingest"]

MAX_ROWS_LOGGED = 20
MAX_FILE_BYTES = 32 * 1024 * 1024
Ingest = Callable[[Sequence[LabResult]], Awaitable[list[Ingested]]]
_Stat = tuple[int, int]  # size, mtime_ns
_log = get_logger(__name__)


class CsvFileStore(Protocol):
    """What the folder needs of the store (agent.quality.store.QualityStore has it)."""

    async def seen_file(self, name: str, size: int, mtime_ns: int, sha256: str) -> bool:
        """Whether a file of this name and sha256 has been read and remembered."""
        ...

    async def remember_file(  # noqa: PLR0917 (the store's signature, issue 14)
        self, name: str, size: int, mtime_ns: int, sha256: str, rows: int, problems: int
    ) -> None:
        """Note the file as read (after its results were ingested)."""
        ...


@dataclass(frozen=True)
class CsvRead:
    """What reading one file did."""

    file: str
    rows: int
    new: int
    duplicates: int
    corrections: int
    problems: list[Problem] = field(default_factory=list)


class CsvFolder:
    """See the module docstring; `run()` is the long-running task, `poll()` one round."""

    def __init__(
        self,
        settings: LabCsv,
        *,
        store: CsvFileStore,
        ingest: Ingest,
        clock: Clock,
        default_product: str,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        try:
            codecs.lookup(settings.encoding)
        except LookupError:
            found = repr(settings.encoding)
            problem = ConfigProblem("quality.csv", "encoding", "a text encoding", found)
            raise ConfigError([problem]) from None
        self._settings, self._store, self._ingest, self._clock = settings, store, ingest, clock
        self._default_product, self._max_bytes = default_product, max_file_bytes
        self._last: dict[str, _Stat] = {}  # every matching file at the previous poll
        self._done: dict[str, _Stat] = {}  # files read or seen, as they were then
        self._folder_failing = False
        self._store_failures = 0
        self._unreadable: set[str] = set()

    async def run(self) -> None:
        """Poll forever; returns only by cancellation."""
        while True:
            await self.poll()
            await self._clock.sleep(self._settings.poll_interval_s)

    async def poll(self) -> list[CsvRead]:
        """One round: the files read in it."""
        try:
            listing = await asyncio.to_thread(self._list)
        except OSError as exc:
            if not self._folder_failing:
                _log.warning(
                    "lab_csv_folder_unreadable",
                    folder=str(self._settings.folder),
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                )
            self._folder_failing = True
            return []
        if self._folder_failing:
            _log.info("lab_csv_folder_readable", folder=str(self._settings.folder))
            self._folder_failing = False
        reads: list[CsvRead] = []
        try:
            for name, stat in listing:
                if self._done.get(name) != stat and self._last.get(name) == stat:
                    read = await self._handle(name, stat)
                    if read is not None:
                        reads.append(read)
        except RetryableError as exc:
            self._store_failures += 1
            log = _log.warning if self._store_failures == 1 else _log.debug
            log("lab_csv_store_failed", error=str(exc), attempt=self._store_failures)
        else:
            if self._store_failures:
                _log.info("lab_csv_store_recovered", after_failures=self._store_failures)
                self._store_failures = 0
        present = dict(listing)
        self._last = present
        self._done = {name: stat for name, stat in self._done.items() if name in present}
        self._unreadable &= present.keys()
        return reads

    # -- one file ----------------------------------------------------------------------------

    async def _handle(self, name: str, stat: _Stat) -> CsvRead | None:
        try:
            data = await asyncio.to_thread(self._read, name, stat)
        except FileNotFoundError:
            return None  # gone since the listing
        except OSError as exc:
            if name not in self._unreadable:
                self._unreadable.add(name)
                error = f"{type(exc).__name__}: {exc.strerror or exc}"
                _log.warning("lab_csv_file_unreadable", file=name, error=error)
            return None
        if data is None:
            return None  # changed while being read: next poll
        self._unreadable.discard(name)
        size, mtime_ns = stat
        sha = hashlib.sha256(data).hexdigest()
        if await self._store.seen_file(name, size, mtime_ns, sha):
            self._done[name] = stat
            return None
        parsed = await asyncio.to_thread(self._parse, name, data)
        outcomes = await self._ingest(parsed.results) if parsed.results else []
        read = _counted(name, parsed, outcomes)
        problems = len(read.problems)
        await self._store.remember_file(name, size, mtime_ns, sha, parsed.rows, problems)
        self._done[name] = stat
        self._report(read)
        return read

    def _list(self) -> list[tuple[str, _Stat]]:
        """(name, (size, mtime_ns)) of the matching regular files, sorted by name."""
        found: list[tuple[str, _Stat]] = []
        with os.scandir(self._settings.folder) as entries:
            for entry in entries:
                if not fnmatch.fnmatchcase(entry.name, self._settings.pattern):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                found.append((entry.name, (st.st_size, st.st_mtime_ns)))
        return sorted(found)

    def _read(self, name: str, stat: _Stat) -> bytes | None:
        """The file's bytes, or None when it is no longer as listed (still being written)."""
        with open(self._settings.folder / name, "rb") as file:
            before = os.fstat(file.fileno())
            if (before.st_size, before.st_mtime_ns) != stat:
                return None
            data = file.read(self._max_bytes + 1)
            after = os.fstat(file.fileno())
        if (after.st_size, after.st_mtime_ns) != stat:
            return None
        return data

    def _parse(self, name: str, data: bytes) -> ParsedCsv:
        if len(data) > self._max_bytes:
            reason = f"the file is larger than {self._max_bytes} bytes, the most that is read"
            return ParsedCsv(problems=[Problem(name, 1, reason)])
        text = decode(data, self._settings, name)
        if isinstance(text, Problem):
            return ParsedCsv(problems=[text])
        return parse_lab_csv(text, self._settings, name=name, default_product=self._default_product)

    def _report(self, read: CsvRead) -> None:
        _log.info(
            "lab_csv_read",
            file=read.file,
            rows=read.rows,
            new=read.new,
            duplicates=read.duplicates,
            corrections=read.corrections,
            problems=len(read.problems),
        )
        for problem in read.problems[:MAX_ROWS_LOGGED]:
            _log.warning(
                "lab_csv_row_refused", file=problem.file, line=problem.line, reason=problem.reason
            )
        if len(read.problems) > MAX_ROWS_LOGGED:
            more = len(read.problems) - MAX_ROWS_LOGGED
            _log.warning("lab_csv_more_rows_refused", file=read.file, count=more)


def _counted(name: str, parsed: ParsedCsv, outcomes: Sequence[Ingested]) -> CsvRead:
    repeats = sum(s.same_value for s in parsed.superseded)
    return CsvRead(
        file=name,
        rows=parsed.rows,
        new=sum(o is Ingested.NEW for o in outcomes),
        duplicates=sum(o is Ingested.DUPLICATE for o in outcomes) + repeats,
        corrections=sum(o is Ingested.CORRECTION for o in outcomes)
        + len(parsed.superseded)
        - repeats,
        problems=list(parsed.problems),
    )
