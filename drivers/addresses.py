"""Parsing of tag addresses: OPC UA node ids and Modbus table addresses.

Owns: the textual address grammar plant IT writes in the configuration file, turned into
plain values the drivers use, and the width of each Modbus data type in registers.
Must not: import a protocol library or touch a socket (the configuration check runs it).
Invariants: a parsed address is always inside the protocol's limits (Modbus addresses
0..65535 including every register the value spans; OPC UA numeric ids 0..2**32-1); every
parse failure is a `ValueError` whose message says what was expected.
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
