"""A TCP proxy in front of an OPC UA server that says goodbye the way other servers do.

asyncua's server just closes its sockets when it stops. open62541 servers and PLCs say
goodbye first: an ERR message (OPC UA Part 6, 7.1.2.4) with a status such as BadShutdown,
or a ServiceFault answering the client's pending Publish requests with BadSessionClosed.
This proxy forwards every byte between the client and an asyncua server, chunk by chunk,
and when the server closes the connection (it was stopped) it sends the client that
goodbye before closing: so a restart of the in-process asyncua server behind it is, on the
wire, the restart of one of those servers. Security policy None only (it reads the chunk
headers: channel id, token id, sequence number, request id, the request's type and handle).

Owns: the proxy (its listener on 127.0.0.1, one pair of connections per client) and the
goodbye it sends when the server side closes.

Must not: change, reorder or hold back a byte while both sides are up, or decrypt anything
(security policy None only).

Invariants: the client sees the server's bytes in order, then (once the server closed)
the goodbye, then the close; closing the proxy closes every connection it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import struct
from typing import Literal

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import nodeid_from_binary, struct_to_binary

from tests.support.tcp_peer import TcpPeer

Goodbye = Literal["err", "service_fault"]
_FAULT = struct.pack("<BBH", 1, 0, ObjectIds.ServiceFault_Encoding_DefaultBinary)  # 4-byte id


async def _chunk(reader: asyncio.StreamReader) -> bytes | None:
    """The next complete chunk (or Hello/Acknowledge message) from `reader`; None at the end."""
    try:
        header = await reader.readexactly(8)
        size = struct.unpack_from("<I", header, 4)[0]
        return header + await reader.readexactly(size - 8)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class _Connection:
    """One client connection and what the proxy knows of its secure channel."""

    def __init__(self) -> None:
        self.channel = self.token = self.sequence = 0
        self.pending: dict[int, int] = {}  # Publish request id -> request handle
        self.published = asyncio.Event()  # set while a Publish request is pending
        self.client_left = False

    def from_client(self, chunk: bytes) -> None:
        if chunk[:3] != b"MSG":
            return
        request_id = struct.unpack_from("<I", chunk, 20)[0]
        body = Buffer(chunk[24:])
        if nodeid_from_binary(body).Identifier == ObjectIds.PublishRequest_Encoding_DefaultBinary:
            nodeid_from_binary(body)  # the authentication token
            body.read(8)  # the timestamp
            self.pending[request_id] = struct.unpack("<I", body.read(4))[0]
            self.published.set()

    def from_server(self, chunk: bytes) -> None:
        if chunk[:3] != b"MSG":
            return
        self.channel, self.token, self.sequence, request_id = struct.unpack_from("<4I", chunk, 8)
        if chunk[3:4] == b"F":  # the last chunk of a response
            self.pending.pop(request_id, None)
            if not self.pending:
                self.published.clear()

    def goodbye(self, kind: Goodbye, status: int) -> bytes:
        if kind == "err":
            reason = b"server shutting down"
            body = struct.pack("<Ii", status, len(reason)) + reason
            return b"ERRF" + struct.pack("<I", 8 + len(body)) + body
        out = b""
        for request_id, handle in self.pending.items():
            header = ua.ResponseHeader()
            header.Timestamp = dt.datetime.now(dt.UTC)
            header.RequestHandle = handle
            header.ServiceResult = ua.StatusCode(ua.UInt32(status))
            body = _FAULT + struct_to_binary(header)
            self.sequence += 1
            fields = struct.pack("<4I", self.channel, self.token, self.sequence, request_id)
            out += b"MSGF" + struct.pack("<I", 8 + len(fields) + len(body)) + fields + body
        return out


class GoodbyeProxy(TcpPeer):
    """Listens on 127.0.0.1 (`port`), forwards to `upstream_port`; says `kind` goodbye.

    A ServiceFault goodbye answers the client's pending Publish requests: when none is
    pending at the moment the server leaves (the client is between two), it waits for the
    next one (asyncua always keeps one pending while it has a subscription).
    """

    def __init__(self, upstream_port: int, kind: Goodbye, status: int) -> None:
        super().__init__()
        self.upstream_port, self.kind, self.status = upstream_port, kind, status
        self.goodbyes = 0  # connections the proxy said goodbye on

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handling()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the server is down: the client sees its connection closed
            writer.close()
            return
        self._open |= {writer, up_writer}
        connection = _Connection()
        upward = asyncio.create_task(self._upward(reader, up_writer, connection))
        try:
            while (chunk := await _chunk(up_reader)) is not None:
                connection.from_server(chunk)
                writer.write(chunk)
                await writer.drain()
            up_writer.close()  # the server is gone: nothing more is forwarded to it
            if not connection.client_left:  # the server went away: say goodbye
                if self.kind == "service_fault":
                    await asyncio.wait_for(connection.published.wait(), 10)
                writer.write(connection.goodbye(self.kind, self.status))
                await writer.drain()  # TCP delivers it before the FIN of writer.close()
                self.goodbyes += 1
        except ConnectionError:
            pass
        finally:
            upward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await upward
            up_writer.close()
            writer.close()
            self._open -= {writer, up_writer}

    @staticmethod
    async def _upward(
        reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        """Forward the client's chunks while the server is there; note them until the end."""
        while (chunk := await _chunk(reader)) is not None:
            connection.from_client(chunk)
            if not up_writer.is_closing():
                up_writer.write(chunk)
                with contextlib.suppress(ConnectionError):
                    await up_writer.drain()
        connection.client_left = True
        up_writer.close()  # the client left: so does the proxy's side of the server
