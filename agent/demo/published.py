"""How the simulated mill lays out its published tags: which tags it samples from the process,
which the lab publishes, each tag's slot, a tag's initial value, and the `Reading` type.

Owns: FAST_TAGS, LAB_TAGS, INDEX (tag -> slot in tags.ALL_TAGS order), `Reading` and
`initial_value`.
Must not: hold state or import the mill, the lab or the servers.
Invariants: INDEX covers every tag of tags.ALL_TAGS; FAST_TAGS follows the order of
dynamics.Process.measured() followed by the two effective setpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.demo.faults import Value
from agent.demo.tags import ALL_TAGS, Kind

__all__ = ["FAST_TAGS", "INDEX", "LAB_TAGS", "Reading", "initial_value"]

FAST_TAGS: tuple[str, ...] = (
    "FeedRate", "SeparatorSpeed", "WaterInjection", "FanSpeed", "LimestoneShare", "GypsumShare",
    "MillPower", "SeparatorPower", "BucketElevatorPower", "FanPower", "MillDifferentialPressure",
    "MillInletTemperature", "MillOutletTemperature", "Vibration",
    "FeedRateSetpointEffective", "SeparatorSpeedSetpointEffective",
)  # fmt: skip
"""Tags sampled every update_s from the process (order of Process.measured() + 2 effective SPs)."""
LAB_TAGS: tuple[str, ...] = (
    "ProductFineness", "LabBlaine", "LabResidue45", "LabClinkerC3S", "LabStrength2d",
    "LabStrength28d", "LabStrength7d",
)  # fmt: skip
"""Tags published by lab.Lab results (the analyser and the LIMS)."""
INDEX: dict[str, int] = {t.name: i for i, t in enumerate(ALL_TAGS)}


@dataclass(frozen=True)
class Reading:
    """One read of a tag: value (None only when status is Bad), status name, source time."""

    value: float | int | bool | None
    status: str
    source_time: float


def initial_value(kind: Kind, nominal: float) -> Value:
    """A tag's value before anything is published: its nominal, typed."""
    if kind is Kind.BOOLEAN:
        return bool(nominal)
    if kind is Kind.INT32:
        return int(nominal)
    return float(nominal)
