"""The simulated mill's tag table: names, units, ranges, noise, update periods and roles.

Owns: the static description of every tag the simulated PLC publishes (plant-model.md 1.2),
shared by the mill dynamics, the OPC UA server and the Modbus server.
Must not: hold state or import anything from the servers.
Invariants: names are unique; every writable tag has a hard range; the handshake tags
follow the process tags in a fixed order so addresses derived from the order are stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """The OPC UA data type a tag is published with."""

    DOUBLE = "Double"
    INT32 = "Int32"
    BOOLEAN = "Boolean"


class Role(StrEnum):
    """What the tag means to the process engineer."""

    MV = "MV"
    PV = "PV"
    DV = "DV"
    CV = "CV"
    Q = "Q"
    HANDSHAKE = "handshake"
    STATUS = "status"
    HMI = "HMI"


@dataclass(frozen=True)
class TagSpec:
    """One published tag. Ranges are (low, high) in the tag's engineering unit."""

    name: str
    unit: str
    nominal: float
    normal: tuple[float, float]
    hard: tuple[float, float]
    noise_sigma: float
    update_s: float | None  # None: changes on write / on event only
    writable: bool
    role: Role
    kind: Kind = Kind.DOUBLE
    description: str = ""


def _mv(
    name: str,
    unit: str,
    nominal: float,
    normal: tuple[float, float],
    hard: tuple[float, float],
    desc: str,
) -> TagSpec:
    return TagSpec(name, unit, nominal, normal, hard, 0.0, None, True, Role.MV, Kind.DOUBLE, desc)


def _meas(
    name: str,
    unit: str,
    nominal: float,
    rng: tuple[float, float],
    sigma: float,
    update_s: float,
    role: Role,
    desc: str,
) -> TagSpec:
    return TagSpec(name, unit, nominal, rng, rng, sigma, update_s, False, role, Kind.DOUBLE, desc)


HOUR = 3600.0
DAY = 86400.0

PROCESS_TAGS: tuple[TagSpec, ...] = (
    _mv("FeedRateSetpoint", "t/h", 180.0, (150, 210), (0, 300), "Total fresh feed setpoint"),
    _mv("SeparatorSpeedSetpoint", "rpm", 950.0, (850, 1100), (0, 1500), "Separator speed setpoint"),
    _mv("WaterInjectionSetpoint", "m3/h", 2.0, (1, 4), (0, 10), "Bed water injection setpoint"),
    _mv("FanSpeedSetpoint", "%", 85.0, (75, 95), (0, 100), "Mill fan speed setpoint"),
    _mv("GrindingAidSetpoint", "g/t", 400.0, (200, 600), (0, 1000), "Grinding aid dosage setpoint"),
    _mv("LimestoneShareSetpoint", "%", 12.0, (8, 18), (0, 40), "Limestone share setpoint (recipe)"),
    _meas("FeedRate", "t/h", 180.0, (0, 300), 0.8, 0.1, Role.PV, "Fresh feed rate"),
    _meas("SeparatorSpeed", "rpm", 950.0, (0, 1500), 1.5, 0.1, Role.PV, "Separator speed"),
    _meas("WaterInjection", "m3/h", 2.0, (0, 10), 0.02, 0.3, Role.PV, "Water injection"),
    _meas("FanSpeed", "%", 85.0, (0, 100), 0.1, 0.25, Role.PV, "Mill fan speed"),
    _meas("LimestoneShare", "%", 12.0, (0, 40), 0.1, 1.0, Role.PV, "Limestone share"),
    _meas("GypsumShare", "%", 5.0, (3, 6), 0.05, 1.0, Role.DV, "Gypsum share (fixed recipe)"),
    _meas("MillPower", "kW", 3240.0, (0, 4000), 15.0, 0.2, Role.CV, "Mill main drive power"),
    _meas("SeparatorPower", "kW", 121.0, (0, 250), 1.0, 0.2, Role.CV, "Separator drive power"),
    _meas("BucketElevatorPower", "kW", 76.0, (0, 160), 1.0, 0.5, Role.CV, "Bucket elevator power"),
    _meas("FanPower", "kW", 1483.0, (0, 2200), 8.0, 0.25, Role.CV, "Mill fan power"),
    _meas(
        "MillDifferentialPressure",
        "mbar",
        41.6,
        (0, 80),
        0.4,
        0.2,
        Role.CV,
        "Mill differential pressure (alarm 55, trip 70)",
    ),
    _meas(
        "MillInletTemperature",
        "degC",
        210.0,
        (150, 300),
        0.3,
        0.5,
        Role.DV,
        "Hot gas inlet temperature",
    ),
    _meas(
        "MillOutletTemperature",
        "degC",
        95.0,
        (80, 110),
        0.2,
        0.5,
        Role.CV,
        "Mill outlet temperature",
    ),
    _meas("Vibration", "mm/s", 2.0, (0, 15), 0.2, 0.1, Role.CV, "Mill vibration (alarm 5, trip 8)"),
    _meas(
        "ProductFineness",
        "cm2/g",
        3800.0,
        (3000, 5000),
        30.0,
        60.0,
        Role.CV,
        "Online analyser Blaine, 3 min delay",
    ),
    _meas(
        "LabBlaine",
        "cm2/g",
        3800.0,
        (3000, 5000),
        40.0,
        HOUR,
        Role.Q,
        "Hourly composite Blaine, +45 min",
    ),
    _meas("LabResidue45", "%", 4.0, (0, 15), 0.3, HOUR, Role.Q, "Hourly residue on 45 um, +45 min"),
    _meas(
        "LabClinkerC3S",
        "%",
        60.0,
        (50, 70),
        1.5,
        2 * HOUR,
        Role.DV,
        "Clinker C3S, 2-hourly, +30 min",
    ),
    _meas(
        "LabStrength2d",
        "MPa",
        25.5,
        (15, 40),
        0.8,
        4 * HOUR,
        Role.Q,
        "4-hourly composite 2-day strength, +2 d + 2-6 h",
    ),
    _meas(
        "LabStrength28d",
        "MPa",
        51.0,
        (35, 65),
        1.2,
        4 * HOUR,
        Role.Q,
        "4-hourly composite 28-day strength, +28 d + 2-6 h",
    ),
)

HANDSHAKE_TAGS: tuple[TagSpec, ...] = (
    TagSpec(
        "Heartbeat",
        "",
        0,
        (-(2**31), 2**31 - 1),
        (-(2**31), 2**31 - 1),
        0.0,
        None,
        True,
        Role.HANDSHAKE,
        Kind.INT32,
        "Agent heartbeat counter, +1 every second",
    ),
    TagSpec(
        "HeartbeatEcho",
        "",
        0,
        (-(2**31), 2**31 - 1),
        (-(2**31), 2**31 - 1),
        0.0,
        None,
        False,
        Role.HANDSHAKE,
        Kind.INT32,
        "Last heartbeat the PLC saw",
    ),
    TagSpec(
        "RemoteEnable",
        "",
        1,
        (0, 1),
        (0, 1),
        0.0,
        None,
        False,
        Role.STATUS,
        Kind.BOOLEAN,
        "Operator permits remote setpoints",
    ),
    TagSpec(
        "RemoteActive",
        "",
        1,
        (0, 1),
        (0, 1),
        0.0,
        None,
        False,
        Role.STATUS,
        Kind.BOOLEAN,
        "RemoteEnable and not WatchdogFault and Running",
    ),
    TagSpec(
        "WatchdogFault",
        "",
        0,
        (0, 1),
        (0, 1),
        0.0,
        None,
        False,
        Role.STATUS,
        Kind.BOOLEAN,
        "Latched heartbeat timeout; cleared by the operator re-enabling remote",
    ),
    TagSpec(
        "Running",
        "",
        1,
        (0, 1),
        (0, 1),
        0.0,
        None,
        False,
        Role.STATUS,
        Kind.BOOLEAN,
        "Mill in operation (false after a trip)",
    ),
    TagSpec(
        "FeedRateSetpointEffective",
        "t/h",
        180.0,
        (0, 300),
        (0, 300),
        0.0,
        0.1,
        False,
        Role.STATUS,
        Kind.DOUBLE,
        "Feed setpoint in force after selection, clamp, ramp",
    ),
    TagSpec(
        "SeparatorSpeedSetpointEffective",
        "rpm",
        950.0,
        (0, 1500),
        (0, 1500),
        0.0,
        0.1,
        False,
        Role.STATUS,
        Kind.DOUBLE,
        "Separator setpoint in force after selection, clamp, ramp",
    ),
)

_BIG = (-1e9, 1e9)
_ID = (0, 2**31 - 1)
HMI_TAGS: tuple[TagSpec, ...] = (
    TagSpec("AdviceValue", "", 0.0, _BIG, _BIG, 0.0, None, True, Role.HMI, Kind.DOUBLE,
            "The agent's suggested setpoint, shown on the operator's screen"),
    TagSpec("AdviceId", "", 0, _ID, _ID, 0.0, None, True, Role.HMI, Kind.INT32,
            "The suggestion's id; the operator accepts it by writing it to AdviceAck"),
    TagSpec("AdviceEffect", "MPa", 0.0, _BIG, _BIG, 0.0, None, True, Role.HMI, Kind.DOUBLE,
            "Predicted 28-day strength if the suggestion is applied"),
    TagSpec("AdviceAck", "", 0, _ID, _ID, 0.0, None, False, Role.HMI, Kind.INT32,
            "The id of the suggestion the operator accepted (written at the HMI)"),
)  # fmt: skip
"""Advisory mode: the operator's screen (written by the agent, acknowledged by the operator)."""

LAB_RESULT_TAGS: tuple[str, ...] = (
    "LabBlaine", "LabResidue45", "LabClinkerC3S", "LabStrength2d", "LabStrength7d",
    "LabStrength28d",
)  # fmt: skip
"""Tags the LIMS writes with one lab result each; each has a `<tag>SampleTime` companion."""
_TS = (0.0, 4.3e9)
LIMS_TAGS: tuple[TagSpec, ...] = (
    _meas("LabStrength7d", "MPa", 39.8, (25, 55), 1.0, 4 * HOUR, Role.Q,
          "4-hourly composite 7-day strength, +7 d + 2-6 h"),
    *(
        TagSpec(f"{name}SampleTime", "s", 0.0, _TS, _TS, 0.0, None, False, Role.Q,
                Kind.DOUBLE, f"Sample time of {name}: unix seconds (UTC) of its window's end")
        for name in LAB_RESULT_TAGS
    ),
)  # fmt: skip
"""Issue 14: the 7-day strength and the LIMS's sample-time tags (plant-model 4.2), after the
HMI tags so the older tags keep their order."""

PRODUCT_TAGS: tuple[TagSpec, ...] = (
    TagSpec("ProductId", "", 2, _ID, _ID, 0.0, None, False, Role.STATUS, Kind.INT32,
            "The product (cement type) being ground: its recipe id (agent.demo.products)"),
    TagSpec("SiloId", "", 2, _ID, _ID, 0.0, None, False, Role.STATUS, Kind.INT32,
            "The silo the mill's product is sent to"),
)  # fmt: skip
"""Issue 15: the product change (plant-model 4.1), set by the operator or the recipe system;
source time = the time of the change. Last, so every older tag keeps its order."""

ALL_TAGS: tuple[TagSpec, ...] = PROCESS_TAGS + HANDSHAKE_TAGS + HMI_TAGS + LIMS_TAGS + PRODUCT_TAGS
BY_NAME: dict[str, TagSpec] = {t.name: t for t in ALL_TAGS}

NAMESPACE_URI = "urn:edge-agent:demo:cement-mill"
"""The OPC UA namespace URI the simulated PLC publishes its tags under."""
