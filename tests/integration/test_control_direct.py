"""A loop with strategy "direct" follows one model output; a log-model's NaN refuses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config.settings import Loop
from agent.control.predict import infer
from agent.domain.latest import LatestValues
from agent.objectives.registry import objective_for
from agent.packages.manifest import ModelRejectedError
from agent.packages.package import load_package
from tests.support.model_packages import B, W, linear_model, write_package


def _loop() -> Loop:
    return Loop(name="direct", model="vrm", strategy="direct", output="y1", target_tag="SP",
                envelope_min=0.0, envelope_max=100.0, max_step=1.0)  # fmt: skip


def test_direct_strategy_takes_the_named_output_as_the_target(tmp_path: Path) -> None:
    session = load_package(write_package(tmp_path, linear_model()), None)
    x = np.array([2.0, 3.0, 4.0, 5.0])
    loop = _loop()
    result = infer(loop, x, session, LatestValues({}), objective_for(loop.objective))
    expected = (x.astype(np.float32) @ W + B)[1]
    assert result.rows == 1 and result.candidates is None
    assert result.target == pytest.approx(float(expected), rel=1e-6)
    assert set(result.predicted) == {"y0", "y1", "y2"}


def test_direct_strategy_refuses_a_nan_output(tmp_path: Path) -> None:
    session = load_package(write_package(tmp_path, linear_model(log=True)), None)
    x = np.array([-9.0, -9.0, -9.0, -9.0])  # log of a negative number: NaN
    with pytest.raises(ModelRejectedError, match="NaN"):
        infer(_loop(), x, session, LatestValues({}), objective_for(_loop().objective))
