"""The pymodbus boundary: one connection (TCP, RTU over TCP, or RTU on a serial port).

Owns: building the pymodbus client for a `ModbusSource`, connecting and closing it, sending
exactly one request at a time over it (an `asyncio.Lock` per connection: a serial bus, or a
TCP gateway, serves one request at a time), and mapping every pymodbus outcome *once* into
plain results or `agent.domain.errors`:
- an answer -> the registers (or bits) asked for; an exception response -> `Refused(code)`;
- an answer that cannot be what was asked (a frame pymodbus cannot decode, such as an unknown
  function code; another function code than the request's; the wrong number of registers)
  -> `Garbled(detail)`; on RTU framing, which has no transaction id, the last two may be a
  late answer to an earlier request: there they mean no (matching) answer, `None` (never
  for a write: whatever answered, it did not accept the write);
- no answer within `timeout_s` -> `None`;
- not connected / connection gone -> `ConnectionLostError`;
- for writes: `Refused`, `Garbled`, a timeout -> `DeviceTimeoutError`, connection gone ->
  `ConnectionLostError`.
Must not: decide what a result means for tags or units (drivers.modbus_scan does), retry
anything (pymodbus' own retries and reconnects are switched off: the driver and the
supervisor own that policy), log, or let a pymodbus exception escape: not even from
pymodbus' `data_received`, where asyncio would log it as "Fatal error: protocol.
data_received() call failed" with a traceback and drop the connection (`_decode_or_fail`
maps an undecodable frame into `Garbled` for the request waiting for it instead).
Invariants: at most one request in flight per connection; a lost connection fails the
request in flight at once (the `trace_connect` hook fails pymodbus' pending future), instead
of after the response timeout; an undecodable answer fails it at once too, and the bytes
received with it are dropped (the next request starts on an empty buffer); a cancellation is
never lost inside pymodbus (see `_honour_cancel`).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from agent.config.addresses import Table
from agent.config.settings import ModbusSource
from agent.domain.errors import ConnectionLostError, DeviceTimeoutError

__all__ = ["Garbled", "Link", "Refused"]

_READ_FC = {Table.COIL: 1, Table.DISCRETE_INPUT: 2, Table.HOLDING: 3, Table.INPUT: 4}
_WRITE_COIL, _WRITE_REGISTER, _WRITE_COILS, _WRITE_REGISTERS, _MASK_WRITE = 5, 6, 15, 16, 22
_NEVER = 2**31
"""pymodbus closes a TCP connection after `retries + 3` unanswered requests in a row; one dead
unit must not cost the others their connection, so that count is set out of reach."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The device answered with a Modbus exception response."""

    code: int


@dataclass(frozen=True, slots=True)
class Garbled:
    """The device answered, but not with an answer to the request (what was wrong with it)."""

    detail: str


class _Undecodable(ModbusException):
    """Set on pymodbus' pending request when its answer could not be decoded."""


def _fail(pending: asyncio.Future[Any], error: ModbusException) -> None:
    """Fail pymodbus' pending request with `error`, retrieved even if nobody awaits it.

    pymodbus makes a response future before the first request: when the peer hangs up first,
    no one awaits it, and asyncio would log "Future exception was never retrieved" at ERROR
    when it is collected. A request that does await it still gets `error` raised.
    """
    pending.set_exception(error)
    pending.add_done_callback(lambda done: done.exception())


class Link:
    """One pymodbus client and the lock that keeps it to one request at a time."""

    def __init__(self, source: ModbusSource) -> None:
        self.source = source
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if source.transport == "rtu":
            assert source.serial_port is not None  # ModbusSource validates it
            self.where = source.serial_port
            self._client = AsyncModbusSerialClient(
                source.serial_port,
                framer=FramerType.RTU,
                baudrate=source.baudrate,
                bytesize=8,
                parity=source.parity,
                stopbits=source.stopbits,
                timeout=source.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=source.name,
                trace_connect=self._connection_changed,
            )
        else:
            assert source.host is not None
            self.where = f"{source.host}:{source.port}"
            self._client = AsyncModbusTcpClient(
                source.host,
                port=source.port,
                framer=FramerType.RTU if source.transport == "rtu_over_tcp" else FramerType.SOCKET,
                timeout=source.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=source.name,
                trace_connect=self._connection_changed,
            )
        self._client.set_max_no_responses(_NEVER)
        self._decode = self._client.ctx.callback_data
        self._client.ctx.callback_data = self._decode_or_fail  # type: ignore[method-assign]
        self._calls: dict[Table, Any] = {
            Table.COIL: self._client.read_coils,
            Table.DISCRETE_INPUT: self._client.read_discrete_inputs,
            Table.HOLDING: self._client.read_holding_registers,
            Table.INPUT: self._client.read_input_registers,
        }

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the connection; ConnectionLostError if the peer cannot be reached."""
        try:
            connected = await self._client.connect()
        except (ModbusException, OSError) as exc:
            raise ConnectionLostError(f"could not connect to {self.where}: {exc}") from exc
        finally:
            _honour_cancel()
        if not connected:
            raise ConnectionLostError(
                f"could not connect to {self.where} within {self.source.timeout_s:g} s"
            )

    def close(self) -> None:
        self._client.close()

    def _connection_changed(self, connected: bool) -> None:
        """pymodbus trace hook: fail the request in flight as soon as the connection drops."""
        if connected:
            return
        pending = getattr(getattr(self._client, "ctx", None), "response_future", None)
        if isinstance(pending, asyncio.Future) and not pending.done():
            _fail(pending, ConnectionException(f"connection to {self.where} lost"))

    def _decode_or_fail(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        """pymodbus' `callback_data`, called from `data_received`: decode what arrived.

        A frame pymodbus cannot decode raises inside `data_received`; asyncio would log that
        as a fatal error with a traceback and close the connection. Instead, the request
        waiting for the answer fails with `_Undecodable` (mapped into `Garbled` by
        `_execute`) and the bytes are dropped: they answer nothing we can use.
        """
        try:
            used: int = self._decode(data, addr=addr)
        except (ModbusException, ValueError, IndexError, struct.error):
            pending = getattr(self._client.ctx, "response_future", None)
            if isinstance(pending, asyncio.Future) and not pending.done():
                frame = data[:16].hex(" ") + (" ..." if len(data) > 16 else "")
                _fail(pending, _Undecodable(f"an answer that cannot be decoded: {frame}"))
            return len(data)
        return used

    async def read(
        self, unit_id: int, table: Table, start: int, count: int
    ) -> list[int] | list[bool] | Refused | Garbled | None:
        """Read `count` registers/bits: the values, `Refused(code)`, `Garbled` or None."""
        call = self._calls[table]
        async with self.lock:
            response = await self._execute(lambda: call(start, count=count, device_id=unit_id))
        if response is None or isinstance(response, Garbled):
            return response
        if response.isError():
            return Refused(int(getattr(response, "exception_code", 0)))
        if response.function_code != _READ_FC[table]:
            return self._mismatch(_other_function(response, _READ_FC[table]))
        if table.is_bit:
            bits = list(response.bits)
            if len(bits) >= count:
                return bits[:count]
            return self._mismatch(f"{len(bits)} bits in an answer to a read of {count}")
        registers = list(response.registers)
        if len(registers) == count:
            return registers
        return self._mismatch(f"{len(registers)} registers in an answer to a read of {count}")

    def _mismatch(self, detail: str) -> Garbled | None:
        """An answer that does not fit the request: garbled, or on RTU possibly late."""
        return None if self.source.transport in ("rtu", "rtu_over_tcp") else Garbled(detail)

    async def write(
        self,
        unit_id: int,
        table: Table,
        address: int,
        registers: tuple[int, ...],
        *,
        bit: int | None,
        multiple: bool,
    ) -> Refused | Garbled | None:
        """Write one tag's registers (or coil, or bit in a register); None when accepted.

        FC5 (coil) / FC6 (one register) / FC15 / FC16 (several, or always with `multiple`);
        a bit in a holding register uses FC22 (mask write), so the PLC's other bits are never
        read and written back. `Garbled` when the answer is not one to the write (the write
        may or may not have been applied). Raises DeviceTimeoutError without an answer (the
        write may or may not have been applied) and ConnectionLostError when not connected.
        """
        client = self._client
        make: Callable[[], Awaitable[ModbusPDU]]
        if table is Table.COIL:
            on, fc = bool(registers[0]), _WRITE_COILS if multiple else _WRITE_COIL
            if multiple:
                make = lambda: client.write_coils(address, [on], device_id=unit_id)  # noqa: E731
            else:
                make = lambda: client.write_coil(address, on, device_id=unit_id)  # noqa: E731
        elif bit is not None:
            mask, fc = 1 << bit, _MASK_WRITE
            make = lambda: client.mask_write_register(  # noqa: E731
                address=address,
                and_mask=~mask & 0xFFFF,
                or_mask=mask if registers[0] else 0,
                device_id=unit_id,
            )
        elif len(registers) == 1 and not multiple:
            fc = _WRITE_REGISTER
            make = lambda: client.write_register(address, registers[0], device_id=unit_id)  # noqa: E731
        else:
            fc = _WRITE_REGISTERS
            make = lambda: client.write_registers(address, list(registers), device_id=unit_id)  # noqa: E731
        async with self.lock:
            response = await self._execute(make)
        if response is None:
            raise DeviceTimeoutError(
                f"no answer from unit {unit_id} at {self.where} within "
                f"{self.source.timeout_s:g} s; the write may or may not have been applied"
            )
        if isinstance(response, Garbled):
            return response
        if response.isError():
            return Refused(int(getattr(response, "exception_code", 0)))
        if response.function_code != fc:
            return Garbled(_other_function(response, fc))  # never taken as an acceptance
        return None

    async def _execute(
        self, make: Callable[[], Awaitable[ModbusPDU]]
    ) -> ModbusPDU | Garbled | None:
        """Send one pymodbus request and await its answer; the only place its errors are mapped.

        The request is built here, inside the lock and the `try`: pymodbus raises
        ConnectionException synchronously when not connected.
        """
        try:
            response = await make()
        except _Undecodable as exc:
            return Garbled(exc.string)
        except ConnectionException as exc:
            raise ConnectionLostError(f"connection to {self.where} lost: {exc.string}") from exc
        except ModbusIOException as exc:
            if not self.connected:
                raise ConnectionLostError(f"connection to {self.where} lost") from exc
            return None  # no (matching) answer within timeout_s
        except (ModbusException, OSError) as exc:
            raise ConnectionLostError(f"connection to {self.where} failed: {exc}") from exc
        finally:
            _honour_cancel()
        return response


def _other_function(response: ModbusPDU, expected: int) -> str:
    return f"function code {response.function_code} in an answer to function {expected}"


def _honour_cancel() -> None:
    """Raise the cancellation pymodbus may have swallowed.

    pymodbus awaits `asyncio.wait_for`, which before Python 3.12 returns the result instead
    of raising when the task is cancelled in the same loop iteration as the answer arrives
    (CPython gh-86296; asyncua guards against it with wait_for2, pymodbus does not). The
    cancellation is then lost and the scan loop runs on: a SIGTERM hung the shutdown until
    its 10 s limit. The task's `cancelling()` count still says it was asked to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
