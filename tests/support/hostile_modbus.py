"""A hostile Modbus TCP server for tests: plain asyncio, it answers each request as told.

Not pymodbus: it is the device pymodbus was not written for. Each request is answered by the
rule for its unit and first address (`rules[(unit, address)]`, else `rules[(unit, None)]`,
else good values): the registers (address + 1 in each), an exception response, an answer
with another function code (an unknown one cannot even be decoded), or nothing at all.
Rules may change while it serves (a device that recovers). Reads of holding and input
registers (FC3/FC4) and register writes (FC6/FC16) only; 127.0.0.1 only.

Owns: `HostileModbusServer` and its rules (`Refuse`, `WrongFunction`, `Silent`, `Values`,
`Rule`): the device's side of every request a test sends it.

Must not: use pymodbus (it would not send what pymodbus cannot decode), listen beyond
127.0.0.1, or outlive the test that started it.

Invariants: every request is answered by the rule in force when it arrives, and by exactly
one reply or none (`Silent`); the MBAP transaction id and unit of a reply are the request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from dataclasses import dataclass

from tests.support.tcp_peer import TcpPeer


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


class HostileModbusServer(TcpPeer):
    """`async with HostileModbusServer(rules) as server:` listens on `server.port`."""

    def __init__(self, rules: dict[tuple[int, int | None], Rule] | None = None) -> None:
        super().__init__()
        self.rules: dict[tuple[int, int | None], Rule] = dict(rules or {})
        self.answered: Counter[str] = Counter()  # rule name -> requests it answered

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
        self._handling()
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
