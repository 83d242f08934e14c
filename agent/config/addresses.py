"""Parsing of tag addresses: OPC UA node ids and Modbus table addresses.

Owns: the textual address grammar plant IT writes in the configuration file, turned into
plain values the drivers use (OPC UA node ids and browse paths, Modbus table addresses), and
the width of each Modbus data type in registers.
Must not: import a protocol library or touch a socket (the configuration check runs it).
Invariants: a parsed address is always inside the protocol's limits (Modbus addresses
0..65535 including every register the value spans; OPC UA numeric ids 0..2**32-1); every
parse failure is a `ValueError` whose message says what was expected; `str()` of a parsed
OPC UA address parses back to an equal value.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

NodeIdKind = Literal["i", "s", "g", "b"]


@dataclass(frozen=True)
class NodeAddress:
    """An OPC UA node id, with the namespace given by URI (preferred) or by index."""

    kind: NodeIdKind
    identifier: str
    namespace_uri: str | None = None
    namespace_index: int = 0

    def __str__(self) -> str:
        prefix = (
            f"nsu={self.namespace_uri};"
            if self.namespace_uri is not None
            else (f"ns={self.namespace_index};" if self.namespace_index else "")
        )
        return f"{prefix}{self.kind}={self.identifier}"


_NODE_ID_HELP = (
    "an OPC UA node id like 'nsu=urn:plant:mill;s=Plant/Mill1/FeedRate' or 'ns=2;i=1001'"
)


def parse_node_id(text: str) -> NodeAddress:
    """Parse `[nsu=URI;|ns=N;](i=N|s=STR|g=GUID|b=BASE64)`; raise ValueError naming the form."""
    rest = text.strip()
    namespace_uri: str | None = None
    namespace_index = 0
    if rest.startswith("nsu="):
        uri, sep, rest = rest[4:].partition(";")
        if not sep or not uri:
            raise ValueError(f"expected {_NODE_ID_HELP}: 'nsu=' needs a URI followed by ';'")
        namespace_uri = uri
    elif rest.startswith("ns="):
        index, sep, rest = rest[3:].partition(";")
        if not sep or not index.isdigit() or int(index) > 65535:
            raise ValueError(f"expected {_NODE_ID_HELP}: 'ns=' needs an index 0..65535 and ';'")
        namespace_index = int(index)
    kind, sep, identifier = rest.partition("=")
    if not sep or kind not in ("i", "s", "g", "b") or not identifier:
        raise ValueError(f"expected {_NODE_ID_HELP}")
    if kind == "i" and (not identifier.isdigit() or int(identifier) >= 2**32):
        raise ValueError("expected a numeric identifier 0..4294967295 after 'i='")
    if kind == "g":
        try:
            uuid.UUID(identifier)
        except ValueError:
            raise ValueError("expected a GUID after 'g='") from None
    return NodeAddress(kind, identifier, namespace_uri, namespace_index)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BrowseName:
    """One hop of a browse path: a browse name in the path's namespace, or in namespace 0."""

    name: str
    standard: bool = False  # True: the OPC UA standard namespace (written '0:Name')

    def __str__(self) -> str:
        escaped = self.name.replace("&", "&&").replace("/", "&/")
        if not self.standard and escaped.startswith("0:"):
            escaped = "&" + escaped  # a literal leading '0:' is escaped
        return ("0:" if self.standard else "") + escaped


@dataclass(frozen=True)
class BrowsePath:
    """A node named by its browse path from the Objects folder, resolved on the server.

    Text form: `nsu=URI;path=/Plant/Mill1/FeedRate` (or `ns=N;path=...`): every hop is a
    browse name in that namespace, except hops written `0:Name` (the standard namespace,
    e.g. `/Plant/Mill1/FeedRate/0:EURange`). In a name, `&/` is a literal '/', `&&` a
    literal '&' and a leading `&0:` a literal '0:'. Like every address, the text is
    stripped of surrounding whitespace first.
    """

    segments: tuple[BrowseName, ...]
    namespace_uri: str | None = None
    namespace_index: int = 0

    def __str__(self) -> str:
        prefix = (
            f"nsu={self.namespace_uri};"
            if self.namespace_uri is not None
            else (f"ns={self.namespace_index};" if self.namespace_index else "")
        )
        return f"{prefix}path=/" + "/".join(str(segment) for segment in self.segments)


OpcUaAddress = NodeAddress | BrowsePath

_PATH_HELP = (
    "a browse path like 'nsu=urn:plant:mill;path=/Plant/Mill1/FeedRate' (hops from the "
    "Objects folder, '0:Name' for a standard browse name, '&/' for a '/' inside a name)"
)


def _split_path(text: str) -> tuple[BrowseName, ...]:
    if not text.startswith("/"):
        raise ValueError(f"expected {_PATH_HELP}: the path starts with '/'")
    segments: list[BrowseName] = []
    current: list[str] = []
    standard = False
    at_start = True
    i = 1
    while i <= len(text):
        char = text[i] if i < len(text) else "/"
        if char == "&":
            if i + 1 < len(text) and text[i + 1] in "&/":
                current.append(text[i + 1])
                i += 2
                at_start = False
                continue
            if at_start and text.startswith("0:", i + 1):
                current.append("0:")
                i += 3
                at_start = False
                continue
            raise ValueError(f"expected {_PATH_HELP}: '&' must be followed by '/', '&' or '0:'")
        if char == "/":
            if not current:
                raise ValueError(f"expected {_PATH_HELP}: empty browse name in the path")
            segments.append(BrowseName("".join(current), standard))
            current, standard, at_start = [], False, True
            i += 1
            continue
        if at_start and text.startswith("0:", i):
            standard = True
            i += 2
            at_start = False
            continue
        current.append(char)
        at_start = False
        i += 1
    return tuple(segments)


def parse_opcua_address(text: str) -> OpcUaAddress:
    """Parse a node id (see `parse_node_id`) or a browse path `[nsu=URI;|ns=N;]path=/A/B`."""
    rest = text.strip()
    head, sep, tail = rest.partition(";")
    namespace_uri: str | None = None
    namespace_index = 0
    body = rest
    if sep and (head.startswith(("nsu=", "ns="))):
        if not tail.startswith("path="):
            return parse_node_id(rest)
        if head.startswith("nsu="):
            namespace_uri = head[4:]
            if not namespace_uri:
                raise ValueError(f"expected {_PATH_HELP}: 'nsu=' needs a URI followed by ';'")
        else:
            if not head[3:].isdigit() or int(head[3:]) > 65535:
                raise ValueError(f"expected {_PATH_HELP}: 'ns=' needs an index 0..65535 and ';'")
            namespace_index = int(head[3:])
        body = tail
    if not body.startswith("path="):
        return parse_node_id(rest)
    segments = _split_path(body[5:])
    if not segments:
        raise ValueError(f"expected {_PATH_HELP}: at least one browse name after 'path=/'")
    return BrowsePath(segments, namespace_uri, namespace_index)


class Table(StrEnum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)


class ModbusType(StrEnum):
    """Value types a Modbus tag can decode to."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


INT_RANGES: dict[ModbusType, tuple[int, int]] = {
    ModbusType.INT16: (-(2**15), 2**15 - 1),
    ModbusType.UINT16: (0, 2**16 - 1),
    ModbusType.INT32: (-(2**31), 2**31 - 1),
    ModbusType.UINT32: (0, 2**32 - 1),
    ModbusType.INT64: (-(2**63), 2**63 - 1),
    ModbusType.UINT64: (0, 2**64 - 1),
}
"""The values each integer type holds."""


REGISTERS_PER_TYPE: dict[ModbusType, int] = {
    ModbusType.BOOL: 1,
    ModbusType.INT16: 1,
    ModbusType.UINT16: 1,
    ModbusType.INT32: 2,
    ModbusType.UINT32: 2,
    ModbusType.INT64: 4,
    ModbusType.UINT64: 4,
    ModbusType.FLOAT32: 2,
    ModbusType.FLOAT64: 4,
}

MAX_ADDRESS = 65535
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000


@dataclass(frozen=True)
class ModbusAddress:
    """A Modbus location: table, zero-based address and, for bit-in-register, the bit."""

    table: Table
    address: int
    bit: int | None = None

    def __str__(self) -> str:
        return f"{self.table}:{self.address}" + ("" if self.bit is None else f".{self.bit}")


_TABLE_ALIASES = {
    "coil": Table.COIL,
    "discrete_input": Table.DISCRETE_INPUT,
    "discrete": Table.DISCRETE_INPUT,
    "holding": Table.HOLDING,
    "input": Table.INPUT,
}
_MODBUS_RE = re.compile(r"^(?P<table>[a-z_]+):(?P<address>\d+)(?:\.(?P<bit>\d+))?$")
_MODBUS_HELP = (
    "a Modbus address 'TABLE:ADDRESS[.BIT]' with TABLE one of coil, discrete_input, holding, "
    "input and a zero-based ADDRESS 0..65535 (e.g. 'holding:100' or 'holding:7.3')"
)


def parse_modbus_address(text: str) -> ModbusAddress:
    """Parse `table:address[.bit]`; raise ValueError naming the expected form."""
    match = _MODBUS_RE.match(text.strip())
    if match is None or match["table"] not in _TABLE_ALIASES:
        raise ValueError(f"expected {_MODBUS_HELP}")
    table = _TABLE_ALIASES[match["table"]]
    address = int(match["address"])
    if address > MAX_ADDRESS:
        raise ValueError(f"expected an address 0..{MAX_ADDRESS} in {_MODBUS_HELP}")
    bit: int | None = None
    if match["bit"] is not None:
        bit = int(match["bit"])
        if table.is_bit:
            raise ValueError("expected no '.BIT' on a coil or discrete input address")
        if bit > 15:
            raise ValueError("expected a bit number 0..15 after '.'")
    return ModbusAddress(table, address, bit)


def register_count(value_type: ModbusType, string_length: int | None = None) -> int:
    """Registers (or bits, for bit tables) one value of `value_type` occupies."""
    if value_type is ModbusType.STRING:
        if not string_length or string_length < 1:
            raise ValueError("expected a positive length (characters) for a string tag")
        return (string_length + 1) // 2
    return REGISTERS_PER_TYPE[value_type]
