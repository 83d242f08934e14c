"""A Modbus connection the peer drops before any request leaves no orphaned error behind.

pymodbus creates the response future of a client before its first request. When the peer
closes the connection, `Link` fails the future in flight so a waiting read ends at
once; a future nobody awaits (none sent yet) used to keep that exception unretrieved, and
asyncio logged "Future exception was never retrieved" at ERROR when it was collected: an
ERROR line in plant IT's journal for an ordinary reconnect (seen in
tests/system/test_source_problems.py on a busy machine). The peer here is plain asyncio.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from agent.config.settings import ModbusSource
from drivers.modbus_link import Link
from tests.support.wait import until


async def test_a_connection_dropped_before_any_request_logs_no_orphaned_exception() -> None:
    async def hang_up(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    orphans: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: orphans.append(context))
    try:
        source = ModbusSource.model_validate(
            {"kind": "modbus", "name": "plc", "host": "127.0.0.1", "port": port,
             "timeout_s": 2.0, "retries": 0}
        )  # fmt: skip
        links = [Link(source)]  # in a list, so the test can drop its only reference
        await links[0].connect()
        await until(lambda: not links[0].connected, "the peer's hang-up seen")
        links.pop().close()
        gc.collect()
        await asyncio.sleep(0)  # the loop runs the handler calls the collection scheduled
        assert [c.get("message") for c in orphans] == []
    finally:
        loop.set_exception_handler(previous)
        server.close()
        await server.wait_closed()
