"""Prometheus metrics of the truth loop: each loop's model against the lab (issue 14).

Owns: the ``edge_agent_quality_*`` families and ``edge_agent_loop_stepped_down``, their labels
and help texts, read from the truth loop's report of each running loop at scrape time
(``QualityCollector``, registered beside agent.api.metrics' collector when the agent has a
truth loop).
Must not: keep figures of its own, change what it reads, do I/O, or judge anything (the report
carries the verdicts, the same one /status shows: agent.api.quality_status).
Invariants: labels are the configured loop names, the roles "active" and "challenger", and the
configured tests and model outputs, so cardinality is bounded by the configuration; a figure
over no results (n = 0) and a missing declared RMSE give no sample, never a 0;
``edge_agent_loop_stepped_down`` has one sample per running loop, 1 while stepped down.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.api.quality_status import QualityView
from agent.api.status import StatusSource

__all__ = ["QualityCollector"]

_TEST = ["loop", "role", "test"]


class QualityCollector(Collector):
    """The truth loop's figures per running loop (``app.loop_stats``) and test."""

    def __init__(self, app: StatusSource, quality: QualityView) -> None:
        self._app, self._quality = app, quality

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        bias = gauge("edge_agent_quality_bias",
                     "EWMA of lab - prediction as used (corrected), over the judged results.",
                     _TEST)  # fmt: skip
        raw_bias = gauge(
            "edge_agent_quality_raw_bias",
            "EWMA of lab - raw prediction (before the correction).",
            _TEST,
        )
        rmse = gauge("edge_agent_quality_rmse",
                     "RMSE of lab - prediction as used, over the judged (last N) results.",
                     _TEST)  # fmt: skip
        declared = gauge(
            "edge_agent_quality_declared_rmse",
            "The validation RMSE the model package declares for the test.",
            _TEST,
        )
        matched = gauge("edge_agent_quality_results_matched",
                        "Lab results matched to predictions and judged (at most the last N).",
                        _TEST)  # fmt: skip
        degraded = gauge(
            "edge_agent_quality_degraded",
            "1 while the model is judged degraded on the test.",
            _TEST,
        )
        offset = gauge("edge_agent_quality_offset",
                       "The bias correction in force, added to the raw prediction of output.",
                       ["loop", "output"])  # fmt: skip
        stepped = gauge("edge_agent_loop_stepped_down",
                        "1 while the loop is stepped down to advisory (its model degraded); "
                        "an operator steps it back up.", ["loop"])  # fmt: skip
        for stats in self._app.loop_stats:
            report = self._quality.report(stats.name)
            stepped.add_metric([stats.name], float(report.step_down is not None))
            for output, value in sorted(report.offsets.items()):
                if math.isfinite(value):
                    offset.add_metric([stats.name, output], value)
            for h in (*report.tests, *report.challenger):
                labels = [stats.name, h.role, h.test]
                matched.add_metric(labels, h.n)
                degraded.add_metric(labels, float(h.degraded))
                if h.declared_rmse is not None and math.isfinite(h.declared_rmse):
                    declared.add_metric(labels, h.declared_rmse)
                if h.n > 0:
                    for family, value in ((bias, h.bias), (raw_bias, h.raw_bias),
                                          (rmse, h.rmse)):  # fmt: skip
                        if math.isfinite(value):
                            family.add_metric(labels, value)
        yield from (bias, raw_bias, rmse, declared, matched, degraded, offset, stepped)
