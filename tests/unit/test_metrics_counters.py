"""/metrics exposes every per-unit error counter a driver keeps, under one name each.

agent.api.metrics.UNIT_METRICS names the series of agent.domain.samples.ERROR_COUNTERS: the
two are written in two places, so they are checked against each other here.
"""

from __future__ import annotations

from agent.api.metrics import UNIT_METRICS
from agent.domain.samples import ERROR_COUNTERS


def test_every_error_counter_has_exactly_one_metric() -> None:
    assert sorted(UNIT_METRICS) == sorted(ERROR_COUNTERS)
    names = [name for name, _ in UNIT_METRICS.values()]
    assert len(set(names)) == len(names)
