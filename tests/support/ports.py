"""A free TCP port on 127.0.0.1 for a peer that must be told its port before it starts.

Owns: `free_port()`, a port the kernel handed out for 127.0.0.1 and released again.

Must not: be used where the peer can listen on port 0 and say which port it got (that is
race-free; this is for peers that read their port from a config file or a command line).

Invariants: the port was free when returned; nothing here holds it, so the peer binds it
soon after (the kernel does not hand the same ephemeral port out again at once).
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now (another process may still take it first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
