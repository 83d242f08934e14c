"""The drift faults of plant-model 4.3: each one's size at equal inputs, seen in the lab's
results, against an unfaulted mill of the same seed (noise-free)."""

from __future__ import annotations

import pytest

from agent.demo.lab_record import LabRecord
from agent.demo.mill import Mill
from agent.demo.tags import DAY, HOUR

DT = 60.0
SCALE = 1440.0  # 28 d + 6 h -> 28.25 min of plant time
FACTOR = {"s2": 0.5, "s7": 0.78, "s28": 1.0}


def mill() -> Mill:
    return Mill(2, noise=False, dt=DT, lab_time_scale=SCALE, wd_timeout_s=1e9)


def pair() -> tuple[Mill, Mill]:
    return mill(), mill()


def results(mill: Mill) -> dict[tuple[str, str], LabRecord]:
    return {(r.sample_id, r.test): r for r in mill.lab_results()}


def differences(base: Mill, faulted: Mill) -> dict[tuple[str, str], float]:
    a, b = results(base), results(faulted)
    assert a.keys() == b.keys() and len(a) > 20
    return {key: b[key].truth - a[key].truth for key in a}


@pytest.mark.parametrize(("kind", "mpa"), [("clinker_reactivity", None), ("clinker_reactivity",
                         -1.5), ("so3_optimum", None)])  # fmt: skip
def test_strength_drifts_move_each_age_by_its_share(kind: str, mpa: float | None) -> None:
    base, faulted = pair()
    if mpa is None:
        faulted.inject(kind)
    else:
        faulted.inject(kind, mpa=mpa)
    size = mpa if mpa is not None else {"clinker_reactivity": -2.5, "so3_optimum": -1.0}[kind]
    assert faulted.active_faults() == [(kind, None, {"mpa": size})]
    for m in (base, faulted):
        m.step(round(12 * HOUR / DT))
    diffs = differences(base, faulted)
    for (_, test), d in diffs.items():
        expected = size * FACTOR.get(test, 0.0)  # Blaine, residue and C3S do not move
        assert d == pytest.approx(expected, abs=1e-9), test
    assert {test for _, test in diffs} >= {"s2", "s7", "s28", "c3s", "blaine"}
    assert faulted.read("LabClinkerC3S") == base.read("LabClinkerC3S")  # the proxy stays
    faulted.clear(kind)
    for m in (base, faulted):
        m.step(round(5 * HOUR / DT))
    assert faulted.truth() == base.truth()


def test_table_wear_accumulates_from_injection_and_resets_when_cleared() -> None:
    base, faulted = pair()
    for m in (base, faulted):
        m.step(round(2 * HOUR / DT))
    t0 = faulted.time
    faulted.inject("table_wear")  # -0.05 MPa/day at equal Blaine
    for m in (base, faulted):
        m.step(round(3 * DAY / DT))
    a, b = results(base), results(faulted)
    checked = 0
    for key, r in b.items():
        if r.test not in FACTOR or r.window_start < t0:
            continue
        # mean wear over the window's ticks: rate x (days since injection), ticks at t0 + k dt
        days = (r.sample_time - t0 - r.window_s / 2 + DT / 2) / DAY
        expected = -0.05 * days * FACTOR[r.test]
        assert r.truth - a[key].truth == pytest.approx(expected, rel=1e-6), key
        assert b[("B-" + r.sample_id.removeprefix("S-"), "blaine")].truth == pytest.approx(
            a[("B-" + r.sample_id.removeprefix("S-"), "blaine")].truth
        )  # equal Blaine
        checked += 1
    assert checked >= 3 * 15
    last = max((r for r in b.values() if r.test == "s28"), key=lambda r: r.sample_time)
    assert last.truth - a[(last.sample_id, "s28")].truth < -0.1  # ~2.5 days of wear
    faulted.clear("table_wear")
    faulted.step(1)
    base.step(1)
    assert faulted.truth()["S28"] == pytest.approx(base.truth()["S28"], abs=1e-12)


def test_scale_drift_biases_the_limestone_share_the_physics_uses() -> None:
    base, faulted = pair()
    faulted.inject("scale_drift")  # the limestone scale reads 3 % high
    for m in (base, faulted):
        m.step(round(6 * HOUR / DT))
    truth, ref = faulted.truth(), base.truth()
    assert truth["LS"] == pytest.approx(12.0 / 1.03, rel=1e-9)  # what goes into the mill
    assert truth["LS_meas"] == pytest.approx(12.0, rel=1e-9)  # what the scale says
    assert faulted.read("LimestoneShare").value == pytest.approx(12.0, rel=1e-9)
    assert base.read("LimestoneShare").value == pytest.approx(12.0, rel=1e-9)
    assert faulted.read("LimestoneShareSetpoint") == base.read("LimestoneShareSetpoint")
    cf = (100.0 - 12.0 / 1.03 - 5.0) / 100.0
    assert truth["CF"] == pytest.approx(cf, rel=1e-9)
    assert truth["S28"] - ref["S28"] == pytest.approx(
        51.0 * (cf / 0.83 - 1.0) + 0.012 * (truth["B_eff"] - 3800.0), rel=1e-6
    )
    assert truth["S28"] > ref["S28"] + 0.2  # less limestone than the model is told
    assert truth["B"] < ref["B"] - 15.0  # and a coarser measured Blaine (-60 per % limestone)
    faulted.clear("scale_drift")
    for m in (base, faulted):
        m.step(round(2 * HOUR / DT))
    assert faulted.truth()["LS"] == pytest.approx(12.0, abs=1e-9)


def test_drift_faults_check_their_parameters() -> None:
    m = Mill(noise=False)
    with pytest.raises(ValueError, match="plant-wide"):
        m.inject("table_wear", "LabStrength28d")
    with pytest.raises(ValueError, match="unknown parameter 'delta'"):
        m.inject("clinker_reactivity", delta=-2.0)
    with pytest.raises(ValueError, match="'pct' must be in"):
        m.inject("scale_drift", pct=-60.0)
    m.inject("scale_drift", pct=-2.0)
    assert m.active_faults() == [("scale_drift", None, {"pct": -2.0})]
