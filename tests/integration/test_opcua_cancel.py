"""A cancelled OPC UA connect is cancelled, whenever the cancellation lands.

asyncua opens its socket under the standard `asyncio.wait_for`, which before Python 3.12
loses a cancellation that lands as the connection completes (CPython gh-86296): the session
then opened anyway and a SIGTERM during the agent's start-up hung its shutdown. The connect
is cancelled here after 0, 1, 2, ... turns of the event loop, through every step of the
opening (socket, hello, secure channel, session), against the simulated plant's server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.config.settings import OpcUaSource
from agent.demo.runner import SimulatedPlant
from drivers.opcua_connect import ConnectOptions, close, connect


async def test_cancelling_connect_at_every_step_never_leaves_a_session(tmp_path: Path) -> None:
    async with SimulatedPlant(opcua_port=0, modbus_port=0) as plant:
        source = OpcUaSource(kind="opcua", name="mill", endpoint=plant.opcua_url,
                             security_policy="None", security_mode="None")  # fmt: skip
        options = ConnectOptions.of(source, state_dir=tmp_path, agent_id="t", password=None)
        steps, cancelled = 0, 0
        while True:
            task = asyncio.create_task(connect(options))
            for _ in range(steps):
                await asyncio.sleep(0)
            if task.done():  # connected before the cancellation: every step was covered
                await close(await task, 5.0)
                break
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=60)
            assert task in done, f"connect cancelled after {steps} steps did not end"
            if not task.cancelled():
                await close(task.result(), 5.0)
                raise AssertionError(f"connect cancelled after {steps} steps returned a session")
            cancelled += 1
            steps += 1
        assert cancelled >= 10  # the opening takes many turns of the loop: all of them tried
