"""The agent process's resident memory as /status, /metrics and `edge-agent status` show it.

Owns: `resident()`, this process's resident set size now and its peak, read from Linux /proc.
Must not: change the memory policy (agent.service.memory tunes the allocator and the
collector) or raise: without /proc both figures are None.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["resident"]


def resident() -> dict[str, int | None]:
    """This process's resident memory now and its peak, in bytes (None without Linux /proc)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {"rss_bytes": None, "peak_rss_bytes": None}
    kib = dict(re.findall(r"(?m)^(VmRSS|VmHWM):\s+(\d+) kB", text))
    rss, peak = kib.get("VmRSS"), kib.get("VmHWM")
    return {
        "rss_bytes": None if rss is None else int(rss) * 1024,
        "peak_rss_bytes": None if peak is None else int(peak) * 1024,
    }
