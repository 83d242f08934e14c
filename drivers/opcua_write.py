"""Writing one value to one OPC UA node, the way PLCs accept it.

Owns: the node's data type (read once per session and cached, subtypes such as Duration
or enumerations followed to their built-in type), coercing the value into exactly that
variant type, and sending the value alone: no status code, no source or server timestamp
(many PLCs answer BadWriteNotSupported otherwise).
Must not: decide whether a tag may be written or map the write's status into an error
(drivers.opcua does both), retry, or outlive its session (the cache belongs to it).
Invariants: a value that does not fit the node's type (a fraction for an Int32, out of
range, NaN) is refused with WriteRejectedError before anything is sent; what is sent is
exactly the returned Variant.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.ua.attribute_ids import AttributeIds

from agent.domain.errors import WriteRejectedError
from drivers.opcua_connect import library_errors
from drivers.opcua_values import coerce_for_write, status_name

__all__ = ["NodeWriter"]

_LAST_BUILTIN = 25  # DiagnosticInfo: ns=0 data types 1..25 are the built-in variant types


class NodeWriter:
    """Writes for one session: `write(name, node_id, raw) -> (variant sent, status)`."""

    def __init__(self, client: Client, endpoint: str) -> None:
        self._client = client
        self._endpoint = endpoint
        self._types: dict[ua.NodeId, ua.VariantType] = {}

    async def write(
        self, name: str, node_id: ua.NodeId, raw: float | int | bool
    ) -> tuple[ua.Variant, int]:
        vtype = self._types.get(node_id) or await self._data_type(name, node_id)
        try:
            variant = coerce_for_write(raw, vtype)
        except ValueError as exc:
            raise WriteRejectedError(f"cannot write {name}: expected {exc}") from exc
        datavalue = ua.DataValue(variant, StatusCode=None)  # no status, no timestamps
        with library_errors(f"writing {name} to {self._endpoint}"):
            (status,) = await self._client.uaclient.session.write_attributes(
                [node_id], [datavalue], AttributeIds.Value
            )
        return variant, status.value

    async def _data_type(self, name: str, node_id: ua.NodeId) -> ua.VariantType:
        with library_errors(f"reading the data type of {name} from {self._endpoint}"):
            (found,) = await self._client.uaclient.session.read_attributes(
                [node_id], AttributeIds.DataType
            )
            code = found.StatusCode.value if found.StatusCode is not None else 0
            if code >= 0x80000000 or found.Value is None or found.Value.Value is None:
                raise WriteRejectedError(f"cannot write {name}: {status_name(code)}")
            dtype = cast(ua.NodeId, found.Value.Value)
            identifier = dtype.Identifier
            builtin = isinstance(identifier, int) and 0 < identifier <= _LAST_BUILTIN
            if dtype.NamespaceIndex == 0 and builtin:
                vtype = ua.VariantType(cast(int, identifier))
            else:
                lookup: Awaitable[ua.VariantType] = data_type_to_variant_type(
                    self._client.get_node(dtype)
                )
                vtype = await lookup
        self._types[node_id] = vtype
        return vtype
