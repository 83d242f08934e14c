"""The audit log forwards each record to the buffer; the local chain is the record of truth.

What the buffer may raise (an agent error: a corrupt store) is logged and the record stands;
anything else is a bug and reaches the supervisor like any other (the one `except
Exception` of the agent is the supervisor's), with the record already committed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.buffer.store import StoreCorruptError
from agent.control.audit import AuditLog, verify_file
from agent.domain.clock import FakeClock


async def test_a_buffer_that_cannot_take_the_record_is_logged_and_the_record_stands(
    tmp_path: Path,
) -> None:
    async def corrupt_buffer(events: Sequence[Mapping[str, Any]]) -> int:
        raise StoreCorruptError("buffer database is corrupt: database disk image is malformed")

    log = AuditLog(tmp_path / "audit.db", agent_id="a1", clock=FakeClock())
    log.sink = corrupt_buffer
    with capture_logs() as logs:
        event = await log.record("cycle", {"i": 1}, loop="sep")
    log.close()
    assert event["seq"] == 1
    assert [(e["event"], e["seq"]) for e in logs if e["event"] == "audit_forward_failed"] == [
        ("audit_forward_failed", 1)
    ]
    assert verify_file(tmp_path / "audit.db").records == 1


async def test_a_bug_on_the_way_to_the_buffer_is_not_swallowed_and_the_record_stands(
    tmp_path: Path,
) -> None:
    async def buggy(events: Sequence[Mapping[str, Any]]) -> int:
        return len(events[0]["no such key"])

    log = AuditLog(tmp_path / "audit.db", agent_id="a1", clock=FakeClock())
    log.sink = buggy
    with pytest.raises(KeyError, match="no such key"):
        await log.record("cycle", {"i": 1}, loop="sep")
    log.close()
    report = verify_file(tmp_path / "audit.db")
    assert report.ok and report.records == 1
