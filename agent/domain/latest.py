"""The latest sample of every tag, in memory: what the control cycle and the status read.

Owns: one entry per tag with its newest sample, and per-source counts of samples received.
Must not: do I/O, hold history (the buffer does), or invent a value: a tag never seen has
no entry, and a Bad sample replaces a good one (the value is gone, not kept).
Invariants: `update` is O(batch) and never raises on a well-formed batch; a sample is only
replaced by a later one from the same tag in arrival order (drivers emit in order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.domain.samples import Sample


class LatestValues:
    """Newest sample per tag, fed by every driver's `emit`."""

    def __init__(self, tag_sources: Mapping[str, str]) -> None:
        self._source_of = dict(tag_sources)
        self._samples: dict[str, Sample] = {}
        self.received: dict[str, int] = dict.fromkeys(set(tag_sources.values()), 0)

    def update(self, batch: Sequence[Sample]) -> None:
        """Take one batch from a driver."""
        for sample in batch:
            self._samples[sample.tag] = sample
            source = self._source_of.get(sample.tag)
            if source is not None:
                self.received[source] += 1

    def get(self, tag: str) -> Sample | None:
        return self._samples.get(tag)

    def snapshot(self) -> dict[str, Sample]:
        """A copy: the caller may keep it while updates go on."""
        return dict(self._samples)
