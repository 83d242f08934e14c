"""A loop's input windows (agent.control.predict.LoopInputs) with the cement objective:
the lab Blaine is compared with the analyser over the hour it describes, however late it
arrives within what the objective declared, and never with a partial hour."""

from __future__ import annotations

from agent.config.settings import Loop
from agent.control.predict import LoopInputs
from agent.domain.samples import Sample
from agent.objectives.cement_mill import LAB_DELAY_MAX_S, CementMill
from agent.objectives.registry import objective_for

T = 1_800_000_000.0  # the end of the hour the lab composite describes


def _loop() -> Loop:
    return Loop.model_validate({
        "name": "sep", "model": "m", "target_tag": "SP", "envelope_min": 0.0,
        "envelope_max": 1.0, "max_step": 0.1, "estimator_window_s": 1800.0,
        "strategy": "direct", "output": "y",
        "inputs": [{"feature": "product_fineness", "tag": "ProductFineness"},
                   {"feature": "lab_blaine", "tag": "LabBlaine"}],
    })  # fmt: skip


def _analyser(inputs: LoopInputs, start: float, end: float, value: float) -> None:
    """The analyser's samples every 60 s in (start, end]."""
    t = start + 60.0
    while t <= end:
        inputs.observe([Sample("ProductFineness", t, value)])
        t += 60.0


def _inputs() -> tuple[LoopInputs, CementMill]:
    objective = objective_for(_loop().objective)
    assert isinstance(objective, CementMill)
    return LoopInputs(_loop(), objective), objective


def test_a_lab_result_45_min_late_is_compared_with_the_hour_it_describes() -> None:
    inputs, objective = _inputs()
    _analyser(inputs, T - 3600.0, T, 3800.0)  # the hour the composite describes
    _analyser(inputs, T, T + 2700.0, 4100.0)  # the separator moved after the hour
    inputs.observe([Sample("LabBlaine", T, 3800.0)])  # published 45 min later
    bias = objective.derive("blaine_bias", {})
    assert (bias.value, bias.note) == (0.0, "1 lab results")  # the analyser matched the lab


def test_a_lab_result_later_than_the_kept_history_is_not_compared() -> None:
    inputs, objective = _inputs()
    _analyser(inputs, T - 3600.0, T, 3800.0)
    _analyser(inputs, T, T + LAB_DELAY_MAX_S + 600.0, 4100.0)  # the hour is no longer whole
    inputs.observe([Sample("LabBlaine", T, 3900.0)])
    assert objective.derive("blaine_bias", {}).value is None  # imputed, not a partial hour
