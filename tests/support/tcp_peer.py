"""The listener and connection bookkeeping of the plain-asyncio peers the tests talk to.

Owns: `TcpPeer`, a base for a test server written with plain asyncio (not the library the
agent uses, so the agent meets bytes our own stack did not make): a listener on 127.0.0.1
on a free port, the connections and handler tasks it holds, and the `async with` that opens
and closes it.
Must not: decide what a peer answers (subclasses do, in `_serve`).
Invariants: a subclass's `_serve` calls `self._handling()` first and registers each stream
writer it opens in `self._open` (and discards it when closed); leaving the `async with`
stops listening, closes every connection still open and waits for every handler to end.
"""

from __future__ import annotations

import asyncio
from typing import Self


class TcpPeer:
    """`async with Peer(...) as peer:` listens on 127.0.0.1, `peer.port`."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop listening and close every connection (its handler then ends by itself)."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await asyncio.gather(*self._handlers)

    def _handling(self) -> None:
        """Count the calling connection handler among those `__aexit__` waits for."""
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
