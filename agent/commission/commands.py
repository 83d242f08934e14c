"""Commissioning commands: one-shot reads of configured tags, browsing, trusting a server.

Owns: `edge-agent read` (connect each involved source once, read the asked tags, render a
table of value, quality, status name and code, and source timestamp; name every tag that is
not Good, or got no value), `edge-agent browse` and `edge-agent opcua trust` orchestration,
and their plain-text rendering.
Must not: write anything to a device, start the supervisor, or touch the buffer.
Invariants: every expected failure (unreachable endpoint, security mismatch, untrusted
certificate, unknown tag) becomes a `CommissionError` with a message saying what to do;
a failed source does not hide the results of the others; a read is only clean (no problem
line) when every asked tag has a Good value.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from agent.config.loader import LoadedConfig
from agent.config.settings import ModbusSource, OpcUaSource, Tag
from agent.domain.clock import SystemClock
from agent.domain.errors import EdgeAgentError
from agent.domain.samples import Quality, Sample
from drivers.modbus import ModbusDriver
from drivers.opcua import read_once
from drivers.opcua_browse import browse, render_tree
from drivers.opcua_security import trust_certificate
from drivers.opcua_values import status_name

MODBUS_READ_TIMEOUT_S = 10.0


class CommissionError(Exception):
    """An expected failure of a commissioning command; the message is for plant IT."""


async def _read_modbus(source: ModbusSource, tags: Sequence[Tag]) -> list[Sample]:
    """Run the driver until every tag has a sample (one scan), then stop it."""
    got: dict[str, Sample] = {}
    done = asyncio.Event()

    def emit(batch: Sequence[Sample]) -> None:
        for sample in batch:
            got.setdefault(sample.tag, sample)
        if len(got) >= len(tags):
            done.set()

    driver = ModbusDriver(source, tags, clock=SystemClock())
    task = asyncio.create_task(driver.run(emit))
    waiter = asyncio.create_task(done.wait())
    try:
        finished, _ = await asyncio.wait(
            {task, waiter}, timeout=MODBUS_READ_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if task in finished:
            task.result()  # the session ended: raise its error
    finally:
        for pending in (task, waiter):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, EdgeAgentError):
                await pending
    return [got[tag.name] for tag in tags if tag.name in got]


async def read_tags(loaded: LoadedConfig, names: Sequence[str]) -> tuple[list[Sample], list[str]]:
    """Read the named tags (all when empty); return the samples and one error per failed source."""
    s = loaded.settings
    known = {tag.name: tag for tag in s.tags}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CommissionError(
            f"unknown tag(s) {', '.join(unknown)}: the tags of {loaded.path} are {', '.join(known)}"
        )
    wanted = [known[name] for name in names] if names else list(s.tags)
    state_dir = s.agent.state_dir
    samples: list[Sample] = []
    errors: list[str] = []
    for source in s.sources:
        tags = [tag for tag in wanted if tag.source == source.name]
        if not tags:
            continue
        try:
            if isinstance(source, OpcUaSource):
                password = loaded.secrets.get(f"sources.{source.name}.password")
                got = await read_once(
                    source, tags, state_dir=state_dir, agent_id=s.agent.id, password=password,
                    config_file=loaded.path,  # the trust hint names it
                )  # fmt: skip
            else:
                got = await _read_modbus(source, tags)
        except EdgeAgentError as exc:
            errors.append(f"source '{source.name}': {exc}")
            continue
        samples += got
        answered = {sample.tag for sample in got}
        if missing := [tag.name for tag in tags if tag.name not in answered]:
            within = (
                f" within {MODBUS_READ_TIMEOUT_S:g} s" if isinstance(source, ModbusSource) else ""
            )
            errors.append(f"source '{source.name}': no value for {', '.join(missing)}{within}")
    order = {tag.name: i for i, tag in enumerate(wanted)}
    return sorted(samples, key=lambda sample: order[sample.tag]), errors


def not_good(samples: Sequence[Sample]) -> str | None:
    """One line naming every sample that is not Good and its status (None when all are)."""
    bad = [s for s in samples if s.quality is not Quality.GOOD]
    if not bad:
        return None
    named = ", ".join(f"{s.tag} {status_name(s.status)}" for s in bad)
    return f"{len(bad)} of {len(samples)} tags not Good: {named}"


def render_samples(samples: Sequence[Sample], units: dict[str, str]) -> str:
    """A plain table: tag, value, unit, quality, status name and code, source time (UTC)."""
    rows = [("tag", "value", "unit", "quality", "status", "code", "source timestamp (UTC)")]
    for sample in samples:
        stamp = (
            dt.datetime.fromtimestamp(sample.source_time, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        value = (
            "-"
            if sample.value is None
            else (f"{sample.value:.6g}" if isinstance(sample.value, float) else str(sample.value))
        )
        rows.append(
            (
                sample.tag,
                value,
                units.get(sample.tag, ""),
                sample.quality.name,
                status_name(sample.status),
                f"0x{sample.status:08X}",
                stamp,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def read_password(file: Path | None) -> SecretStr | None:
    """The password for `browse --password-file`, never echoed."""
    if file is None:
        return None
    try:
        return SecretStr(file.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise CommissionError(f"{file}: {exc.strerror}") from None


async def browse_text(
    url: str,
    *,
    depth: int,
    security: str,
    state_dir: Path,
    username: str | None,
    password: SecretStr | None,
) -> str:
    """The address space under Objects as an indented tree."""
    try:
        rows = await browse(
            url,
            depth=depth,
            security=security,
            state_dir=state_dir,
            username=username,
            password=password,
        )
    except (EdgeAgentError, ValueError) as exc:
        raise CommissionError(str(exc)) from None
    return render_tree(rows)


def trust(file: Path, loaded: LoadedConfig, source_name: str | None) -> Path:
    """Move a rejected server certificate into the trust directory of the OPC UA source(s)."""
    sources = [
        src
        for src in loaded.settings.sources
        if isinstance(src, OpcUaSource) and source_name in (None, src.name)
    ]
    if not sources:
        raise CommissionError(
            f"no OPC UA source {source_name or ''} in {loaded.path}".replace("  ", " ")
        )
    dirs = {src.trusted_dir for src in sources}
    if len(dirs) > 1:
        raise CommissionError(
            "the OPC UA sources use different trusted_dir settings: name one with --source NAME"
        )
    try:
        return trust_certificate(file, loaded.settings.agent.state_dir, trusted_dir=dirs.pop())
    except EdgeAgentError as exc:
        raise CommissionError(str(exc)) from None
