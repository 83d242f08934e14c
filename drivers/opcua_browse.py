"""Commissioning browse: what a server offers, as rows and as an indented tree.

Owns: `browse()` for `edge-agent browse URL` (one session, breadth-first over hierarchical
references from the Objects folder, batched Browse/BrowseNext/Read calls), the `BrowseRow`
it returns (node id in the `nsu=` form, browse name, node class, data type, access level,
and a `path=` address when one namespace covers the path), `parse_security` for the CLI's
`--security` text, and the pure `render_tree`.
Must not: write anything to the server, print (the CLI prints), or follow references
outside the hierarchy (no cycles: each node is listed once).
Invariants: rows come in depth-first order with `depth` starting at 1 for the children of
the start node; node ids and paths in the rows parse with `parse_opcua_address` and
resolve to the same node in any later session, also after the server renumbers its
namespaces; standard nodes (namespace 0, e.g. the Server object) are skipped unless asked.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from pydantic import SecretStr

from agent.config.addresses import BrowseName, BrowsePath, NodeAddress
from agent.config.settings import OpcUaSource
from drivers.opcua_connect import POLICIES, ConnectOptions, close, connect, library_errors
from drivers.opcua_security import Pki, own_application_uri

__all__ = ["BrowseRow", "browse", "parse_security", "render_tree"]

_CHUNK = 500
_KINDS = {
    ua.NodeIdType.TwoByte: "i",
    ua.NodeIdType.FourByte: "i",
    ua.NodeIdType.Numeric: "i",
    ua.NodeIdType.String: "s",
    ua.NodeIdType.Guid: "g",
    ua.NodeIdType.ByteString: "b",
}


@dataclass(frozen=True)
class BrowseRow:
    """One node found by `browse` (data type and access only for variables)."""

    depth: int
    node_id: str
    browse_name: str
    node_class: str
    data_type: str | None = None
    access: str | None = None
    path: str | None = None


def parse_security(text: str) -> tuple[str, str]:
    """'None' | 'POLICY' | 'POLICY,MODE' -> (security_policy, security_mode)."""
    policy, _, mode = (part.strip() for part in text.partition(","))
    if policy == "None" and mode in ("", "None"):
        return "None", "None"
    mode = mode or "SignAndEncrypt"
    if policy not in POLICIES or policy == "None" or mode not in ("Sign", "SignAndEncrypt"):
        policies = ", ".join(p for p in POLICIES if p != "None")
        raise ValueError(
            f"expected 'None' or 'POLICY[,MODE]' with POLICY one of {policies} and MODE Sign "
            f"or SignAndEncrypt; found {text!r}"
        )
    return policy, mode


def _node_text(node_id: ua.NodeId, namespaces: Sequence[str]) -> str:
    kind = _KINDS.get(node_id.NodeIdType, "s")
    identifier = node_id.Identifier
    text = (
        base64.b64encode(identifier).decode() if isinstance(identifier, bytes) else str(identifier)
    )
    index = node_id.NamespaceIndex
    uri = namespaces[index] if 0 < index < len(namespaces) else None
    return str(NodeAddress(cast(Any, kind), text, uri, 0 if uri else index))


def _path_text(hops: Sequence[ua.QualifiedName], namespaces: Sequence[str]) -> str | None:
    indexes = {hop.NamespaceIndex for hop in hops if hop.NamespaceIndex != 0}
    if len(indexes) > 1 or any(i >= len(namespaces) for i in indexes):
        return None
    index = next(iter(indexes), 0)
    segments = tuple(BrowseName(str(h.Name), h.NamespaceIndex == 0 and index != 0) for h in hops)
    return str(BrowsePath(segments, namespaces[index] if index else None))


def _access(level: object) -> str | None:
    if not isinstance(level, int):
        return None
    read, write = level & ua.AccessLevel.CurrentRead.mask, level & ua.AccessLevel.CurrentWrite.mask
    return {(True, True): "read/write", (True, False): "read", (False, True): "write"}.get(
        (bool(read), bool(write)), "none"
    )


@dataclass
class _Found:
    node_id: ua.NodeId
    hops: tuple[ua.QualifiedName, ...]
    node_class: ua.NodeClass
    children: list[_Found]


async def _children(client: Client, parents: Sequence[ua.NodeId]) -> list[list[Any]]:
    """The forward hierarchical references of each parent (with BrowseNext)."""
    out: list[list[Any]] = []
    for start in range(0, len(parents), _CHUNK):
        params = ua.BrowseParameters()
        for parent in parents[start : start + _CHUNK]:
            desc = ua.BrowseDescription()
            desc.NodeId = parent
            desc.BrowseDirection = ua.BrowseDirection.Forward
            desc.ReferenceTypeId = ua.NodeId(cast(Any, ObjectIds.HierarchicalReferences))
            desc.IncludeSubtypes = cast(Any, True)
            desc.ResultMask = cast(Any, ua.BrowseResultMask.All)
            params.NodesToBrowse.append(desc)
        with library_errors("browsing"):
            results = await client.uaclient.browse(params)
            for result in results:
                refs = list(result.References or [])
                point = result.ContinuationPoint
                while point:
                    more = ua.BrowseNextParameters()
                    more.ContinuationPoints = [point]
                    (next_result,) = await client.uaclient.browse_next(more)
                    refs += next_result.References or []
                    point = next_result.ContinuationPoint
                out.append(refs)
    return out


async def _read(client: Client, nodes: Sequence[ua.NodeId], attribute: int) -> list[Any]:
    values: list[Any] = []
    for start in range(0, len(nodes), _CHUNK):
        with library_errors("reading attributes"):
            found = await client.uaclient.read_attributes(
                list(nodes[start : start + _CHUNK]), cast(Any, attribute)
            )
        values += [None if dv.Value is None else dv.Value.Value for dv in found]
    return values


async def _walk(
    client: Client, depth: int, include_standard: bool, max_nodes: int
) -> tuple[list[_Found], int]:
    roots: list[_Found] = []
    level = [_Found(ua.NodeId(cast(Any, ObjectIds.ObjectsFolder)), (), ua.NodeClass.Object, roots)]
    seen = {level[0].node_id}
    count = 0
    for _ in range(depth):
        if not level or count >= max_nodes:
            break
        next_level: list[_Found] = []
        refs_per_parent = await _children(client, [f.node_id for f in level])
        for parent, refs in zip(level, refs_per_parent, strict=True):
            parent_list = roots if not parent.hops else parent.children
            for ref in refs:
                node_id = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex)
                if node_id in seen or (node_id.NamespaceIndex == 0 and not include_standard):
                    continue
                seen.add(node_id)
                found = _Found(node_id, (*parent.hops, ref.BrowseName), ref.NodeClass, [])
                parent_list.append(found)
                next_level.append(found)
                count += 1
        level = next_level
    return roots, count


async def browse(
    url: str,
    *,
    depth: int,
    security: str = "None",
    state_dir: Path,
    agent_id: str | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    application_uri: str | None = None,
    timeout_s: float = 5.0,
    include_standard: bool = False,
    max_nodes: int = 10_000,
) -> list[BrowseRow]:
    """Browse `url` `depth` levels below the Objects folder (errors as in `read_once`).

    With a secure policy the agent's certificate in state_dir/pki/own is used. Pass the
    agent's `agent_id` (and `application_uri` if its source overrides it); with neither,
    the certificate already there is used with its own URI, so browsing never replaces
    the certificate the PLCs trust (one is created only if there is none).
    """
    policy, mode = parse_security(security)
    if agent_id is None and application_uri is None:
        pki = Pki.under(state_dir)
        application_uri = await asyncio.to_thread(own_application_uri, pki)
    source = OpcUaSource(
        kind="opcua",
        name="browse",
        endpoint=url,
        security_policy=cast(Any, policy),
        security_mode=cast(Any, mode),
        username=username,
        application_uri=application_uri,
        timeout_s=timeout_s,
    )
    options = ConnectOptions.of(
        source, state_dir=state_dir, agent_id=agent_id or "edge-agent", password=password
    )
    client = await connect(options)
    try:
        with library_errors(f"reading the NamespaceArray of {url}"):
            namespaces = [str(uri) for uri in await client.get_namespace_array()]
        roots, _ = await _walk(client, depth, include_standard, max_nodes)
        flat: list[tuple[int, _Found]] = []
        stack = [(1, node) for node in reversed(roots)]
        while stack:
            level, node = stack.pop()
            flat.append((level, node))
            stack += [(level + 1, child) for child in reversed(node.children)]
        variables = [f.node_id for _, f in flat if f.node_class == ua.NodeClass.Variable]
        types = await _read(client, variables, AttributeIds.DataType)
        access = await _read(client, variables, AttributeIds.UserAccessLevel)
        custom = sorted(
            {t for t in types if isinstance(t, ua.NodeId) and t.NamespaceIndex}, key=str
        )
        names = dict(zip(custom, await _read(client, custom, AttributeIds.BrowseName), strict=True))
    finally:
        await close(client, timeout_s)
    info = dict(zip(variables, zip(types, access, strict=True), strict=True))
    rows = []
    for level, node in flat:
        dtype, level_bits = info.get(node.node_id, (None, None))
        rows.append(
            BrowseRow(
                depth=level,
                node_id=_node_text(node.node_id, namespaces),
                browse_name=str(node.hops[-1].Name),
                node_class=node.node_class.name,
                data_type=_type_name(dtype, names),
                access=_access(level_bits),
                path=_path_text(node.hops, namespaces),
            )
        )
    return rows


def _type_name(dtype: object, names: dict[ua.NodeId, Any]) -> str | None:
    if not isinstance(dtype, ua.NodeId):
        return None
    if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int):
        return str(ObjectIdNames.get(dtype.Identifier, dtype.to_string()))
    name = names.get(dtype)
    return str(name.Name) if isinstance(name, ua.QualifiedName) else dtype.to_string()


def render_tree(rows: Sequence[BrowseRow]) -> str:
    """An indented tree, one node a line: name, [class, type, access], node id."""
    lines = []
    for row in rows:
        details = ", ".join(x for x in (row.node_class, row.data_type, row.access) if x)
        lines.append(f"{'  ' * (row.depth - 1)}{row.browse_name}  [{details}]  {row.node_id}")
    return "\n".join(lines) + ("\n" if lines else "")
