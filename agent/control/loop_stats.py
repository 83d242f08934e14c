"""What one control loop has done since the agent started, for /metrics, /status and the demo.

Owns: the in-memory counters of a loop (cycles, each gate's verdicts, cycle outcomes,
writes by result, inference durations) and a summary of its last cycle.
Must not: decide anything, do I/O or read a clock; the control loop fills it in, readers
only read it. The durable record of every cycle is the audit event in the buffer.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoopStats"]


@dataclass
class LoopStats:
    """Counters of one loop.

    state: "starting", "running", "off", or "stopped: <reason>" after a safety stop.
    verdicts: (gate, "pass" | "refuse") -> count, every gate of every cycle.
    outcomes: cycle outcome -> count: "write", "advise", "shadow", "hold", "blocked".
    writes: write result -> count: "ok", "rejected", "connection_lost", "readback_mismatch".
    inference_s: the latest inference durations in seconds (at most 1,000).
    last: the last cycle's summary (JSON-safe), as shown by /status and the demo.
    """

    name: str
    mode: str
    state: str = "starting"
    model_version: str | None = None
    cycles: int = 0
    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    inference_s: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    last: dict[str, Any] = field(default_factory=dict)
