"""OPC UA addresses: the browse-path grammar, and resolving addresses against a namespace
array (agent.config.addresses and the pure half of drivers.opcua_resolve; no sockets)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from agent.config.addresses import (
    BrowseName,
    BrowsePath,
    NodeAddress,
    parse_node_id,
    parse_opcua_address,
)
from drivers.opcua_resolve import node_id_of, relative_path_of

URI = "urn:plant-a:mill1"


def nid(identifier: object, namespace: int) -> ua.NodeId:
    return ua.NodeId(cast(Any, identifier), cast(Any, namespace))


NAMESPACES = ["http://opcfoundation.org/UA/", "urn:server", "urn:filler", URI]


def test_a_browse_path_parses_with_standard_hops_and_escapes() -> None:
    path = parse_opcua_address(f"nsu={URI};path=/Mill1/Feed&/Rate/0:EURange")
    assert path == BrowsePath(
        (BrowseName("Mill1"), BrowseName("Feed/Rate"), BrowseName("EURange", standard=True)),
        URI,
    )
    assert parse_opcua_address("ns=3;path=/&0:odd/a&&b") == BrowsePath(
        (BrowseName("0:odd"), BrowseName("a&b")), None, 3
    )


def test_node_ids_still_parse_as_before() -> None:
    for text in (f"nsu={URI};s=Mill1/FeedRate", "ns=2;i=1001", "i=85"):
        assert parse_opcua_address(text) == parse_node_id(text)


@pytest.mark.parametrize(("text", "why"), [
    (f"nsu={URI};path=Mill1", "starts with '/'"),
    (f"nsu={URI};path=/", "empty browse name"),
    (f"nsu={URI};path=/a//b", "empty browse name"),
    (f"nsu={URI};path=/a/", "empty browse name"),
    ("nsu=;path=/a", "needs a URI"),
    ("ns=x;path=/a", "index 0..65535"),
    (f"nsu={URI};path=/a&b", "'&' must be followed"),
])  # fmt: skip
def test_bad_browse_paths_say_what_was_expected(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as error:
        parse_opcua_address(text)
    assert str(error.value).startswith("expected ")


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)


@given(
    st.lists(st.tuples(names, st.booleans()), min_size=1, max_size=5).filter(
        lambda hops: hops[-1][0] == hops[-1][0].rstrip()  # the address text is stripped
    ),
    st.one_of(st.none(), st.just(URI)),
)
def test_every_browse_path_survives_a_round_trip(
    hops: list[tuple[str, bool]], uri: str | None
) -> None:
    path = BrowsePath(tuple(BrowseName(n, s) for n, s in hops), uri)
    assert parse_opcua_address(str(path)) == path


def test_nsu_node_ids_take_the_index_of_this_session() -> None:
    address = NodeAddress("s", "Mill1/FeedRate", URI)
    assert node_id_of(address, NAMESPACES) == nid("Mill1/FeedRate", 3)
    renumbered = ["http://opcfoundation.org/UA/", "urn:server", URI]
    assert node_id_of(address, renumbered) == nid("Mill1/FeedRate", 2)
    assert "not in the server's NamespaceArray" in str(node_id_of(address, NAMESPACES[:3]))
    guid = uuid.uuid4()
    assert node_id_of(NodeAddress("g", str(guid), URI), NAMESPACES) == nid(guid, 3)
    assert node_id_of(NodeAddress("b", "AAE=", None, 2), NAMESPACES) == nid(b"\0\1", 2)
    assert node_id_of(NodeAddress("i", "7", None, 0), NAMESPACES) == nid(7, 0)
    assert "base64" in str(node_id_of(NodeAddress("b", "!!", None, 2), NAMESPACES))


def test_a_browse_path_becomes_a_relative_path_in_this_session() -> None:
    path = parse_opcua_address(f"nsu={URI};path=/Mill1/FeedRate/0:EURange")
    assert isinstance(path, BrowsePath)
    relative = relative_path_of(path, NAMESPACES)
    assert isinstance(relative, ua.RelativePath)
    assert [(e.TargetName.Name, e.TargetName.NamespaceIndex) for e in relative.Elements] == [
        ("Mill1", 3), ("FeedRate", 3), ("EURange", 0)]  # fmt: skip
    assert all(e.IncludeSubtypes and not e.IsInverse for e in relative.Elements)
    assert "urn:plant-a:mill1" in str(relative_path_of(path, NAMESPACES[:2]))
