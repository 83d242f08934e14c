"""The typed decision record: its JSON (the keys its readers use) and what a restart takes
over from it (agent.control.latch.carried: typed fields first, old text only as a fallback)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agent.control.audit_chain import canonical
from agent.control.gates import Verdict
from agent.control.latch import Carried, SafetyStop, StopCode, carried, same_grant
from agent.control.record import (
    Advice,
    Candidates,
    CycleRecord,
    FeatureRecord,
    GuardRecord,
    Handshake,
    InputRecord,
    ModelRef,
    Outcome,
    ReadBack,
    Reading,
    WriteRecord,
    WriteStatus,
)
from agent.domain.samples import BAD_NO_COMMUNICATION, Sample

T = 1_800_000_000.0
STOP = SafetyStop(StopCode.READBACK_MISMATCH, "read-back mismatch: SP = 12.0 after 2 s", T)


def test_a_blocked_cycle_has_only_what_happened_and_always_its_carried_state() -> None:
    rec = CycleRecord(mode="shadow", decided_at=T)
    rec.verdicts.append(Verdict("model", False, "no valid version of model 'm'"))
    rec.reason = "model: no valid version of model 'm'"
    assert rec.to_json() == {
        "mode": "shadow", "decided_at": T, "outcome": "blocked",
        "verdicts": [{"gate": "model", "ok": False, "reason": "no valid version of model 'm'"}],
        "reason": "model: no valid version of model 'm'", "safety_stop": None, "baseline": None,
    }  # fmt: skip


def test_a_written_cycle_has_the_keys_the_cloud_the_demo_and_bench_read() -> None:
    remote = Sample("RemoteActive", T - 1, True)
    rec = CycleRecord(mode="advisory", decided_at=T, outcome=Outcome.WRITE, baseline=12.0)
    rec.handshake = Handshake(Reading.of(remote), Reading.of(Sample("Echo", T, math.nan)), 7)
    rec.model = ModelRef("vrm", "1.0.0", "ab" * 32)
    rec.inputs = {"x": InputRecord("X", Reading.of(Sample("X", T, None, BAD_NO_COMMUNICATION)),
                                   False, "x is Bad", critical=False)}  # fmt: skip
    rec.features = {"x": FeatureRecord(1.23456789, "imputed", "input failed its gate")}
    rec.candidates = Candidates({"x": 13.0}, True, 3, 25, ("strength",), {"q": 1.0}, {"q": 2.0},
                                "cheapest feasible candidate")  # fmt: skip
    rec.target, rec.predicted, rec.suggestion = 13.0, {"q": 1.0}, 12.5
    rec.guard = GuardRecord(12.0, 13.0, 12.0, 12.5, clamped=False)
    rec.decision_ms, rec.inference_ms = 1.5, 0.25
    rec.write = WriteRecord(
        "SP", 12.0, 12.5, 1.6, WriteStatus.ACCEPTED, readback=ReadBack(12.5, 0.4)
    )
    rec.advice = Advice(42, 12.5, T - 60, "q", 2.0, acknowledged=True, ack_time=T - 5)
    body = rec.to_json()
    canonical(body)  # strict JSON: the audit chain hashes it
    assert body["handshake"] == {
        "remote": {"value": True, "status": 0, "source_time": T - 1},
        "echo": {"value": "nan", "status": 0, "source_time": T}, "sent": 7,
    }  # fmt: skip
    assert body["inputs"]["x"] == {"tag": "X", "value": None, "status": BAD_NO_COMMUNICATION,
                                   "source_time": T, "ok": False, "reason": "x is Bad",
                                   "critical": False}  # fmt: skip
    assert body["features"]["x"] == {"value": 1.234568, "origin": "imputed",
                                     "note": "input failed its gate"}  # fmt: skip
    assert body["write"] == {"tag": "SP", "from": 12.0, "value": 12.5, "decision_ms": 1.6,
                             "status": "accepted", "readback": 12.5, "readback_s": 0.4}  # fmt: skip
    assert body["advice"] == {"id": 42, "value": 12.5, "time": T - 60, "effect_q": 2.0,
                              "acknowledged": True, "ack_time": T - 5}  # fmt: skip
    assert body["candidates"]["binding"] == ["strength"] and body["candidates"]["joint"] is None
    assert body["guard"]["baseline"] == 12.0 and body["baseline"] == 12.0
    assert (body["outcome"], body["decision_ms"], body["inference_ms"]) == ("write", 1.5, 0.25)
    assert "reason" not in body and "advice_expired" not in body


def test_a_failed_write_keeps_its_reason_and_a_read_back_only_when_awaited() -> None:
    rejected = WriteRecord("SP", 1.0, 2.0, 0.1, WriteStatus.REJECTED, reason="BadOutOfRange")
    assert "readback" not in rejected.to_json() and rejected.to_json()["reason"] == "BadOutOfRange"
    mismatch = WriteRecord("SP", 1.0, 2.0, 0.1, WriteStatus.ACCEPTED, "read-back mismatch",
                           ReadBack(None))  # fmt: skip
    assert mismatch.to_json()["readback"] is None and "readback_s" not in mismatch.to_json()


def _typed(stop: SafetyStop | None, reason: str, baseline: float | None = 950.0) -> Any:
    rec = CycleRecord(mode="closed_loop", decided_at=T, safety_stop=stop, baseline=baseline)
    rec.reason = reason
    return rec.to_json()


def test_a_restart_takes_over_the_typed_stop_whatever_the_reason_text_says() -> None:
    assert carried(_typed(STOP, "the text was reworded")) == Carried(STOP, 950.0)
    assert carried(_typed(None, "safety stop: the text says so")) == Carried(None, 950.0)
    assert carried(_typed(None, "guard: deadband", baseline=None)) == Carried()
    assert carried(None) == Carried()


def test_an_unreadable_typed_stop_holds_all_the_same() -> None:
    for raw in ({"code": "new_code", "reason": "x", "since": T}, "stopped", {"code": None}):
        body = {**_typed(None, "x"), "safety_stop": raw}
        stop = carried(body).safety_stop
        assert stop is not None and stop.code is StopCode.UNKNOWN and stop.since == T, raw


@pytest.mark.parametrize("raw", [{}, False, 0, "", [], 0.0])
def test_a_falsy_typed_stop_is_a_stop_only_null_is_none(raw: object) -> None:
    # Only null means "no stop": an empty or false value in the field fails closed.
    stop = SafetyStop.from_json(raw, T)
    assert stop is not None and stop.code is StopCode.UNKNOWN and stop.since == T
    assert carried({**_typed(None, "x"), "safety_stop": raw}).safety_stop == stop
    assert SafetyStop.from_json(None, T) is None


def test_a_carried_baseline_belongs_to_the_grant_its_record_saw() -> None:
    body = _typed(None, "guard: deadband")
    body["handshake"] = {"remote": {"value": True, "status": 0, "source_time": T - 60},
                         "echo": None, "sent": 3}  # fmt: skip
    state = carried(body)
    assert state == Carried(None, 950.0, T - 60, T - 60)  # confirmed at the grant (no field)
    # RemoteActive publishes on change: the same sample is the same grant; a newer one is
    # the operator granting remote again (maybe after moving the setpoint by hand).
    assert same_grant(state.granted_at, T - 60) and same_grant(state.granted_at, T - 61)
    assert not same_grant(state.granted_at, T - 59)
    # Nothing to compare (no handshake in the record, no sample now): a fresh baseline.
    assert carried(_typed(None, "x")).granted_at is None
    assert not same_grant(None, T) and not same_grant(T, None)


# A cycle record as the previous version wrote it (no typed fields): after a read-back
# mismatch, and every cycle after a restart that took the stop over.
OLD_STOP = {
    "mode": "closed_loop", "decided_at": T, "outcome": "blocked",
    "verdicts": [{"gate": "handshake", "ok": True, "reason": "ok"}],
    "handshake": {"remote": {"value": True, "status": 0, "source_time": T}, "echo": None,
                  "sent": 3},
    "guard": {"current": 12.0, "target": 13.0, "baseline": 11.5, "value": 12.5,
              "clamped": False},
    "write": {"tag": "SP", "from": 12.0, "value": 12.5, "decision_ms": 1.0,
              "status": "accepted", "readback": 12.0,
              "reason": "read-back mismatch: SP = 12.0 after 2 s, expected 12.5 +- 0.01"},
    "reason": "safety stop: read-back mismatch: SP = 12.0 after 2 s, expected 12.5 +- 0.01",
}  # fmt: skip
OLD_HELD = {
    "mode": "closed_loop", "decided_at": T + 60, "outcome": "blocked",
    "verdicts": [{"gate": "safety_stop", "ok": False,
                  "reason": "safety stop before the restart; waiting for the PLC to go local"}],
    "reason": "safety_stop: safety stop before the restart; waiting for the PLC to go local",
}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "code", "baseline"),
    [(OLD_STOP, StopCode.READBACK_MISMATCH, 11.5), (OLD_HELD, StopCode.UNKNOWN, None)],
)
def test_a_record_of_the_previous_version_is_read_by_its_text(
    body: dict[str, Any], code: StopCode, baseline: float | None
) -> None:
    state = carried(body)
    assert state.safety_stop == SafetyStop(code, body["reason"], body["decided_at"])
    assert state.baseline == baseline
    assert carried({**OLD_STOP, "reason": "guard: deadband"}) == Carried(None, 11.5, T, T)
    assert carried({**OLD_STOP, "handshake": None, "reason": "x"}) == Carried()  # not writing
