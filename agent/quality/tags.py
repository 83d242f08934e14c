"""The tag path of lab results: the LIMS writes a value tag and (optionally) a sample-time tag
and a sample-id tag into the PLC/SCADA; this turns their samples into `LabResult`s
([[quality.tags]], plant-model 4.2).

Owns: `LabTags` (per configured lab tag: the recent Good samples of its value, sample-time and
sample-id tags and the sample time of its last result) and the pairing rule (`PAIR_S`).
Must not: do I/O, read a clock (the caller passes its monotonic time of receipt), or log.
Invariants (the pairing rule): only Good samples count; a value must be a finite number (not a
bool), a sample time a finite number (unix s, OPC UA DateTime arrives as one).
- Without `sample_time_tag`: a value sample whose source time is newer than the tag's last
  result is a result with sample time = that source time.
- With `sample_time_tag`: a sample-time sample whose value is newer than the tag's last result
  makes a result with the newest value sample whose source time lies within `PAIR_S` of the
  sample-time sample's source time (the two update together, in either order); when none has
  arrived and the sample-time sample was received more than `PAIR_S` ago (agent time), the
  value did not change (OPC UA does not notify an unchanged value): the latest value is used.
  Until then it waits. A value that changes under the same sample time (the LIMS rewrote it,
  or it arrived more than `PAIR_S` late, after the latest value was taken) is a correction of
  that result (same sample id, the new value), once `PAIR_S` passed without a new sample
  time: a value written just before its own sample time is never mistaken for a correction
  of the previous sample.
- The sample id is the newest sample-id sample within `PAIR_S` of the result's sample (after
  `PAIR_S` of waiting: the latest one) when `sample_id_tag` is set, else f"{tag}@{time:.0f}".
- One result per sample time: a result is made only when its sample time is newer than the
  last result of that tag (a restart may repeat the last one: the store sees a duplicate).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.config.quality_settings import LabTag
from agent.domain.samples import Quality, Sample
from agent.quality.results import LabResult

__all__ = ["PAIR_S", "LabTags"]

PAIR_S = 5.0
"""How far apart (s) the source times of a value and its sample time / sample id may be."""

_KEPT = 16

Seen = tuple[Sample, float]  # a sample and the agent's monotonic time of its receipt


def _number(sample: Sample) -> float | None:
    value = sample.value
    if sample.quality is not Quality.GOOD or isinstance(value, bool):
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _near(seen: deque[Seen], time: float) -> Seen | None:
    """The newest kept sample whose source time is within PAIR_S of `time`."""
    return next((s for s in reversed(seen) if abs(s[0].source_time - time) <= PAIR_S), None)


@dataclass(eq=False)
class _State:
    spec: LabTag
    product: str
    values: deque[Seen] = field(default_factory=lambda: deque(maxlen=_KEPT))
    times: deque[Seen] = field(default_factory=lambda: deque(maxlen=_KEPT))
    ids: deque[Seen] = field(default_factory=lambda: deque(maxlen=_KEPT))
    last: float | None = None  # sample time of the last result
    last_id: str = ""  # and its sample id, value and the value sample's source time
    last_value: float | None = None
    last_value_at: float = -math.inf


class LabTags:
    """The configured lab tags; feed it every batch, collect the results it completes."""

    def __init__(self, tags: Sequence[LabTag], default_product: str) -> None:
        self._states = [_State(t, t.product or default_product) for t in tags]
        self._by_tag: dict[str, list[tuple[str, _State]]] = {}
        for state in self._states:
            spec = state.spec
            for role, tag in (("value", spec.tag), ("time", spec.sample_time_tag),
                              ("id", spec.sample_id_tag)):  # fmt: skip
                if tag is not None:
                    self._by_tag.setdefault(tag, []).append((role, state))

    @property
    def tags(self) -> frozenset[str]:
        """Every tag the lab tags read (value, sample-time and sample-id tags)."""
        return frozenset(self._by_tag)

    def observe(self, batch: Sequence[Sample], received: float) -> list[LabResult]:
        """Take one driver batch (received at monotonic `received`); the results it completes."""
        touched: dict[int, _State] = {}
        for sample in batch:
            for role, state in self._by_tag.get(sample.tag, ()):
                if role == "id":
                    if sample.quality is Quality.GOOD and sample.value is not None:
                        state.ids.append((sample, received))
                elif _number(sample) is not None:
                    (state.values if role == "value" else state.times).append((sample, received))
                touched[id(state)] = state
        return [r for s in touched.values() for r in self._resolve(s, received)]

    def due(self, now: float) -> list[LabResult]:
        """The results whose waiting time is over at monotonic `now` (call every few s)."""
        return [r for s in self._states for r in self._resolve(s, now)]

    def _resolve(self, state: _State, now: float) -> list[LabResult]:
        if state.spec.sample_time_tag is None:
            return self._resolve_untimed(state, now)
        fresh = [s for s in state.times if (_number(s[0]) or 0.0) > (state.last or -math.inf)]
        if not fresh:
            return self._rewritten(state, now)
        time_seen = fresh[-1]
        sample_time = _number(time_seen[0])
        assert sample_time is not None
        waited = now - time_seen[1] > PAIR_S
        value_seen = _near(state.values, time_seen[0].source_time)
        if value_seen is None and waited and state.values:
            value_seen = state.values[-1]
        if value_seen is None:
            return []
        return self._result(state, value_seen, sample_time, time_seen[0].source_time, waited)

    def _rewritten(self, state: _State, now: float) -> list[LabResult]:
        """A value changed under the last result's sample time, PAIR_S ago: its correction."""
        if state.last is None or not state.values:
            return []
        seen = state.values[-1]
        value = _number(seen[0])
        if (seen[0].source_time <= state.last_value_at or now - seen[1] <= PAIR_S
                or value is None or value == state.last_value):  # fmt: skip
            return []
        state.last_value, state.last_value_at = value, seen[0].source_time
        return [self._make(state, seen[0], state.last_id, state.last, value)]

    def _resolve_untimed(self, state: _State, now: float) -> list[LabResult]:
        out: list[LabResult] = []
        for seen in list(state.values):
            if seen[0].source_time > (state.last or -math.inf):
                waited = now - seen[1] > PAIR_S
                made = self._result(state, seen, seen[0].source_time, seen[0].source_time, waited)
                if not made:
                    break  # waits for its sample id; later values wait behind it
                out.extend(made)
        return out

    def _result(self, state: _State, value_seen: Seen, sample_time: float, near: float,
                waited: bool) -> list[LabResult]:  # fmt: skip
        spec, sample = state.spec, value_seen[0]
        if spec.sample_id_tag is None:
            sample_id = f"{spec.tag}@{sample_time:.0f}"
        else:
            id_seen = _near(state.ids, near)
            if id_seen is None and waited and state.ids:
                id_seen = state.ids[-1]
            if id_seen is None:
                return []
            sample_id = str(id_seen[0].value)
        value = _number(sample)
        assert value is not None
        state.last, state.last_id = sample_time, sample_id
        state.last_value, state.last_value_at = value, sample.source_time
        return [self._make(state, sample, sample_id, sample_time, value)]

    @staticmethod
    def _make(state: _State, sample: Sample, sample_id: str, sample_time: float,
              value: float) -> LabResult:  # fmt: skip
        spec = state.spec
        entry = sample.server_time if sample.server_time is not None else sample.source_time
        return LabResult(
            sample_id=sample_id,
            sample_time=sample_time,
            window_s=spec.window_s,
            product=state.product,
            test=spec.test,
            value=value,
            unit=spec.unit,
            entry_time=entry,
            source=f"tag:{spec.tag}",
        )
