"""Benchmark peer: an asyncua server with N Double variables that move like a plant's tags.

    .venv/bin/python bench/plant_server.py --serve PORT COUNT CHANGE

Owns: the variables (``nsu=urn:edge-agent:bench:plant;s=V0`` ..), their once-a-second
updates and printing READY once they exist; ``server late by`` on stderr when a cycle runs
more than a second late. Started and stopped by bench/agent_harness.py (``plant_server``).
Must not: import the agent, or run anything but the server.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import random
import sys
import time
from typing import Any, cast

NS = "urn:edge-agent:bench:plant"


async def serve(port: int, count: int, change: float) -> None:
    """``count`` Double variables; every second the first ``change`` share of them moves (a
    random walk, like noisy analog measurements) and each of the others moves with a 0.1 %
    chance (setpoints, states, counters)."""
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
    folder = await server.nodes.objects.add_folder(nid("Plant", idx), "Plant")
    rng = random.Random(11)
    values = [rng.uniform(1.0, 5000.0) for _ in range(count)]
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
        attrs.Value = ua.Variant(values[i], ua.VariantType.Double)
        attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
        item.NodeAttributes = attrs
        items.append(item)
    nodes = [result.AddedNodeId for result in await server.iserver.isession.add_nodes(items)]
    moving = int(count * change)
    async with server:
        print("READY", flush=True)
        due = time.monotonic()
        while True:
            stamp = cast(ua.DateTime, datetime.datetime.now(datetime.UTC))
            for i, nodeid in enumerate(nodes):
                if i >= moving and rng.random() >= 0.001:
                    continue
                values[i] += rng.gauss(0.0, 0.001 * abs(values[i]) + 0.01)
                value = ua.DataValue(ua.Variant(values[i], ua.VariantType.Double),
                                     SourceTimestamp=stamp, ServerTimestamp=stamp)  # fmt: skip
                await server.write_attribute_value(nodeid, value)
            due += 1.0
            late = time.monotonic() - due
            if late > 1.0:
                print(f"server late by {late:.2f} s", file=sys.stderr, flush=True)
                due = time.monotonic()
            await asyncio.sleep(max(0.0, due - time.monotonic()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "COUNT", "CHANGE"), required=True)
    args = parser.parse_args()
    asyncio.run(serve(int(args.serve[0]), int(args.serve[1]), float(args.serve[2])))
