"""Feature windows, the cement objective's estimators and where every model input comes from."""

from __future__ import annotations

import math

from agent.config.settings import CementMillObjective
from agent.control.features import Window, build_features
from agent.objectives.cement_mill import BlaineBias, CementMill, grindability


def test_window_keeps_only_its_span_and_ignores_repeats_and_non_finite() -> None:
    w = Window(keep_s=10.0)
    for t in range(20):
        w.add(float(t), float(t))
    w.add(19.0, 100.0)  # the same sample again (a resubscription)
    w.add(20.0, math.nan)
    assert [t for t, _ in w.points] == [float(t) for t in range(9, 20)]
    assert w.mean(15.0) == (15 + 16 + 17 + 18 + 19) / 5
    assert w.mean(100.0) is None
    assert w.last(3) == [17.0, 18.0, 19.0]


def test_a_clock_going_back_starts_the_window_afresh() -> None:
    w = Window(keep_s=10.0)
    w.add(5.0, 1.0)
    w.add(3.0, 2.0)
    assert list(w.points) == [(3.0, 2.0)]


def test_grindability_is_one_at_the_design_point() -> None:
    assert math.isclose(grindability(18.0 * 180.0, 180.0, 3800.0), 1.0)


def test_blaine_bias_updates_once_per_lab_result() -> None:
    bias = BlaineBias()
    assert bias.update(100.0, 3850.0, 3800.0) and bias.value == 50.0
    assert not bias.update(100.0, 4000.0, 3800.0)  # the same result delivered again
    assert bias.update(200.0, 3800.0, 3800.0)
    assert math.isclose(bias.value, 0.8 * 50.0)


def test_every_feature_says_where_it_came_from() -> None:
    names = ["separator_speed", "fan_speed", "grindability", "blaine_bias"]
    objective = CementMill(CementMillObjective())
    estimator_means = {"mill_power": 3240.0, "feed_rate": 180.0, "product_fineness": 3800.0}
    features = build_features(
        names,
        usable={"separator_speed": 951.0, "fan_speed": None},
        means={"separator_speed": 950.0, "fan_speed": 85.0, "grindability": 1.0,
               "blaine_bias": 0.43},
        derived={name: objective.derive(name, estimator_means) for name in objective.derived},
    )  # fmt: skip
    got = {f.name: (f.origin, round(f.value, 3)) for f in features}
    assert got == {
        "separator_speed": ("measured", 951.0),
        "fan_speed": ("imputed", 85.0),
        "grindability": ("derived", 1.0),
        "blaine_bias": ("imputed", 0.43),  # no lab result yet: the training mean, said so
    }
    assert next(f for f in features if f.name == "blaine_bias").note == "no lab result yet"
