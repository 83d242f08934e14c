"""quality.db on a real SQLite file: results with duplicate and correction semantics,
predictions bounded by count and age (counted), results pruned with their residuals, and what
a reopen keeps (step-downs, offsets, the CSV watcher's memory, the meta table)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.domain.clock import FakeClock
from agent.quality.correction import Offset
from agent.quality.monitor import StepDown
from agent.quality.results import Ingested, LabResult, Prediction, Residual
from agent.quality.store import Pruned, QualityStore

T0 = 1_800_000_000.0
DAY = 86400.0


def result(sample_id: str, value: float, *, test: str = "s2", t: float = T0) -> LabResult:
    return LabResult(sample_id, t, 14400.0, "P", test, value, "MPa", t + 3600.0, "csv:a.csv:2")


def prediction(t: float, loop: str = "sep") -> Prediction:
    return Prediction(loop, "vrm", "1.0.0", "active", "P", t, {"s2": 30.0}, {"s2": 29.5})


async def test_duplicates_change_nothing_and_corrections_replace_with_a_revision(
    tmp_path: Path,
) -> None:
    store = await QualityStore.open(tmp_path / "quality.db", clock=FakeClock(now=T0))
    try:
        first = await store.put_result(result("S1", 31.2))
        assert first.outcome is Ingested.NEW and first.result.revision == 0
        again = await store.put_result(result("S1", 31.2 * (1 + 1e-12)))
        assert again.outcome is Ingested.DUPLICATE and again.previous is None
        fixed = await store.put_result(result("S1", 30.8))
        assert fixed.outcome is Ingested.CORRECTION
        assert (fixed.previous, fixed.result.revision, fixed.result.value) == (31.2, 1, 30.8)
        twice = await store.put_result(result("S1", 30.5))
        assert (twice.outcome, twice.previous, twice.result.revision) == (
            Ingested.CORRECTION, 30.8, 2)  # fmt: skip
        other_test = await store.put_result(result("S1", 3900.0, test="blaine"))
        assert other_test.outcome is Ingested.NEW  # identity is (sample_id, test)
        stored = await store.result("S1", "s2")
        assert stored is not None and (stored.value, stored.revision) == (30.5, 2)
        assert await store.result_count() == 2
    finally:
        await store.close()


async def test_predictions_are_bounded_by_count_and_age_and_counted(tmp_path: Path) -> None:
    clock = FakeClock(now=T0)
    store = await QualityStore.open(tmp_path / "quality.db", clock=clock)
    try:
        dropped = 0
        for i in range(8):
            dropped += await store.record(prediction(T0 - (40 - i) * DAY), max_predictions=5)
        await store.record(prediction(T0, loop="lime"), max_predictions=5)
        assert dropped == 3
        assert store.predictions_kept("sep") == 4 and store.predictions_kept("lime") == 1
        kept = await store.predictions("sep", T0 - 50 * DAY, T0)
        assert [p.time for p in kept] == [T0 - (40 - i) * DAY for i in range(4, 8)]  # oldest gone
        assert kept[0].corrected == {"s2": 29.5} and kept[0].used("s2") == 29.5
        pruned = await store.prune(prediction_retention_days=35.0, max_predictions=5,
                                   result_retention_days=400.0)  # fmt: skip
        assert pruned == Pruned(predictions=1, results=0)  # 36 days old; 35 is not older
        assert store.predictions_kept("sep") == 3 and store.predictions_kept() == 4
        await clock.advance(2 * DAY)
        pruned = await store.prune(prediction_retention_days=35.0, max_predictions=2,
                                   result_retention_days=400.0)  # fmt: skip
        assert pruned.predictions == 2  # 35 and 34 days old by now (age), none beyond count
        assert store.predictions_kept("sep") == 1 and store.predictions_kept("lime") == 1
    finally:
        await store.close()
    reopened = await QualityStore.open(tmp_path / "quality.db", clock=clock)
    try:
        assert reopened.predictions_kept("sep") == 1 and reopened.predictions_kept() == 2
    finally:
        await reopened.close()


async def test_results_are_pruned_by_sample_time_with_their_residuals(tmp_path: Path) -> None:
    clock = FakeClock(now=T0)
    store = await QualityStore.open(tmp_path / "quality.db", clock=clock)
    try:
        for i, age in enumerate((401.0, 399.0, 10.0)):
            stored = (await store.put_result(result(f"S{i}", 30.0, t=T0 - age * DAY))).result
            residual = Residual("sep", "vrm", "1.0.0", "active", "P", "s2", stored.sample_id,
                                stored.sample_time, 30.0, 31.0, 31.0, 4)  # fmt: skip
            await store.replace_residuals(stored.sample_id, "s2", [residual])
        pruned = await store.prune(prediction_retention_days=35.0, max_predictions=10_000,
                                   result_retention_days=400.0)  # fmt: skip
        assert pruned == Pruned(predictions=0, results=1)
        assert [r.sample_id for r in await store.residuals("sep")] == ["S1", "S2"]
        assert await store.result("S0", "s2") is None and await store.result_count() == 2
        await store.replace_residuals("S1", "s2", [])  # a corrected result no window holds
        assert [r.sample_id for r in await store.residuals("sep")] == ["S2"]
    finally:
        await store.close()


async def test_a_reopen_keeps_step_downs_offsets_csv_memory_and_meta(tmp_path: Path) -> None:
    clock = FakeClock(now=T0)
    path = tmp_path / "quality.db"
    store = await QualityStore.open(path, clock=clock)
    step = StepDown("sep", T0, "vrm", "1.0.0", "s2", "s2 bias -1.31 over 6 results > 1.0 x "
                    "declared RMSE 0.91")  # fmt: skip
    try:
        await store.put_step_down(step)
        await store.put_step_down(StepDown("lime", T0, "vrm", "1.0.0", "s28", "x"))
        await store.clear_step_down("lime")
        await store.put_offset("sep", "s2", Offset("s2", -1.31, "s2", 6))
        await store.put_offset("sep", "s28", Offset("s28", -2.62, "s2 via s28_per_s2 2.0", 6))
        await store.put_offset("lime", "s2", Offset("s2", 0.4, "s2", 5))
        await store.put_offset("lime", "s2", None)
        assert not await store.seen_file("lab_0601.csv", 120, 5, "ab" * 32)
        await store.remember_file("lab_0601.csv", 120, 5, "ab" * 32, 4, 1)
        await store.set_meta("cloud_cursor", "c-17")
        await store.set_meta("cloud_cursor", "c-18")
    finally:
        await store.close()

    store = await QualityStore.open(path, clock=clock)
    try:
        assert await store.step_downs() == {"sep": step}
        assert await store.offsets() == {"sep": {
            "s2": Offset("s2", -1.31, "s2", 6),
            "s28": Offset("s28", -2.62, "s2 via s28_per_s2 2.0", 6)}}  # fmt: skip
        assert await store.seen_file("lab_0601.csv", 120, 5, "ab" * 32)
        assert await store.seen_file("lab_0601.csv", 120, 999, "ab" * 32)  # only touched
        assert not await store.seen_file("lab_0601.csv", 130, 7, "cd" * 32)  # rewritten
        assert not await store.seen_file("lab_0602.csv", 120, 5, "ab" * 32)
        assert await store.get_meta("cloud_cursor") == "c-18"
        assert await store.get_meta("absent") is None
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        row = db.execute("SELECT rows, problems, read_at FROM csv_files").fetchone()
        assert row == (4, 1, T0)
    finally:
        db.close()
