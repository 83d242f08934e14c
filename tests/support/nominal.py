"""The demo mill at its design point, as the agent reads it, for tests that feed the loops
samples directly (no server): tag -> value, and the reason a restored safety stop gives.

Owns: `NOMINAL` (every tag the demo loops read or write, at the design point of
plant-model.md section 2) and `RESTORED` (the verdict text of a loop holding a stop it
took over from audit.db), written here once, independently of the agent's own constant.
"""

from __future__ import annotations

RESTORED = "safety stop before the restart; waiting for the PLC to go local"
NOMINAL = {
    "SeparatorSpeed": 950.0, "FeedRate": 180.0, "LimestoneShare": 12.0, "GypsumShare": 5.0,
    "GrindingAidSetpoint": 400.0, "FanSpeed": 85.0, "WaterInjection": 2.0,
    "LabClinkerC3S": 60.0, "MillPower": 3240.0, "ProductFineness": 3800.0,
    "LabBlaine": 3800.0, "SeparatorSpeedSetpointEffective": 950.0,
    "LimestoneShareSetpoint": 12.0, "RemoteActive": True,
}  # fmt: skip
