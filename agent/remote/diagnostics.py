"""The four diagnostics remote support may ask for, and the in-memory ring of recent log lines.

Owns: serving an accepted ``Diagnostic`` (``agent.remote.policy`` decided it is allowed):
``log_bundle`` (the last lines of a log file, else of the ``LogRing``, else the journal
command to run), ``connectivity`` (a TCP connect to each source's host and port, with a
timeout), ``config_masked`` (the configuration file and the effective settings, secrets
masked), ``buffer_stats`` (the buffer's ``OutageBudget``); and ``LogRing``, a logging handler
that keeps the last rendered JSON log lines.

Must not: change anything: no write to a device, a setting, a limit or a file; no command is
run. Connect and close is all ``connectivity`` does (no bytes are sent). Must not put a secret
in a result (values are masked by key, and log lines were redacted before rendering).

Invariants: ``serve`` never raises for an expected failure (an unreadable file, a refused
connection): it answers ``("failed", {"error": ...})``; a result's lines fit ``cap_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import tomllib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog

from agent.buffer.buffer import OutageBudget
from agent.config.settings import ModbusSource, OpcUaSource, Settings
from agent.domain.clock import Clock
from agent.domain.redaction import redact
from agent.remote.policy import Diagnostic, cap_lines, mask_secrets

__all__ = ["JOURNAL_HINT", "Diagnostics", "LogRing", "connect_target"]

JOURNAL_HINT = "journalctl -u edge-agent -o cat -n {lines}"
_TAIL_BYTES = 4 * 1024 * 1024
Status = Literal["done", "failed"]


class LogRing(logging.Handler):
    """Keeps the last ``capacity`` log lines as JSON (redacted like the agent's own lines)."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__()
        self._lines: deque[str] = deque(maxlen=capacity)
        chain: list[structlog.typing.Processor] = [
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            redact,
        ]
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=chain,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )

    @classmethod
    def install(cls, capacity: int = 2000) -> LogRing:
        """A ring attached to the root logger (after ``configure_logging``)."""
        ring = cls(capacity)
        logging.getLogger().addHandler(ring)
        return ring

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
        except (TypeError, ValueError, RecursionError):  # a handler never raises (logging)
            self.handleError(record)

    def lines(self, count: int) -> list[str]:
        items = list(self._lines)
        return items[-count:] if count > 0 else []


def connect_target(source: OpcUaSource | ModbusSource) -> tuple[str, int] | str:
    """(host, port) to try for a source, or why it has none (a serial line)."""
    if isinstance(source, OpcUaSource):
        parts = urlsplit(source.endpoint)
        try:
            port = parts.port or 4840
        except ValueError:
            return f"endpoint {source.endpoint!r} has no valid port"
        return (parts.hostname or "", port)
    if source.transport == "rtu":
        return f"serial line {source.serial_port} (no TCP to test)"
    return (source.host or "", source.port)


@dataclasses.dataclass
class Diagnostics:
    """What the diagnostics read; every part is optional (a missing one is reported)."""

    clock: Clock
    settings: Settings | None = None
    config_path: Path | None = None
    budget: Callable[[], OutageBudget] | None = None
    log_ring: LogRing | None = None
    log_file: Path | None = None
    connect_timeout_s: float = 3.0
    cap_bytes: int = 512 * 1024

    async def serve(self, request: Diagnostic) -> tuple[Status, dict[str, Any]]:
        if request.kind == "log_bundle":
            return await self._log_bundle(int(request.args.get("lines", 200)))
        if request.kind == "connectivity":
            return await self._connectivity(request.args.get("source"))
        if request.kind == "config_masked":
            return await asyncio.to_thread(self._config)
        if request.kind == "buffer_stats":
            return self._buffer_stats()
        return "failed", {"error": f"no implementation for {request.kind!r}"}

    async def _log_bundle(self, count: int) -> tuple[Status, dict[str, Any]]:
        if self.log_file is not None:
            try:
                lines = await asyncio.to_thread(_tail, self.log_file, count)
            except OSError as exc:
                return "failed", {"error": f"cannot read {self.log_file}: {exc.strerror}"}
            source = str(self.log_file)
        elif self.log_ring is not None:
            lines, source = self.log_ring.lines(count), "memory"
        else:
            return "done", {"lines": [], "source": "none", "hint": JOURNAL_HINT.format(lines=count)}
        kept, cut = cap_lines(lines, self.cap_bytes)
        return "done", {"lines": kept, "source": source, "truncated": cut}

    async def _connectivity(self, only: object) -> tuple[Status, dict[str, Any]]:
        sources = [] if self.settings is None else list(self.settings.sources)
        if only is not None:
            sources = [s for s in sources if s.name == only]
            if not sources:
                return "failed", {"error": f"no source named {only!r} in the configuration"}
        checks = await asyncio.gather(*(self._check(source) for source in sources))
        return "done", {"sources": list(checks)}

    async def _check(self, source: OpcUaSource | ModbusSource) -> dict[str, Any]:
        target = connect_target(source)
        report: dict[str, Any] = {"source": source.name, "kind": source.kind}
        if isinstance(target, str):
            return report | {"ok": None, "detail": target}
        host, port = target
        report |= {"host": host, "port": port}
        timeout = min(self.connect_timeout_s, source.timeout_s)
        started = self.clock.monotonic()
        try:
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return report | {"ok": False, "error": f"no answer within {timeout:g} s"}
        except OSError as exc:
            return report | {"ok": False, "error": f"{type(exc).__name__}: {exc.strerror or exc}"}
        writer.close()
        with contextlib.suppress(OSError):  # the peer reset a connection we were closing anyway
            await writer.wait_closed()
        elapsed = round(self.clock.monotonic() - started, 4)
        return report | {"ok": True, "connect_s": elapsed}

    def _config(self) -> tuple[Status, dict[str, Any]]:
        result: dict[str, Any] = {}
        if self.settings is not None:
            result["effective"] = mask_secrets(self.settings.model_dump(mode="json"))
        if self.config_path is not None:
            try:
                raw = self.config_path.read_bytes()
                parsed = tomllib.loads(raw.decode("utf-8"))
            except OSError as exc:
                return "failed", {"error": f"cannot read {self.config_path}: {exc.strerror}"}
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                return "failed", {"error": f"{self.config_path}: not valid TOML: {exc}"}
            result["file"] = str(self.config_path)
            result["sha256"] = hashlib.sha256(raw).hexdigest()
            result["config"] = mask_secrets(parsed)
        if not result:
            return "failed", {"error": "no configuration was given to remote support"}
        return "done", result

    def _buffer_stats(self) -> tuple[Status, dict[str, Any]]:
        if self.budget is None:
            return "failed", {"error": "no buffer (sync disabled?)"}
        budget = self.budget()
        stats = {f.name: getattr(budget, f.name) for f in dataclasses.fields(budget)}
        stats["evictions"] = dict(budget.evictions)
        return "done", stats


def _tail(path: Path, count: int) -> list[str]:
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - _TAIL_BYTES))
        data = file.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > _TAIL_BYTES and lines:
        lines = lines[1:]  # the first one is probably cut
    return lines[-count:]
