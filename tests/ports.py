"""A free TCP port on 127.0.0.1 for a peer that must be told its port before it starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now (another process may still take it first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
