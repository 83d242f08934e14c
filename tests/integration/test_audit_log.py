"""The audit log on a real SQLite file: appends, forwards, reads moves back, survives a
restart with one chain, prunes by retention and still verifies; tampering is found."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.cli.main import main
from agent.control.audit import AuditLog, verify_file
from agent.domain.clock import FakeClock


async def test_records_chain_across_restarts_prune_and_verify(tmp_path: Path) -> None:
    clock = FakeClock(now=1_800_000_000.0)
    path = tmp_path / "audit.db"
    forwarded: list[Mapping[str, Any]] = []

    async def sink(events: Sequence[Mapping[str, Any]]) -> int:
        forwarded.extend(events)
        return len(events)

    log = AuditLog(path, agent_id="a1", clock=clock)
    log.sink = sink
    for i in range(5):
        await log.record("cycle", {"i": i}, loop="sep", move=(950.0 + i, 951.0 + i))
        await clock.advance(3600.0)
    log.close()
    assert [e["seq"] for e in forwarded] == [1, 2, 3, 4, 5]
    assert forwarded[1]["prev"] == forwarded[0]["hash"]

    log = AuditLog(path, agent_id="a1", clock=clock)  # the agent restarted
    await log.record("model_activated", {"version": "1.0.0"})
    moves = await log.moves("sep", clock.now() - 2.5 * 3600.0)
    assert [m[1:] for m in moves] == [(953.0, 954.0), (954.0, 955.0)]
    assert verify_file(path).records == 6 and verify_file(path).ok

    await clock.advance(86400.0)
    assert await log.prune(retention_days=1.0) == 5  # the newest record is always kept
    log.close()
    report = verify_file(path)
    assert report.ok and (report.first_seq, report.last_seq) == (6, 6)


def test_audit_verify_command_finds_a_changed_record(tmp_path: Path, capsys: Any) -> None:

    async def write() -> None:
        log = AuditLog(tmp_path / "audit.db", agent_id="a1", clock=FakeClock())
        for i in range(3):
            await log.record("cycle", {"value": i})
        log.close()

    asyncio.run(write())
    assert main(["audit", "verify", "--file", str(tmp_path / "audit.db")]) == 0
    assert "OK: 3 records verified" in capsys.readouterr().out
    db = sqlite3.connect(tmp_path / "audit.db")
    db.execute("UPDATE audit SET body = replace(body, '\"value\":1', '\"value\":7') WHERE seq = 2")
    db.commit()
    db.close()
    assert main(["audit", "verify", "--file", str(tmp_path / "audit.db")]) == 1
    assert "BROKEN: record 2: hash mismatch" in capsys.readouterr().out
