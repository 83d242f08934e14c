"""An OPC UA server in a process of its own, for faults done to it by PID (tests of the driver).

`python -m tests.support.opcua_line_server PORT EXTRA GEN`: an asyncua server that registers
EXTRA filler namespaces before its own (NS; so its namespace index moves when EXTRA changes)
and publishes `GEN * 1e6 + n` to five variables Line/V0..V4 every 50 ms. It builds its
address space, then waits for a line on stdin before it listens, and prints READY once it
does. `ServerProcess` starts it, lets it serve, signals it (SIGSTOP / SIGCONT: a hung
server) and stops it (terminate: a PLC program download when started again).

Must not: be signalled other than by its own PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, cast

from asyncua import ua
from asyncua.server.server import Server

NS = "urn:edge-agent:test:line"
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # the limit of a wait for the server (generous: a busy 2-core machine)


class ServerProcess:
    """The test server in a subprocess; every signal goes to its PID."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process, self.log = process, log

    @classmethod
    async def prepare(cls, port: int, extra: int, generation: int, log: Path) -> ServerProcess:
        """Start the process: it builds its address space, then waits for `serve()`."""
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.support.opcua_line_server", str(port), str(extra), str(generation),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                cwd=ROOT,
            )  # fmt: skip
        return cls(process, log)

    async def serve(self) -> ServerProcess:
        """Let it listen (binds the port) and wait until it does."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(b"GO\n")
        await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), WAIT_S)  # asyncua's init: seconds
        assert line.strip() == b"READY", self.log.read_text()
        return self

    @classmethod
    async def start(cls, port: int, extra: int, generation: int, log: Path) -> ServerProcess:
        return await (await cls.prepare(port, extra, generation, log)).serve()

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.signal(signal.SIGCONT)
            self.process.terminate()
            await self.process.wait()


async def _serve(port: int, extra: int, generation: int) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    for i in range(extra):
        await server.register_namespace(f"urn:edge-agent:test:filler:{i}")
    idx = await server.register_namespace(NS)

    def nid(identifier: str) -> ua.NodeId:
        return ua.NodeId(cast(Any, identifier), cast(Any, idx))

    line = await server.nodes.objects.add_folder(nid("Line"), ua.QualifiedName("Line", idx))
    nodes = [
        await line.add_variable(nid(f"Line/V{i}"), ua.QualifiedName(f"V{i}", idx), 0.0)
        for i in range(5)
    ]
    await asyncio.to_thread(sys.stdin.readline)  # wait for the test's GO
    async with server:
        print("READY", flush=True)  # noqa: T201
        n = 0
        while True:
            n += 1
            value = ua.DataValue(ua.Variant(generation * 1_000_000.0 + n, ua.VariantType.Double))
            for node in nodes:
                await server.write_attribute_value(node.nodeid, value)
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
