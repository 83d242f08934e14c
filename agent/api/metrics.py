"""Prometheus metrics of one agent, read from its components at scrape time.

Owns: the metric names, types, labels and help texts (all prefixed ``edge_agent_``, units in
the names; beside them prometheus_client's standard ``process_*`` family: resident memory,
CPU seconds, open files), one ``CollectorRegistry`` per app, and rendering it in the text
format 0.0.4 (the truth loop's families: agent.api.quality_metrics, registered here).
Must not: use the process-global default registry, keep or thread counters through the
code (every figure is read from the component that owns it when scraped, through the same
readers as ``agent.api.status``), change what it reads, or do I/O (the process collector
reads the process's own /proc/self).
Invariants: ``*_total`` families only ever grow while the process lives (they come from
counters that never decrease); a component not built (buffer, uploader) or a loop list that
is still empty gives no samples for its families, never an error; label values are the
configured names, so cardinality is bounded by the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from importlib.metadata import version

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from agent.api.quality_metrics import QualityCollector
from agent.api.quality_status import QualityView
from agent.api.source_status import source_health
from agent.api.status import StatusSource, quantiles, readiness
from agent.buffer.buffer import OutageBudget
from agent.domain.samples import ERROR_COUNTERS, DriverState

__all__ = ["CONTENT_TYPE", "AgentCollector", "new_registry", "render"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNIT_METRICS: dict[str, tuple[str, str]] = {  # per ERROR_COUNTERS key: metric name, help
    "requests": ("requests", "Modbus requests sent (reads and writes)."),
    "exceptions": ("exceptions", "Modbus exception responses."),
    "timeouts": ("timeouts", "Modbus requests without an answer within timeout_s."),
    "garbled": ("garbled_answers", "Modbus answers that cannot answer their request "
                "(undecodable, another function code, the wrong size)."),
}  # fmt: skip
"""How each of the driver's `ERROR_COUNTERS` is exposed (a source with units: Modbus). The
series follow `ERROR_COUNTERS` itself: a counter missing here fails the first scrape and
tests/unit/test_metrics_counters.py."""


class AgentCollector(Collector):
    """A custom collector over one running agent (an ``agent.service.app.App``)."""

    def __init__(self, app: StatusSource) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        yield from self._agent()
        yield from self._drivers()
        yield from self._modbus()
        yield from self._buffer()
        yield from self._uploader()
        yield from self._loops()

    def _agent(self) -> Iterator[Metric]:
        app = self._app
        info = InfoMetricFamily("edge_agent", "The running agent.", labels=["agent_id", "version"])
        info.add_metric([app.loaded.settings.agent.id, version("edge-agent")], {})
        yield info
        yield GaugeMetricFamily(
            "edge_agent_uptime_seconds",
            "Seconds since the agent started.",
            value=max(0.0, app.clock.now() - app.started),
        )
        yield GaugeMetricFamily(
            "edge_agent_ready", "1 when the agent is ready (readyz).", value=readiness(app)[0]
        )
        stalled = app.health.stalled(app.clock.monotonic())
        yield GaugeMetricFamily(
            "edge_agent_stalled_loops",
            "Critical watched loops silent for longer than allowed (healthz fails above 0).",
            value=len(stalled),
        )
        models = getattr(app, "active_models", None)
        if isinstance(models, dict) and models:
            model = InfoMetricFamily("edge_agent_model", "Active models.", labels=["model"])
            for name, ver in sorted(models.items()):
                model.add_metric([str(name)], {"version": "" if ver is None else str(ver)})
            yield model

    def _drivers(self) -> Iterator[Metric]:
        labels = ["source"]
        connected = GaugeMetricFamily(
            "edge_agent_driver_connected", "1 while the source is connected.", labels=labels
        )
        state = GaugeMetricFamily(
            "edge_agent_driver_state",
            "1 for the source's current state, 0 for the others.",
            labels=["source", "state"],
        )
        samples = CounterMetricFamily(
            "edge_agent_samples", "Samples the source's driver emitted.", labels=labels
        )
        reconnects = CounterMetricFamily(
            "edge_agent_reconnects",
            "Successful connections to the source after the first one.",
            labels=labels,
        )
        degraded = GaugeMetricFamily(
            "edge_agent_driver_degraded",
            "1 while the source is connected but some of its tags are Bad or Uncertain.",
            labels=labels,
        )
        tags = GaugeMetricFamily(
            "edge_agent_driver_tags",
            "The source's tags by the quality of their latest sample (waiting: none yet).",
            labels=["source", "quality"],
        )
        for driver in self._app.drivers:
            f = driver.figures()
            connected.add_metric([f.name], float(f.state == DriverState.CONNECTED))
            for s in DriverState:
                state.add_metric([f.name, str(s)], float(f.state == s))
            samples.add_metric([f.name], f.samples)
            reconnects.add_metric([f.name], f.reconnects)
            degraded.add_metric([f.name], float(source_health(f)[0] == "degraded"))
            if (t := f.tags) is not None:
                for quality, count in (("good", t.good), ("uncertain", t.uncertain),
                                       ("bad", t.bad), ("waiting", t.waiting)):  # fmt: skip
                    tags.add_metric([f.name, quality], count)
        yield from (connected, state, samples, reconnects, degraded, tags)

    def _modbus(self) -> Iterator[Metric]:
        families = {
            key: CounterMetricFamily(
                f"edge_agent_modbus_{UNIT_METRICS[key][0]}", UNIT_METRICS[key][1],
                labels=["source", "unit"],
            )
            for key in ERROR_COUNTERS
        }  # fmt: skip
        for driver in self._app.drivers:
            f = driver.figures()
            for unit, counters in sorted((f.units or {}).items()):
                for key, family in families.items():
                    family.add_metric([f.name, str(unit)], counters[key])
        yield from families.values()

    def _buffer(self) -> Iterator[Metric]:
        buffer = self._app.buffer
        if buffer is None:
            return
        b = buffer.budget()
        yield GaugeMetricFamily(
            "edge_agent_buffer_bytes", "Bytes in use in the buffer file.", value=b.bytes_used
        )
        yield GaugeMetricFamily(
            "edge_agent_buffer_max_bytes", "The buffer's byte cap.", value=b.max_bytes
        )
        yield GaugeMetricFamily(
            "edge_agent_buffer_blocks_pending",
            "Blocks not yet acknowledged.",
            value=b.blocks_pending,
        )
        yield GaugeMetricFamily(
            "edge_agent_buffer_samples_pending",
            "Samples in blocks not yet acknowledged.",
            value=b.samples_pending,
        )
        yield GaugeMetricFamily(
            "edge_agent_buffer_oldest_unsent_seconds",
            "Age of the oldest unsent block (0 when all are sent).",
            value=b.oldest_unsent_age_s or 0.0,
        )
        yield GaugeMetricFamily(
            "edge_agent_buffer_fill_rate_bytes_per_hour",
            "Rate at which the buffer grows.",
            value=b.bytes_per_hour,
        )
        yield GaugeMetricFamily(
            "edge_agent_buffer_hours_left",
            "Hours until the cap starts evicting at the current rate (+Inf: nothing is put).",
            value=math.inf if b.hours_left is None else b.hours_left,
        )
        evictions = CounterMetricFamily(
            "edge_agent_buffer_evictions",
            "Blocks removed unsent, by reason, since the store was created.",
            labels=["reason"],
        )
        for reason, count in sorted(b.evictions.items()):
            evictions.add_metric([reason], count)
        yield evictions
        yield CounterMetricFamily(
            "edge_agent_buffer_quarantined",
            "Blocks the receiver refused, kept but never offered again.",
            value=b.quarantined,
        )
        yield from _buffer_losses(b)

    def _uploader(self) -> Iterator[Metric]:
        uploader = self._app.uploader
        if uploader is None:
            return
        s = uploader.stats()
        for name, value, doc in (
            ("edge_agent_upload_blocks", s.blocks_sent, "Block requests started."),
            ("edge_agent_upload_bytes", s.bytes_sent, "Block bytes sent."),
            ("edge_agent_upload_acks", s.acks, "Blocks the receiver acknowledged."),
            ("edge_agent_upload_duplicates", s.duplicates, "Acks for blocks already stored."),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        errors = CounterMetricFamily(
            "edge_agent_upload_errors",
            "Failed block requests: retry (network, 408/429/5xx) or quarantine (other 4xx).",
            labels=["verdict"],
        )
        errors.add_metric(["retry"], s.retries)
        errors.add_metric(["quarantine"], s.quarantined)
        yield errors
        yield SummaryMetricFamily(
            "edge_agent_upload_latency_seconds",
            "Duration of acknowledged block requests.",
            count_value=s.acks,
            sum_value=s.latency_sum_s,
        )
        yield GaugeMetricFamily(
            "edge_agent_upload_in_flight", "Block requests in flight.", value=s.in_flight
        )
        yield GaugeMetricFamily(
            "edge_agent_upload_consecutive_failures",
            "Failures since the last success (0 when healthy).",
            value=s.consecutive_failures,
        )
        p = uploader.progress()
        yield GaugeMetricFamily(
            "edge_agent_upload_draining", "1 while a backlog drains.", value=p.draining
        )
        if p.eta_s is not None:
            yield GaugeMetricFamily(
                "edge_agent_upload_drain_eta_seconds",
                "Estimated time until the backlog is drained.",
                value=p.eta_s,
            )

    def _loops(self) -> Iterator[Metric]:
        info = InfoMetricFamily("edge_agent_loop", "Control loops.", labels=["loop"])
        cycles = CounterMetricFamily("edge_agent_loop_cycles", "Cycles run.", labels=["loop"])
        verdicts = CounterMetricFamily(
            "edge_agent_loop_verdicts",
            "Gate verdicts (pass | refuse) of every cycle.",
            labels=["loop", "gate", "verdict"],
        )
        outcomes = CounterMetricFamily(
            "edge_agent_loop_outcomes", "Cycle outcomes.", labels=["loop", "outcome"]
        )
        writes = CounterMetricFamily(
            "edge_agent_loop_writes", "Setpoint writes by result.", labels=["loop", "result"]
        )
        inference = Metric(
            "edge_agent_inference_seconds",
            "Inference duration quantiles over the loop's latest (at most 1000) inferences.",
            "summary",
        )
        for stats in self._app.loop_stats:
            loop = stats.name
            info.add_metric(
                [loop],
                {"mode": stats.mode, "state": stats.state, "model": stats.model_version or ""},
            )
            cycles.add_metric([loop], stats.cycles)
            for (gate, verdict), count in sorted(stats.verdicts.items()):
                verdicts.add_metric([loop, gate, verdict], count)
            for outcome, count in sorted(stats.outcomes.items()):
                outcomes.add_metric([loop, outcome], count)
            for result, count in sorted(stats.writes.items()):
                writes.add_metric([loop, result], count)
            for q, value in quantiles(list(stats.inference_s)):
                inference.add_sample(
                    "edge_agent_inference_seconds", {"loop": loop, "quantile": f"{q:g}"}, value
                )
        yield from (info, cycles, verdicts, outcomes, writes, inference)


_DROP_REASONS = ("buffer_full", "disk_full", "oversized")


def _buffer_losses(b: OutageBudget) -> Iterator[Metric]:
    """What the buffer could not keep, and whether its disk is full now."""
    dropped = CounterMetricFamily(
        "edge_agent_buffer_dropped_samples",
        "Samples that could not be stored at all, by reason, since the agent started.",
        labels=["reason"],
    )
    for reason in sorted({*_DROP_REASONS, *b.dropped_samples}):
        dropped.add_metric([reason], b.dropped_samples.get(reason, 0))
    yield dropped
    yield GaugeMetricFamily(
        "edge_agent_buffer_disk_full",
        "1 while the disk rather than the cap limits the buffer (it evicts early or drops).",
        value=b.disk_full,
    )
    if b.disk_free_bytes is not None:
        yield GaugeMetricFamily(
            "edge_agent_buffer_disk_free_bytes",
            "Free space on the buffer's filesystem at the last put.",
            value=b.disk_free_bytes,
        )


def new_registry(app: StatusSource, quality: QualityView | None = None) -> CollectorRegistry:
    """A registry of its own for ``app`` (never the global one), with the truth loop's
    families when ``quality`` is given."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(app))
    if quality is not None:
        registry.register(QualityCollector(app, quality))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, _cpu_seconds, fds
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format 0.0.4 (``CONTENT_TYPE``)."""
    return generate_latest(registry)
