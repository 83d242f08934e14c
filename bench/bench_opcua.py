"""Benchmark of the OPC UA driver: subscribe time, throughput, agent CPU, losses.

Run: `.venv/bin/python bench/bench_opcua.py` (about four minutes; `--quick` for a short
pass). The servers are asyncua servers in SUBPROCESSES (this script re-run with `--serve`),
so the agent's CPU time (`time.process_time()` of this process: every thread) is the
driver's alone: asyncua client decode, our conversion, the sink. Each server owns N Double
variables and writes the cycle number into every one of them `--hz` times a second; the
value makes loss accounting exact: a tag that saw cycles a..b must have b - a + 1 samples.

Printed per scenario: time to subscribe, samples/s received, agent CPU as % of one core
(and per 10,000 samples/s), samples lost, the latency from server timestamp to emit
(p50/p99: a growing lag means a backlog), and the ratio to the target (15 % of one core
at 10,000 samples/s). Also asyncua's own decode cost per notification, the floor no
driver on asyncua can go below. No assertions: it prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config.settings import OpcUaSource, Tag
from agent.domain.clock import SystemClock
from agent.domain.samples import Sample
from agent.service.logs import configure_logging
from drivers.opcua import OpcUaDriver

NS = "urn:edge-agent:bench"
TARGET_CPU_PER_10K = 15.0  # % of one core at 10,000 samples/s


# -- the server (subprocess) ----------------------------------------------------------------


async def serve(port: int, count: int, hz: float) -> None:
    from asyncua import ua
    from asyncua.server.server import Server
    from asyncua.ua.object_ids import ObjectIds

    def nid(identifier: object, namespace: int = 0) -> ua.NodeId:
        return ua.NodeId(cast(Any, identifier), cast(Any, namespace))

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.disable_clock()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS)
    folder = await server.nodes.objects.add_folder(nid("Bench", idx), "Bench")
    items = []
    for i in range(count):
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = nid(f"V{i}", idx)
        item.BrowseName = ua.QualifiedName(f"V{i}", idx)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = folder.nodeid
        item.ReferenceTypeId = nid(ObjectIds.HasComponent)
        item.TypeDefinition = nid(ObjectIds.BaseDataVariableType)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(f"V{i}")
        attrs.DataType = nid(ObjectIds.Double)
        attrs.Value = ua.Variant(0.0, ua.VariantType.Double)
        attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
        item.NodeAttributes = attrs
        items.append(item)
    nodes = [result.AddedNodeId for result in await server.iserver.isession.add_nodes(items)]
    async with server:
        print("READY", flush=True)
        period, cycle = 1.0 / hz, 0
        due = time.monotonic()
        while True:
            cycle += 1
            stamp = cast(ua.DateTime, datetime.datetime.now(datetime.UTC))  # like a PLC
            value = ua.DataValue(ua.Variant(float(cycle), ua.VariantType.Double),
                                 SourceTimestamp=stamp, ServerTimestamp=stamp)  # fmt: skip
            for nodeid in nodes:
                await server.write_attribute_value(nodeid, value)
            due += period
            late = time.monotonic() - due
            if late > period:
                print(f"server {port} late by {late:.2f} s", file=sys.stderr, flush=True)
            await asyncio.sleep(max(0.0, due - time.monotonic()))


# -- the agent side ---------------------------------------------------------------------------


@dataclass
class Tally:
    """Per-tag first/last cycle and count: exact loss accounting; latency samples."""

    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    received: int = 0
    lags: list[float] = field(default_factory=list)

    def __call__(self, batch: Sequence[Sample]) -> None:
        now = time.time()
        first, last, count = self.first, self.last, self.count
        for sample in batch:
            if sample.value is None:
                continue
            name, value = sample.tag, float(sample.value)
            if name not in first:
                first[name] = value
            last[name] = value
            count[name] = count.get(name, 0) + 1
        self.received += len(batch)
        if batch and batch[0].server_time is not None:
            self.lags.append(now - batch[0].server_time)

    def lost(self) -> int:
        return sum(int(self.last[n] - self.first[n] + 1) - self.count[n] for n in self.count)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_server(count: int, hz: float, log: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", str(port), str(count), str(hz),
            stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 300)
    assert line.strip() == b"READY", line
    return process, port


@dataclass
class Result:
    name: str
    subscribe_s: float
    rate: float
    cpu_pct: float
    lost: int
    dropped: int
    lag_p50: float
    lag_p99: float
    lag_trend: float
    expected_rate: float
    server_late: int

    def show(self) -> None:
        per_10k = self.cpu_pct * 10_000 / self.rate if self.rate else float("nan")
        print(
            f"{self.name:<34} subscribe {self.subscribe_s:6.2f} s | "
            f"{self.rate:8.0f} samples/s (expected {self.expected_rate:.0f}) | "
            f"CPU {self.cpu_pct:5.1f} % of a core = {per_10k:5.1f} % per 10k/s "
            f"({per_10k / TARGET_CPU_PER_10K:4.2f} x target) | lost {self.lost} "
            f"dropped {self.dropped} | lag p50 {self.lag_p50 * 1000:.0f} ms "
            f"p99 {self.lag_p99 * 1000:.0f} ms trend {self.lag_trend * 1000:+.0f} ms"
            + (f" | server fell behind {self.server_late}x" if self.server_late else "")
        )


async def scenario(
    name: str, *, servers: int, count: int, hz: float, warmup_s: float, measure_s: float
) -> Result:
    state_dir = Path(tempfile.mkdtemp(prefix="bench-opcua-"))
    log = state_dir / "servers.log"
    started = await asyncio.gather(*(start_server(count, hz, log) for _ in range(servers)))
    drivers, tallies, tasks = [], [], []
    try:
        for index, (_, port) in enumerate(started):
            src = OpcUaSource(
                kind="opcua", name=f"s{index}", endpoint=f"opc.tcp://127.0.0.1:{port}/",
                security_policy="None", security_mode="None", publishing_interval_s=1.0 / hz,
                sampling_interval_s=0.0, timeout_s=10.0,
            )  # fmt: skip
            tags = [Tag(name=f"s{index}.V{i}", source=src.name, address=f"nsu={NS};s=V{i}")
                    for i in range(count)]  # fmt: skip
            driver = OpcUaDriver(src, tags, state_dir=state_dir, agent_id="bench",
                                 password=None, clock=SystemClock())  # fmt: skip
            tally = Tally()
            drivers.append(driver)
            tallies.append(tally)
            tasks.append(asyncio.create_task(driver.run(tally)))
        while True:  # every driver has subscribed
            if all(d.counters.last_subscribe_s is not None for d in drivers):
                break
            await asyncio.sleep(0.05)
        subscribe_s = max(d.counters.last_subscribe_s or 0.0 for d in drivers)
        await asyncio.sleep(warmup_s)
        for tally in tallies:
            tally.lags.clear()
        late0 = log.read_text().count("late by")
        received0 = sum(t.received for t in tallies)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(measure_s)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        received = sum(t.received for t in tallies) - received0
        late = log.read_text().count("late by") - late0
        thirds = (
            [t.lags[len(t.lags) // 3 :] for t in tallies],
            [t.lags[: len(t.lags) // 3] for t in tallies],
        )
        trend = _median(thirds[0]) - _median(thirds[1])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for process, _ in started:
            process.terminate()
            await process.wait()
    lags = sorted(lag for t in tallies for lag in t.lags) or [float("nan")]
    return Result(
        name=name,
        subscribe_s=subscribe_s,
        rate=received / wall,
        cpu_pct=100.0 * cpu / wall,
        lost=sum(t.lost() for t in tallies),
        dropped=sum(d.counters.dropped for d in drivers),
        lag_p50=statistics.median(lags),
        lag_p99=lags[int(0.99 * (len(lags) - 1))],
        lag_trend=trend,
        expected_rate=servers * count * hz,
        server_late=late,
    )


def _median(groups: list[list[float]]) -> float:
    values = [value for group in groups for value in group]
    return statistics.median(values) if values else float("nan")


def decode_floor(count: int = 10_000) -> float:
    """asyncua's decode time of one DataChangeNotification item (us), Double + 2 stamps."""
    import datetime as dt

    from asyncua import ua
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

    now = dt.datetime.now(dt.UTC)
    items = []
    for i in range(count):
        item = ua.MonitoredItemNotification()
        item.ClientHandle = i + 1
        stamp = cast(ua.DateTime, now)
        item.Value = ua.DataValue(ua.Variant(float(i), ua.VariantType.Double),
                                  SourceTimestamp=stamp, ServerTimestamp=stamp)  # fmt: skip
        items.append(item)
    response = ua.PublishResponse()
    response.Parameters.NotificationMessage.NotificationData = [
        ua.DataChangeNotification(MonitoredItems=items)
    ]
    data = struct_to_binary(response)
    began = time.process_time()
    for _ in range(5):
        struct_from_binary(ua.PublishResponse, Buffer(data))
    return (time.process_time() - began) / 5 / count * 1e6


async def main(quick: bool) -> None:
    configure_logging("warning", json=False)
    warmup, measure = (2.0, 5.0) if quick else (3.0, 12.0)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"asyncua decode floor {decode_floor():.1f} us per notification")  # fmt: skip
    plan = [
        ("2,000 vars @ 1 Hz, 1 server", 1, 2_000, 1.0),
        ("10,000 vars @ 1 Hz, 1 server", 1, 10_000, 1.0),
        ("10,000 vars @ 2 Hz, 1 server", 1, 10_000, 2.0),
        ("3 x 10,000 vars @ 1 Hz, 3 servers", 3, 10_000, 1.0),
    ]
    for name, servers, count, hz in plan[: 2 if quick else None]:
        result = await scenario(name, servers=servers, count=count, hz=hz, warmup_s=warmup,
                                measure_s=measure)  # fmt: skip
        result.show()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "COUNT", "HZ"))
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(int(args.serve[0]), int(args.serve[1]), float(args.serve[2])))
    else:
        asyncio.run(main(args.quick))
