"""The networked path of the headless rig, in lockstep: the test steps the Mill, the simulated
PLC's real OPC UA server (agent.demo.opcua_server) serves it on 127.0.0.1, and the agent's real
OPC UA driver (drivers.opcua) subscribes to it and writes through it; the agent's control side
is the same as the headless rig's (agent.control.setup.open_control, agent.demo.headless.rig).

Owns: `NetPlant` (a SimPlant whose batches are published to the OPC UA server instead of handed
to the agent: before and after every tick it waits until the agent's LatestValues holds what the
mill published, i.e. every sample the SimPlant selected and every value the agent wrote, which
the server shows at once) and `networked_rig`, the HeadlessRig built on it.
Must not: patch or mock an agent module, or wait by fixed sleeps: every wait is on observed
progress (the delivered samples) with a generous deadline.
Invariants: the rig's configuration is the headless rig's (agent.demo.headless.config) but for
the mill source's endpoint and subscription timing; the agent's clock is the same FakeClock as
the headless rig's, the driver's clock is real (it times the subscription on a real socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.config.loader import load_config
from agent.config.settings import OpcUaSource
from agent.control.setup import open_control
from agent.demo.headless.clock import TaskClock, agent_task
from agent.demo.headless.config import rig_config
from agent.demo.headless.plant import SimPlant
from agent.demo.headless.rig import HeadlessRig, copy_models
from agent.demo.mill import Mill
from agent.demo.opcua_server import MillOpcUaServer
from agent.domain.clock import FakeClock, SystemClock
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import DriverState, Sample
from drivers.opcua import OpcUaDriver

__all__ = ["NetPlant", "networked_rig"]

DELIVERY_S = 60.0
"""Deadline (real time) for the subscription to deliver one tick's samples."""


@dataclass
class NetPlant(SimPlant):
    """The mill behind a real OPC UA server: ticks wait for the agent to have seen them."""

    server: MillOpcUaServer | None = None
    latest: LatestValues | None = None
    agent_writes: frozenset[str] = frozenset()
    """The tags the agent writes (the server publishes them at once)."""
    staged: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sinks = [self.staged.extend]

    async def advance(self) -> None:
        await self.delivered()  # what the agent wrote during the last tick, too
        self.tick()
        await self.flush()

    async def flush(self) -> None:
        """Publish the staged samples and wait until the agent holds them."""
        assert self.server is not None
        names = list(dict.fromkeys(s.tag for s in self.staged))
        self.staged.clear()
        await self.server.publish({name: self.mill.read(name) for name in names})
        await self.delivered()

    def _missing(self) -> list[str]:
        assert self.latest is not None
        out = []
        expected = {tag: (seen[0], seen[1]) for tag, seen in self._seen.items()}
        for tag in self.agent_writes:
            r = self.mill.read(tag)
            expected[tag] = (r.source_time, r.value)
        for tag, (source_time, value) in expected.items():
            s = self.latest.get(tag)
            if s is None or s.source_time != source_time or s.value != value:
                out.append(f"{tag}: has {None if s is None else (s.source_time, s.value)}, "
                           f"published {(source_time, value)}")  # fmt: skip
        return out

    async def delivered(self) -> None:
        """Wait (observed progress) until LatestValues holds every published sample."""
        deadline = time.monotonic() + DELIVERY_S
        while missing := self._missing():
            if time.monotonic() > deadline:
                raise AssertionError(f"not delivered within {DELIVERY_S:g} s: {missing[:5]}")
            await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def networked_rig(
    folder: Path, *, seed: int, loops: Sequence[str] | None = None, cadence_s: float = 600.0,
    sample_s: float = 60.0, dt: float = 10.0,
) -> AsyncIterator[HeadlessRig]:  # fmt: skip
    """The headless rig's mill and agent, with the OPC UA server and driver between them."""
    copy_models(folder)
    state = folder / "state"
    state.mkdir()
    mill = Mill(seed, dt=dt, lab_time_scale=1.0, wd_timeout_s=3 * sample_s)
    server = MillOpcUaServer(mill, to_wall=lambda t: t, port=0)  # sim time on the wire
    await server.start()
    try:
        # Notifications every 20 ms; the subscription's watchdog at 10 s of silence (a busy
        # machine's event loop may be held for a while by the agent's own work).
        fast = {"endpoint": server.url, "publishing_interval_s": 0.02,
                "sampling_interval_s": 0.0, "watchdog_intervals": 500}  # fmt: skip
        loaded = load_config(rig_config(folder, product=mill.product, loops=loops,
                                        cadence_s=cadence_s, source=fast))  # fmt: skip
        s = loaded.settings
        source = next(x for x in s.sources if isinstance(x, OpcUaSource))
        tags = [t for t in s.tags if t.source == source.name]
        driver = OpcUaDriver(source, tags, state_dir=state, agent_id=s.agent.id, password=None,
                             clock=SystemClock())  # fmt: skip
        fake = FakeClock(monotonic=0.0, now=mill.time)
        clock = TaskClock(fake)
        latest = LatestValues({t.name: t.source for t in s.tags})
        control = await open_control(loaded, state, latest=latest, drivers=[driver],
                                     health=Health(), clock=clock, events=None)  # fmt: skip
        writes = {lp.target_tag for lp in s.loops} | {str(lp.heartbeat_tag) for lp in s.loops}
        plant = NetPlant(mill, fake, [t.name for t in tags], sample_s=sample_s,
                         server=server, latest=latest, agent_writes=frozenset(writes))  # fmt: skip
        rig = HeadlessRig(loaded, plant, clock, control, latest, state, quiet_among=agent_task)
        sinks = [latest.update, control.observe, rig.note_lab]

        def emit(batch: Sequence[Sample]) -> None:
            for sink in sinks:
                sink(batch)

        reading = asyncio.create_task(driver.run(emit), name="driver")
        truth = None
        if control.truth is not None:
            truth = asyncio.create_task(control.truth.run(), name="truth")
        try:
            deadline = time.monotonic() + DELIVERY_S
            while driver.state is not DriverState.CONNECTED:
                if reading.done() or time.monotonic() > deadline:
                    reading.result()
                    raise AssertionError("the OPC UA driver did not connect")
                await asyncio.sleep(0.01)
            plant.publish_all()
            await plant.flush()
            yield rig
        finally:
            for task in (truth, reading):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if control.truth is not None:
                await control.truth.close()
            control.audit.close()
    finally:
        await server.stop()
