"""Resolving tag addresses into the node ids of one session, after every (re)connect.

Owns: reading the server's NamespaceArray, turning `nsu=` node ids into the session's
namespace indexes, translating browse paths (TranslateBrowsePathsToNodeIds, batched),
and saying why a tag could not be resolved.
Must not: cache anything across sessions (a restarted server may renumber its namespaces
or rebuild its address space), raise for one bad tag (one unresolvable tag is a Bad sample
for that tag, not a dead driver), or log (the driver logs, with its rate rules).
Invariants: every tag given comes back exactly once, either resolved or unresolved with
Bad_NodeIdUnknown and a reason; a namespace index is only ever taken from this session's
NamespaceArray (or from the address itself for `ns=` addresses, which do not survive a
renumbering: the configuration check prefers `nsu=`).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds

from agent.config.addresses import BrowsePath, NodeAddress, OpcUaAddress
from agent.domain.samples import BAD_NODE_ID_UNKNOWN
from drivers.opcua_connect import library_errors
from drivers.opcua_values import status_name

__all__ = ["Resolution", "Unresolved", "node_id_of", "relative_path_of", "resolve"]

_CHUNK = 1000
_OBJECTS = ua.NodeId(cast(Any, ObjectIds.ObjectsFolder), cast(Any, 0))
_HIERARCHICAL = ua.NodeId(cast(Any, ObjectIds.HierarchicalReferences), cast(Any, 0))
_FULL_MATCH = 0xFFFFFFFF


@dataclass(frozen=True)
class Unresolved:
    tag: str
    reason: str
    status: int = BAD_NODE_ID_UNKNOWN


@dataclass(frozen=True)
class Resolution:
    node_ids: dict[str, ua.NodeId]
    unresolved: list[Unresolved]
    namespaces: list[str]


def _namespace(
    uri: str | None, index: int, namespaces: Sequence[str]
) -> tuple[int | None, str | None]:
    if uri is None:
        return index, None
    try:
        return namespaces.index(uri), None
    except ValueError:
        return None, f"namespace URI '{uri}' is not in the server's NamespaceArray"


def node_id_of(address: NodeAddress, namespaces: Sequence[str]) -> ua.NodeId | str:
    """The session's NodeId for an address, or the reason there is none. Pure."""
    index, problem = _namespace(address.namespace_uri, address.namespace_index, namespaces)
    if index is None:
        return problem or "unknown namespace"
    identifier: object
    if address.kind == "i":
        identifier = int(address.identifier)
    elif address.kind == "g":
        identifier = uuid.UUID(address.identifier)
    elif address.kind == "b":
        try:
            identifier = base64.b64decode(address.identifier, validate=True)
        except (binascii.Error, ValueError):
            return "the b= identifier is not valid base64"
    else:
        identifier = address.identifier
    return ua.NodeId(cast(Any, identifier), cast(Any, index))


def relative_path_of(path: BrowsePath, namespaces: Sequence[str]) -> ua.RelativePath | str:
    """The RelativePath (from the Objects folder) of a browse path, or why not. Pure."""
    index, problem = _namespace(path.namespace_uri, path.namespace_index, namespaces)
    if index is None:
        return problem or "unknown namespace"
    relative = ua.RelativePath()
    for segment in path.segments:
        element = ua.RelativePathElement()
        element.ReferenceTypeId = _HIERARCHICAL
        element.IsInverse = cast(Any, False)
        element.IncludeSubtypes = cast(Any, True)
        element.TargetName = ua.QualifiedName(segment.name, 0 if segment.standard else index)
        relative.Elements.append(element)
    return relative


def _target(result: ua.BrowsePathResult) -> ua.NodeId | str:
    if not result.StatusCode.is_good():
        return f"browse path not found ({status_name(result.StatusCode.value)})"
    for target in result.Targets:
        if target.RemainingPathIndex != _FULL_MATCH:
            continue
        found = target.TargetId  # asyncua decodes it as a plain NodeId when local
        if getattr(found, "ServerIndex", 0) or getattr(found, "NamespaceUri", None):
            return "browse path leads to another server"
        return ua.NodeId(found.Identifier, found.NamespaceIndex)
    return "browse path not found (no complete match)"


async def resolve(client: Client, addresses: Sequence[tuple[str, OpcUaAddress]]) -> Resolution:
    """Resolve every (tag, address) against the connected server (see module invariants)."""
    with library_errors(f"reading the NamespaceArray of {client.server_url.geturl()}"):
        namespaces = [str(uri) for uri in await client.get_namespace_array()]
    node_ids: dict[str, ua.NodeId] = {}
    unresolved: list[Unresolved] = []
    pending: list[tuple[str, ua.BrowsePath]] = []
    for tag, address in addresses:
        if isinstance(address, NodeAddress):
            found = node_id_of(address, namespaces)
        else:
            relative = relative_path_of(address, namespaces)
            if isinstance(relative, ua.RelativePath):
                request = ua.BrowsePath()
                request.StartingNode = _OBJECTS
                request.RelativePath = relative
                pending.append((tag, request))
                continue
            found = relative
        if isinstance(found, ua.NodeId):
            node_ids[tag] = found
        else:
            unresolved.append(Unresolved(tag, f"{address}: {found}"))
    addresses_by_tag = dict(addresses)
    for start in range(0, len(pending), _CHUNK):
        chunk = pending[start : start + _CHUNK]
        with library_errors("translating browse paths"):
            results = await client.uaclient.translate_browsepaths_to_nodeids(
                [request for _, request in chunk]
            )
        for (tag, _), result in zip(chunk, results, strict=True):
            found = _target(result)
            if isinstance(found, ua.NodeId):
                node_ids[tag] = found
            else:
                unresolved.append(Unresolved(tag, f"{addresses_by_tag[tag]}: {found}"))
    return Resolution(node_ids, unresolved, namespaces)
