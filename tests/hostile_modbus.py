"""A hostile Modbus TCP server for tests: plain asyncio, it answers each request as told.

Not pymodbus: it is the device pymodbus was not written for. Each request is answered by the
rule for its unit and first address (`rules[(unit, address)]`, else `rules[(unit, None)]`,
else good values): the registers (address + 1 in each), an exception response, an answer
with another function code (an unknown one cannot even be decoded), or nothing at all.
Rules may change while it serves (a device that recovers). Reads of holding and input
registers (FC3/FC4) and register writes (FC6/FC16) only; 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Values:
    """Answer properly: register `a` holds `a + 1`; a write is acknowledged."""


@dataclass(frozen=True)
class Refuse:
    """Answer with Modbus exception `code`."""

    code: int


@dataclass(frozen=True)
class WrongFunction:
    """Answer with function code `code` (0x41 and up: codes pymodbus cannot decode)."""

    code: int


@dataclass(frozen=True)
class Silent:
    """Never answer (a dead unit behind a gateway)."""


Rule = Values | Refuse | WrongFunction | Silent


class HostileModbusServer:
    """`async with HostileModbusServer(rules) as server:` listens on `server.port`."""

    def __init__(self, rules: dict[tuple[int, int | None], Rule] | None = None) -> None:
        self.rules: dict[tuple[int, int | None], Rule] = dict(rules or {})
        self.answered: Counter[str] = Counter()  # rule name -> requests it answered
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> HostileModbusServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await asyncio.gather(*self._handlers)

    def rule(self, unit: int, address: int) -> Rule:
        return self.rules.get((unit, address)) or self.rules.get((unit, None)) or Values()

    def answer(self, unit: int, pdu: bytes) -> bytes | None:
        """The response PDU to request `pdu` for `unit` (None: no answer)."""
        function, address = pdu[0], struct.unpack_from(">H", pdu, 1)[0]
        rule = self.rule(unit, address)
        self.answered[type(rule).__name__] += 1
        if isinstance(rule, Silent):
            return None
        if isinstance(rule, Refuse):
            return bytes([function | 0x80, rule.code])
        if isinstance(rule, WrongFunction):
            return bytes([rule.code]) + pdu[1:5]
        if function in (3, 4):
            count = struct.unpack_from(">H", pdu, 3)[0]
            values = [(address + i + 1) & 0xFFFF for i in range(count)]
            return bytes([function, 2 * count]) + struct.pack(f">{count}H", *values)
        if function in (6, 16):
            return pdu[:5]
        return bytes([function | 0x80, 0x01])  # illegal function

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        self._open.add(writer)
        try:
            while True:
                transaction, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                response = self.answer(unit, await reader.readexactly(length - 1))
                if response is not None:
                    writer.write(struct.pack(">HHHB", transaction, 0, len(response) + 1, unit))
                    writer.write(response)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
