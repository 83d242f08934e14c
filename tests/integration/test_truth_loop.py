"""The truth loop end to end on a real quality.db: predictions recorded, lab results ingested
and joined, residuals judged, a closed loop stepped down once a strength test is degraded on
persist_results results in a row (and not before, not across a restart in between, never for a
Blaine that is not a step_down_test, never a shadow, advisory or step_down=false loop, nor for
its challenger), restored by an operator, offsets audited, corrections recomputed, a restart
keeping it all, and the tag path through observe() with real Samples (issue 14; plant-model
4.4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.config.quality_settings import LabTag, LoopQuality, ProductQuality, QualitySection
from agent.config.settings import Loop
from agent.domain.clock import FakeClock
from agent.domain.errors import RetryableError
from agent.domain.samples import BAD, Sample
from agent.quality.results import Ingested, LabResult, Prediction
from agent.quality.tags import PAIR_S
from agent.quality.truth import PRUNE_INTERVAL_S, TruthLoop
from tests.support.tasks import running
from tests.support.wait import eventually, until

T0 = 1_800_000_000.0
H = 3600.0
DECLARED = {("vrm", "1.0.0"): {"s2": 0.91, "s28": 1.5}, ("vrm", "1.1.0"): {"s2": 0.91},
            ("vrm", "1.2.0"): {"s2": 0.91, "blaine": 42.0}}  # fmt: skip
SETTINGS = QualitySection(default_product="P", products=[ProductQuality(name="P", s28_per_s2=1.8)])


def loop(name: str, mode: str = "closed_loop", **quality: Any) -> Loop:
    return Loop(name=name, mode=mode, model="vrm", strategy="direct", output="s28",
                target_tag=f"{name}.SP", envelope_min=0.0, envelope_max=100.0, max_step=1.0,
                quality=LoopQuality(results=10, min_results=5, **quality))  # fmt: skip


@dataclass
class Sinks:
    audits: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def audit(self, kind: str, body: Mapping[str, Any], loop: str | None) -> None:
        self.audits.append((kind, dict(body), loop))

    async def event(self, events: Sequence[Mapping[str, Any]]) -> int:
        self.events.extend(dict(e) for e in events)
        return len(events)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [body for k, body, _ in self.audits if k == kind]


def declared(model: str, version: str) -> Mapping[str, float]:
    return DECLARED.get((model, version), {})


async def open_truth(path: Path, loops: list[Loop], sinks: Sinks, clock: FakeClock,
                     settings: QualitySection = SETTINGS) -> TruthLoop:  # fmt: skip
    return await TruthLoop.open(path / "quality.db", settings, loops, clock=clock,
                                declared=declared, audit=sinks.audit, events=sinks.event)  # fmt: skip


async def predict(truth: TruthLoop, name: str, hours: int, *, s2: float = 30.0,
                  role: str = "active", version: str = "1.0.0",
                  blaine: float | None = None) -> None:  # fmt: skip
    """Six predictions an hour for `hours` hours before T0 (every 600 s)."""
    raw = {"s2": s2, "s28": 50.0} | ({} if blaine is None else {"blaine": blaine})
    for k in range(hours * 6):
        t = T0 - hours * H + (k + 1) * 600.0
        await truth.record(Prediction(name, "vrm", version, role, "P", t, raw))


def s2_result(i: int, value: float, hours: int = 8) -> LabResult:
    """The s2 result of hour i (of `hours` before T0): its window holds that hour's predictions."""
    end = T0 - (hours - 1 - i) * H
    return LabResult(f"S{i}", end, H, "P", "s2", value, "MPa", end + 2 * 86400.0, "test")


async def test_a_closed_loop_steps_down_on_two_degraded_results_in_a_row_and_only_it(
    tmp_path: Path,
) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    loops = [loop("sep"), loop("adv", "advisory"), loop("sh", "shadow"),
             loop("nostep", step_down=False)]  # fmt: skip
    truth = await open_truth(tmp_path, loops, sinks, clock)
    for name in ("sep", "adv", "sh", "nostep"):
        await predict(truth, name, 8)
    for i in range(4):
        assert await truth.ingest([s2_result(i, 28.69)]) == [Ingested.NEW]
    assert truth.step_down("sep") is None and truth.offsets("sep") == {}
    assert truth.report("sep").tests[0].n == 4
    await truth.ingest([s2_result(4, 28.69)])  # degraded (n = 5), but once: no step-down yet
    (first,) = [h for h in truth.report("sep").tests if h.test == "s2"]
    assert first.degraded and first.streak == 1 and truth.step_down("sep") is None
    await truth.close()
    truth = await open_truth(tmp_path, loops, sinks, clock)  # the streak is in quality.db
    await truth.ingest([s2_result(5, 28.69)])

    step = truth.step_down("sep")
    assert step is not None and (step.loop, step.since, step.test) == ("sep", T0, "s2")
    assert step.reason == (
        "s2 bias -1.31 over 6 results > 1.0 x declared RMSE 0.91 and > 3.0 x its standard "
        "error 0.37, on 2 results in a row"
    )
    assert [truth.step_down(n) for n in ("adv", "sh", "nostep")] == [None, None, None]
    (audited,) = sinks.kinds("quality_step_down")
    assert (audited["loop"], audited["model"], audited["version"]) == ("sep", "vrm", "1.0.0")
    assert audited["figures"]["n"] == 6 and audited["figures"]["bias"] == pytest.approx(-1.31)
    assert audited["figures"]["in_a_row"] == 2
    assert [e["loop"] for e in sinks.events if e["kind"] == "quality_step_down"] == ["sep"]
    assert [e["sample_id"] for e in sinks.events if e["kind"] == "lab_result"] == [
        f"S{i}" for i in range(6)]  # fmt: skip

    # the mean -1.31 over 5 is beyond 2 x SE 0.91 / sqrt(5) = 0.81: applied from the 5th result
    assert truth.offsets("sep") == pytest.approx({"s2": -1.31, "s28": -1.31 * 1.8})
    corrections = [b for b in sinks.kinds("quality_correction") if b["loop"] == "sep"]
    assert [(b["output"], b["source"], b["previous"], b["results"]) for b in corrections] == [
        ("s2", "s2 mean -1.31 over 5 (lag-1 r 0.00, SE 0.41)", None, 5),
        ("s28", "s2 mean -1.31 over 5 (lag-1 r 0.00, SE 0.41) x s28_per_s2 1.8 + mapping 0.00 "
                "over 0 pairs "
                "(< min_results 5: 0)", None, 5)]  # fmt: skip
    report = truth.report("sep")
    assert (report.product, report.model, report.version) == ("P", "vrm", "1.0.0")
    assert report.step_down == step and report.results_matched == 6
    assert report.predictions_kept == 48
    (s2,) = [h for h in report.tests if h.test == "s2"]
    assert s2.degraded and s2.declared_rmse == 0.91 and s2.raw_bias == pytest.approx(-1.31)
    assert [h.test for h in report.tests] == ["s2", "s28"]  # the tests the model predicts
    await truth.close()

    audits_before = len(sinks.audits)
    truth = await open_truth(tmp_path, loops, sinks, clock)  # the agent restarted
    try:
        assert truth.step_down("sep") == step
        assert truth.offsets("sep") == pytest.approx({"s2": -1.31, "s28": -2.358})
        assert truth.report("sep").tests[0].degraded
        assert len(sinks.audits) == audits_before  # nothing changed, nothing audited

        cleared = await truth.restore("sep", operator="M. Jones", reason="lab re-calibrated")
        assert cleared == step and truth.step_down("sep") is None
        (up,) = sinks.kinds("quality_step_up")
        assert (up["operator"], up["reason"], up["test"]) == ("M. Jones", "lab re-calibrated", "s2")
        assert await truth.restore("sep", operator="M. Jones", reason="again") is None
        assert await truth.restore("nosuchloop", operator="M. Jones", reason="x") is None
    finally:
        await truth.close()
    truth = await open_truth(tmp_path, loops, sinks, clock)
    try:
        assert truth.step_down("sep") is None  # the step-up survives a restart too
        await truth.ingest([s2_result(6, 28.69)])  # still biased: down again, by a new result
        again = truth.step_down("sep")
        assert again is not None and again.reason.startswith("s2 bias -1.31 over 7 results")
    finally:
        await truth.close()


async def test_a_degraded_blaine_alarms_but_steps_down_only_when_listed(tmp_path: Path) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    loops = [loop("sep"), loop("strict", step_down_tests=["blaine", "s2", "s28"])]
    truth = await open_truth(tmp_path, loops, sinks, clock)
    try:
        for name in ("sep", "strict"):
            await predict(truth, name, 8, blaine=3800.0, version="1.2.0")
        for i in range(6):  # -100 cm2/g: beyond 42 and 3 x 42 / sqrt(6) = 51.4
            end = T0 - (7 - i) * H
            await truth.ingest([LabResult(f"B{i}", end, H, "P", "blaine", 3700.0, "cm2/g",
                                          end + 2700.0, "test")])  # fmt: skip
        for name in ("sep", "strict"):
            (blaine,) = [h for h in truth.report(name).tests if h.test == "blaine"]
            assert blaine.degraded and blaine.streak == 2 and blaine.bias == pytest.approx(-100.0)
        assert truth.step_down("sep") is None  # shown degraded, alarmed, not stepped down
        step = truth.step_down("strict")
        assert step is not None and step.test == "blaine"
        assert [b["loop"] for b in sinks.kinds("quality_step_down")] == ["strict"]
    finally:
        await truth.close()


async def test_a_corrected_result_is_audited_forwarded_and_rejudged(tmp_path: Path) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    truth = await open_truth(tmp_path, [loop("sep", correction=False)], sinks, clock)
    try:
        await predict(truth, "sep", 8)
        outcomes = await truth.ingest([s2_result(i, 30.0) for i in range(6)])
        assert outcomes == [Ingested.NEW] * 6
        assert truth.step_down("sep") is None and truth.report("sep").tests[0].bias == 0.0
        assert await truth.ingest([s2_result(5, 30.0)]) == [Ingested.DUPLICATE]
        assert len([e for e in sinks.events if e["kind"] == "lab_result"]) == 6

        assert await truth.ingest([s2_result(5, 22.0)]) == [Ingested.CORRECTION]
        (corrected,) = sinks.kinds("lab_result_corrected")
        assert (corrected["sample_id"], corrected["value"], corrected["previous"]) == (
            "S5", 22.0, 30.0)  # fmt: skip
        assert corrected["revision"] == 1 and sinks.events[-1]["revision"] == 1
        health = truth.report("sep").tests[0]
        assert health.n == 6 and health.bias == pytest.approx(-8.0 / 6.0)  # beyond 3 x 0.37
        assert health.degraded and health.streak == 1 and truth.step_down("sep") is None
        # the earlier result corrected too: its window (-8 / 5 = -1.60 > 1.22) is degraded now
        assert await truth.ingest([s2_result(4, 22.0)]) == [Ingested.CORRECTION]
        health = truth.report("sep").tests[0]
        assert health.bias == pytest.approx(-16.0 / 6.0) and health.streak == 2
        step = truth.step_down("sep")
        assert step is not None and step.reason.startswith("s2 bias -2.67 over 6 results")
        assert truth.offsets("sep") == {} and sinks.kinds("quality_correction") == []
    finally:
        await truth.close()


async def scored_challenger(path: Path, sinks: Sinks, clock: FakeClock) -> TruthLoop:
    """Loop "sep" with challenger 1.1.0, both predicting 8 h (s2 28.7 and 33.0), and six s2
    results of 28.69 judged: the active model sound, the challenger off by 4.3."""
    truth = await open_truth(path, [loop("sep", challenger_version="1.1.0")], sinks, clock)
    await predict(truth, "sep", 8, s2=28.7)
    await predict(truth, "sep", 8, s2=33.0, role="challenger", version="1.1.0")
    await truth.ingest([s2_result(i, 28.69) for i in range(6)])
    return truth


async def test_a_degraded_challenger_never_steps_anything(tmp_path: Path) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    truth = await scored_challenger(tmp_path, sinks, clock)
    try:
        report = truth.report("sep")
        (active,) = [h for h in report.tests if h.test == "s2"]
        (challenger,) = [h for h in report.challenger if h.test == "s2"]
        assert [h.test for h in report.challenger] == [h.test for h in report.tests]
        assert not active.degraded and challenger.degraded
        assert (challenger.version, challenger.role, challenger.n) == ("1.1.0", "challenger", 6)
        assert truth.step_down("sep") is None and sinks.kinds("quality_step_down") == []
    finally:
        await truth.close()


async def test_a_promoted_challenger_is_no_longer_shown_as_one(tmp_path: Path) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    truth = await scored_challenger(tmp_path, sinks, clock)
    try:
        assert [h.version for h in truth.report("sep").challenger if h.test == "s2"] == ["1.1.0"]
        # promoted: the loop now predicts with 1.1.0 as its active version
        await truth.record(Prediction("sep", "vrm", "1.1.0", "active", "P", T0 + 600.0,
                                      {"s2": 33.0, "s28": 50.0}))  # fmt: skip
        report = truth.report("sep")
        assert report.version == "1.1.0" and report.challenger == []
    finally:
        await truth.close()
    # after a restart too (the newest challenger prediction is still 1.1.0's in quality.db)
    again = await open_truth(tmp_path, [loop("sep", challenger_version="1.1.0")], sinks, clock)
    try:
        assert again.report("sep").challenger == []
    finally:
        await again.close()
    other = await open_truth(tmp_path, [loop("sep", challenger_version="1.2.0")], sinks, clock)
    try:
        assert other.report("sep").challenger == []  # the file names another challenger now
    finally:
        await other.close()


async def test_unmatched_results_and_unknown_loops(tmp_path: Path) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    truth = await open_truth(tmp_path, [loop("sep")], sinks, clock)
    try:
        await predict(truth, "sep", 2)
        far = LabResult("X1", T0 - 30 * H, H, "P", "s2", 30.0, "MPa", T0, "cloud")
        other = LabResult("X2", T0, H, "Q", "s2", 30.0, "MPa", T0, "cloud")  # another product
        so3 = LabResult("X3", T0, H, "P", "so3", 3.1, "%", T0, "cloud")  # stored, not monitored
        assert await truth.ingest([far, other, so3]) == [Ingested.NEW] * 3
        assert truth.unmatched == 2 and truth.report("sep").results_matched == 0
        assert await truth.store.result_count() == 3
        assert truth.offsets("ghost") == {} and truth.step_down("ghost") is None
        ghost = truth.report("ghost")
        assert (ghost.loop, ghost.tests, ghost.step_down, ghost.predictions_kept) == (
            "ghost", [], None, 0)  # fmt: skip
    finally:
        await truth.close()


async def test_the_tag_path_pairs_values_with_sample_times(tmp_path: Path) -> None:
    tags = [LabTag(test="s2", tag="Lab.S2", sample_time_tag="Lab.S2.Time",
                   sample_id_tag="Lab.S2.Id", window_s=14400.0, unit="MPa"),
            LabTag(test="blaine", tag="Lab.Blaine", unit="cm2/g", product="Q")]  # fmt: skip
    settings = SETTINGS.model_copy(update={"tags": tags})
    clock, sinks = FakeClock(now=T0), Sinks()
    truth = await open_truth(tmp_path, [loop("sep")], sinks, clock, settings)
    store = truth.store
    try:
        async with running(truth.run):
            truth.observe([Sample("Lab.S2", T0 + 1.0, 28.7), Sample("Lab.S2", T0 + 1.5, 9.9, BAD)])
            truth.observe([Sample("Other", T0 + 2.0, 1.0)])
            assert await store.result_count() == 0  # the value waits for its sample time
            truth.observe([Sample("Lab.S2.Time", T0 + 2.0, T0 - 7200.0),
                           Sample("Lab.S2.Id", T0 + 2.0, "K-1")])  # fmt: skip
            first = await eventually(lambda: store.result("K-1", "s2"), "the paired result")
            assert (first.value, first.sample_time, first.window_s, first.product) == (
                28.7, T0 - 7200.0, 14400.0, "P")  # fmt: skip
            assert (first.source, first.unit) == ("tag:Lab.S2", "MPa")

            # the next sample has the same value: only its sample time and id change
            truth.observe([Sample("Lab.S2.Time", T0 + 100.0, T0 - 3600.0),
                           Sample("Lab.S2.Id", T0 + 100.0, "K-2")])  # fmt: skip
            await clock.advance(0.0)
            assert await store.result("K-2", "s2") is None  # the value may still come
            await clock.advance(2 * PAIR_S)
            second = await eventually(lambda: store.result("K-2", "s2"), "the unchanged value")
            assert (second.value, second.sample_time) == (28.7, T0 - 3600.0)
            truth.observe([Sample("Lab.S2.Time", T0 + 200.0, T0 - 3600.0)])  # a repeat
            await clock.advance(2 * PAIR_S)

            truth.observe([Sample("Lab.Blaine", T0 + 10.0, 3900)])  # no sample-time tag
            blaine = await eventually(lambda: store.result(f"Lab.Blaine@{T0 + 10.0:.0f}", "blaine"))
            assert (blaine.value, blaine.sample_time, blaine.product) == (3900.0, T0 + 10.0, "Q")
            truth.observe([Sample("Lab.Blaine", T0 + 5.0, 3950.0)])  # older than the last: no
            truth.observe([Sample("Lab.Blaine", T0 + 20.0, True)])  # not a number
            truth.observe([Sample("Lab.Blaine", T0 + 30.0, 3870.0)])  # queued behind them
            await eventually(lambda: store.result(f"Lab.Blaine@{T0 + 30.0:.0f}", "blaine"))
        assert await store.result_count() == 4
        assert [(e["sample_id"], e["source"]) for e in sinks.events] == [
            ("K-1", "tag:Lab.S2"), ("K-2", "tag:Lab.S2"),
            (f"Lab.Blaine@{T0 + 10.0:.0f}", "tag:Lab.Blaine"),
            (f"Lab.Blaine@{T0 + 30.0:.0f}", "tag:Lab.Blaine")]  # fmt: skip
    finally:
        await truth.close()


async def test_a_value_late_or_rewritten_under_its_sample_time_corrects_that_result(
    tmp_path: Path,
) -> None:
    tags = [LabTag(test="s2", tag="Lab.S2", sample_time_tag="Lab.S2.Time", window_s=14400.0)]
    settings = SETTINGS.model_copy(update={"tags": tags})
    clock, sinks = FakeClock(now=T0), Sinks()
    truth = await open_truth(tmp_path, [loop("sep")], sinks, clock, settings)
    store, first = truth.store, f"Lab.S2@{T0 - 7200.0:.0f}"
    try:
        async with running(truth.run):
            truth.observe([Sample("Lab.S2", T0 + 1.0, 28.7),
                           Sample("Lab.S2.Time", T0 + 1.0, T0 - 7200.0)])  # fmt: skip
            await eventually(lambda: store.result(first, "s2"), "the first result")
            # the next sample time arrives, its value does not come within PAIR_S: the latest
            # value (28.7) is taken for it ...
            second = f"Lab.S2@{T0 - 3600.0:.0f}"
            truth.observe([Sample("Lab.S2.Time", T0 + 100.0, T0 - 3600.0)])
            await clock.advance(2 * PAIR_S)
            got = await eventually(lambda: store.result(second, "s2"), "the unchanged value")
            assert got.value == 28.7
            # ... and the real value arriving late corrects it, once PAIR_S passed without a
            # new sample time (it was not the value of a next sample)
            truth.observe([Sample("Lab.S2", T0 + 120.0, 27.9)])
            await clock.advance(0.0)
            assert (await store.result(second, "s2")).value == 28.7  # type: ignore[union-attr]
            await clock.advance(2 * PAIR_S)

            async def corrected() -> bool:
                found = await store.result(second, "s2")
                return found is not None and found.value == 27.9 and found.revision == 1

            await eventually(corrected, "the late value as a correction of its sample")
            # a value written just before its own sample time is the next sample, not a fix
            truth.observe([Sample("Lab.S2", T0 + 300.0, 30.1)])
            await clock.advance(PAIR_S - 1.0)  # the pairing timer runs meanwhile
            truth.observe([Sample("Lab.S2.Time", T0 + 302.0, T0)])
            await clock.advance(2 * PAIR_S)
            third = await eventually(lambda: store.result(f"Lab.S2@{T0:.0f}", "s2"), "the third")
            assert third.value == 30.1
        assert (await store.result(second, "s2")).value == 27.9  # type: ignore[union-attr]
        assert [b["sample_id"] for b in sinks.kinds("lab_result_corrected")] == [second]
    finally:
        await truth.close()


async def test_run_prunes_every_hour_and_counts_it(tmp_path: Path) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    settings = SETTINGS.model_copy(update={"prediction_retention_days": 30.0})
    truth = await open_truth(tmp_path, [loop("sep")], sinks, clock, settings)
    try:
        for days in (31.0, 30.5, 1.0):
            await truth.record(Prediction("sep", "vrm", "1.0.0", "active", "P",
                                          T0 - days * 86400.0, {"s2": 30.0}))  # fmt: skip
        async with running(truth.run):
            await clock.advance(PRUNE_INTERVAL_S - 1.0)
            assert truth.pruned_predictions == 0
            await clock.advance(1.0)
            await until(lambda: truth.pruned_predictions == 2, "the hourly pruning")
        assert truth.report("sep").predictions_kept == 1
    finally:
        await truth.close()


async def test_a_result_stored_but_not_forwarded_is_finished_when_delivered_again(
    tmp_path: Path,
) -> None:
    """The cloud's buffer refuses the events once (a full disk): the ingest fails after the
    results were stored. Delivered again (the CSV file is read again at the next poll), the
    results are duplicates, and yet joined and forwarded then; a third delivery changes nothing."""
    clock, sinks = FakeClock(now=T0), Sinks()
    refusing = [True]

    async def events(batch: Sequence[Mapping[str, Any]]) -> int:
        if refusing[0]:
            refusing[0] = False
            raise RetryableError("buffer: the disk is full")
        return await sinks.event(batch)

    truth = await TruthLoop.open(tmp_path / "quality.db", SETTINGS, [loop("sep")], clock=clock,
                                 declared=declared, audit=sinks.audit, events=events)  # fmt: skip
    try:
        await predict(truth, "sep", 8)
        batch = [s2_result(i, 29.0) for i in range(3)]
        with pytest.raises(RetryableError):
            await truth.ingest(batch)
        assert await truth.store.result_count() == 3 and sinks.events == []
        assert await truth.ingest(batch) == [Ingested.DUPLICATE] * 3
        assert [e["sample_id"] for e in sinks.events] == ["S0", "S1", "S2"]
        assert truth.report("sep").results_matched == 3
        assert await truth.ingest(batch) == [Ingested.DUPLICATE] * 3
        assert len(sinks.events) == 3  # settled: not forwarded again
    finally:
        await truth.close()


async def test_a_correction_after_its_predictions_were_pruned_keeps_its_residual(
    tmp_path: Path,
) -> None:
    clock, sinks = FakeClock(now=T0), Sinks()
    settings = SETTINGS.model_copy(update={"prediction_retention_days": 30.0})
    truth = await open_truth(tmp_path, [loop("sep")], sinks, clock, settings)
    try:
        await predict(truth, "sep", 8)  # s2 predicted 30.0
        await truth.ingest([s2_result(0, 29.0)])
        (before,) = [r for r in await truth.store.residuals("sep") if r.sample_id == "S0"]
        assert before.residual == pytest.approx(-1.0)
        await clock.advance(31 * 86400.0)  # the predictions are pruned a month later
        await truth.prune()
        assert truth.report("sep").predictions_kept == 0
        corrected = dataclasses.replace(s2_result(0, 28.0), entry_time=clock.now())
        assert await truth.ingest([corrected]) == [Ingested.CORRECTION]
        (after,) = [r for r in await truth.store.residuals("sep") if r.sample_id == "S0"]
        assert (after.value, after.raw, after.predictions) == (28.0, before.raw, before.predictions)
        assert after.residual == pytest.approx(-2.0)
        assert truth.unmatched == 0
    finally:
        await truth.close()
