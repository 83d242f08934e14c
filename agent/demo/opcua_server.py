"""The simulated PLC's OPC UA server: the mill's tags on a real asyncua server.

Owns: the address space `Plant/Mill1/<Tag>` in namespace `tags.NAMESPACE_URI` (string node
ids, Double/Int32/Boolean per TagSpec.kind, EngineeringUnits, EURange, InstrumentRange,
access levels), publishing mill readings as DataValues, routing client writes into
`Mill.write`, and going down / coming back for the `server_down` fault (listener closed,
every connection and session dropped, then the same address space on the same port).
Security (certificate, policies, users) is set up by `certs.py`.
Must not: step the mill, decide any PLC logic (ranges, remote mode, access denial are the
mill's answers), or block the event loop (certificates are made in a thread).

How client writes are intercepted (asyncua 2.1): every session's Write service ends in
`InternalServer.attribute_service.write(params, user)`. We replace that one object with
`_MillAttributeService`, a subclass that answers WriteValues aimed at our tag nodes itself
and hands every other node to the stock implementation. Alternatives looked at and rejected:
value setters (`set_attribute_value_setter`) cannot return a status code, PreWrite callbacks
can only fail the whole request, and datachange callbacks run after the value is stored.
Publishing bypasses the service (`Server.write_attribute_value` goes straight to the address
space), so the server's own updates are never mistaken for client writes.

Invariants: a tag node's value only ever comes from `Mill.read`/`snapshot`; a write to a
tag node reaches `Mill.write` only if it is a Value write of the node's exact variant type,
without index range, status or timestamps (like many PLCs: otherwise BadWriteNotSupported /
BadTypeMismatch / BadNotWritable) and the status the mill returns is the status the client
gets; SourceTimestamp is the reading's sim time mapped to wall time, ServerTimestamp the
publication time, and the value of a `<Tag>SampleTime` tag (a time itself) is mapped the same
way, so it equals its result's SourceTimestamp; with `strict_writes=False` timestamps and
status in a write are ignored.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import math
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import structlog
from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from agent.demo.certs import OpcUaSecurity, configure_security, user_manager
from agent.demo.mill import Mill, Reading
from agent.demo.tags import ALL_TAGS, BY_NAME, LAB_RESULT_TAGS, NAMESPACE_URI, Kind, TagSpec

log = structlog.get_logger(__name__)

APPLICATION_URI = "urn:edge-agent:demo:plc"
_VARIANT = {Kind.DOUBLE: ua.VariantType.Double, Kind.INT32: ua.VariantType.Int32,
            Kind.BOOLEAN: ua.VariantType.Boolean}  # fmt: skip
_PY = {Kind.DOUBLE: float, Kind.INT32: int, Kind.BOOLEAN: bool}
_UNECE = {"t/h": "E18", "rpm": "RPM", "m3/h": "MQH", "%": "P1", "kW": "KWT", "mbar": "MBR",
          "degC": "CEL", "mm/s": "C16", "MPa": "MPA", "s": "SEC"}  # fmt: skip
_CEFACT = "http://www.opcfoundation.org/UA/units/un/cefact"
_STAMPS = frozenset(f"{name}SampleTime" for name in LAB_RESULT_TAGS)
"""Tags whose value is a sim time: published mapped to wall time, like SourceTimestamp."""


def _nid(identifier: str | int, namespace: int = 0) -> ua.NodeId:
    """asyncua types NodeId fields with its own int/str subclasses; plain values work fine."""
    return ua.NodeId(cast(Any, identifier), cast(Any, namespace))


def _ts(moment: dt.datetime) -> ua.DateTime:
    return cast(ua.DateTime, moment)  # ua.DateTime subclasses datetime; the codec takes any


def _status(name: str) -> ua.StatusCode:
    code = getattr(StatusCodes, name, StatusCodes.BadInternalError)
    return ua.StatusCode(cast(ua.UInt32, code))


class _MillAttributeService(AttributeService):
    """AttributeService whose writes to tag nodes are answered by the simulated PLC."""

    def __init__(
        self,
        aspace: AddressSpace,
        tags: Mapping[ua.NodeId, TagSpec],
        on_write: Callable[[TagSpec, ua.WriteValue], Awaitable[ua.StatusCode]],
    ) -> None:
        super().__init__(aspace)
        self._tags = tags
        self._on_write = on_write

    async def write(
        self,
        params: ua.WriteParameters,
        user: User | None = None,
    ) -> list[ua.StatusCode]:
        results: list[ua.StatusCode | None] = []
        others = ua.WriteParameters()
        positions: list[int] = []
        for i, item in enumerate(params.NodesToWrite):
            spec = self._tags.get(item.NodeId)
            if spec is None:
                others.NodesToWrite.append(item)
                positions.append(i)
                results.append(None)
            else:
                results.append(await self._on_write(spec, item))
        if others.NodesToWrite:
            stock = await super().write(others, user or User(role=UserRole.Admin))
            for pos, status in zip(positions, stock, strict=True):
                results[pos] = status
        return [r if r is not None else _status("BadInternalError") for r in results]


def _unit_info(unit: str) -> ua.EUInformation:
    code = _UNECE.get(unit)
    unit_id = -1 if code is None else int.from_bytes(code.encode(), "big")
    text = ua.LocalizedText(unit)
    return ua.EUInformation(NamespaceUri=_CEFACT, UnitId=unit_id, DisplayName=text,
                            Description=text)  # fmt: skip


class MillOpcUaServer:
    """One asyncua server in front of one Mill. Not thread-safe; one event loop."""

    def __init__(
        self,
        mill: Mill,
        *,
        to_wall: Callable[[float], float],
        host: str = "127.0.0.1",
        port: int = 4840,
        security: OpcUaSecurity | None = None,
        strict_writes: bool = True,
    ) -> None:
        self._mill, self._to_wall, self._host = mill, to_wall, host
        self._port, self._security, self._strict = port, security, strict_writes
        self._server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._last: dict[str, tuple[object, str, float]] = {}
        self._clock_s = 0.0
        self._lifecycle = asyncio.Lock()
        self.serving = False

    @property
    def url(self) -> str:
        return f"opc.tcp://{self._host}:{self._port}/"

    async def start(self) -> None:
        """Build the address space and listen (about 2 s, mostly asyncua's standard nodes)."""
        if self._port == 0:
            with socket.socket() as probe:
                probe.bind((self._host, 0))
                self._port = probe.getsockname()[1]
        server = Server(user_manager=user_manager(self._security))
        await server.init()
        server.disable_clock()  # we tick CurrentTime in publish(); makes stop() instant
        server.allow_remote_admin(False)
        server.set_server_name("edge-agent simulated cement mill PLC")
        await server.set_application_uri(APPLICATION_URI)
        server.set_endpoint(self.url)
        await configure_security(server, self._security, APPLICATION_URI, self._host)
        idx = await server.register_namespace(NAMESPACE_URI)
        await self._build(server, idx)
        tags = {self._nodes[spec.name]: spec for spec in ALL_TAGS}
        server.iserver.attribute_service = _MillAttributeService(
            server.iserver.aspace, tags, self._handle_write
        )
        self._server = server
        await self.publish(self._mill.snapshot())
        await server.start()
        self.serving = True
        log.info("opcua_server_started", url=self.url, secure=self._security is not None)

    async def _build(self, server: Server, idx: int) -> None:
        plant = await server.nodes.objects.add_folder(
            _nid("Plant", idx), ua.QualifiedName("Plant", idx)
        )
        mill1 = await plant.add_object(_nid("Plant/Mill1", idx), ua.QualifiedName("Mill1", idx))
        for spec in ALL_TAGS:
            path = f"Plant/Mill1/{spec.name}"
            item = ua.AddNodesItem()
            item.RequestedNewNodeId = _nid(path, idx)
            item.BrowseName = ua.QualifiedName(spec.name, idx)
            item.NodeClass = ua.NodeClass.Variable
            item.ParentNodeId = mill1.nodeid
            item.ReferenceTypeId = _nid(ObjectIds.HasComponent)
            analog = spec.kind is Kind.DOUBLE
            item.TypeDefinition = _nid(
                ObjectIds.AnalogItemType if analog else ObjectIds.BaseDataVariableType
            )
            attrs = ua.VariableAttributes()
            attrs.DisplayName = ua.LocalizedText(spec.name)
            attrs.Description = ua.LocalizedText(spec.description)
            attrs.DataType = _nid(getattr(ObjectIds, spec.kind.value))
            attrs.Value = ua.Variant(_PY[spec.kind](spec.nominal), _VARIANT[spec.kind])
            attrs.ValueRank = ua.ValueRank.Scalar
            access = ua.AccessLevel.CurrentRead.mask
            if spec.writable:
                access |= ua.AccessLevel.CurrentWrite.mask
            attrs.AccessLevel = attrs.UserAccessLevel = access
            attrs.MinimumSamplingInterval = (spec.update_s or 0.0) * 1000.0
            item.NodeAttributes = attrs
            (result,) = await server.iserver.isession.add_nodes([item])
            result.StatusCode.check()
            node = server.get_node(result.AddedNodeId)
            self._nodes[spec.name] = result.AddedNodeId
            if analog:
                for prop, value in (
                    ("EURange", ua.Range(*spec.normal)),
                    ("InstrumentRange", ua.Range(*spec.hard)),
                    ("EngineeringUnits", _unit_info(spec.unit)),
                ):
                    await node.add_property(
                        _nid(f"{path}.{prop}", idx), ua.QualifiedName(prop, 0), value
                    )

    async def stop(self) -> None:
        async with self._lifecycle:
            if self._server is not None:
                server, self._server = self._server, None
                self.serving = False
                await server.stop()
                log.info("opcua_server_stopped", url=self.url)

    async def go_down(self) -> None:
        """server_down: stop listening, drop every connection and session (like a PLC restart)."""
        async with self._lifecycle:
            if self._server is not None and self._server.bserver is not None and self.serving:
                await self._go_down(self._server)

    async def _go_down(self, server: Server) -> None:
        assert server.bserver is not None
        self.serving = False
        await server.bserver.stop()
        # Sessions with subscriptions outlive their TCP connection in asyncua 2.1 (kept for a
        # subscription transfer); a restarting PLC loses them, so close them too.
        sessions = list(getattr(server.iserver, "_external_sessions", {}).values())
        for session in sessions:
            await session.close_session(delete_subs=True)
        log.info("opcua_server_went_down", url=self.url, sessions_closed=len(sessions))

    async def come_back(self) -> None:
        async with self._lifecycle:
            if self._server is None or self._server.bserver is None or self.serving:
                return
            await self._server.bserver.start()  # same host and port, same address space
            self.serving = True
        await self.publish(self._mill.snapshot())
        log.info("opcua_server_came_back", url=self.url)

    def _datavalue(self, spec: TagSpec, reading: Reading, now: dt.datetime) -> ua.DataValue:
        status = _status(reading.status)
        if reading.value is None or status.is_bad():
            variant = ua.Variant(None, ua.VariantType.Null)
        elif spec.name in _STAMPS:
            variant = ua.Variant(self._to_wall(float(reading.value)), _VARIANT[spec.kind])
        else:
            variant = ua.Variant(_PY[spec.kind](reading.value), _VARIANT[spec.kind])
        source = dt.datetime.fromtimestamp(self._to_wall(reading.source_time), dt.UTC)
        return ua.DataValue(
            variant, StatusCode=status, SourceTimestamp=_ts(source), ServerTimestamp=_ts(now)
        )

    async def publish(self, readings: Mapping[str, Reading], *, force: bool = False) -> None:
        """Push every reading whose (value, status, source time) changed since last time."""
        server = self._server
        if server is None:
            return
        now = dt.datetime.now(dt.UTC)
        for name, reading in readings.items():
            key = (reading.value, reading.status, reading.source_time)
            nodeid = self._nodes.get(name)
            if nodeid is None or (self._last.get(name) == key and not force):
                continue
            self._last[name] = key
            await server.write_attribute_value(nodeid, self._datavalue(BY_NAME[name], reading, now))
        if now.timestamp() - self._clock_s >= 1.0:  # what asyncua's disabled clock task did
            self._clock_s = now.timestamp()
            status = server.read_attribute_value(_nid(ObjectIds.Server_ServerStatus))
            if status.Value is not None and status.Value.Value is not None:
                struct = copy.copy(status.Value.Value)
                struct.CurrentTime = now
                await server.write_attribute_value(
                    _nid(ObjectIds.Server_ServerStatus), ua.DataValue(ua.Variant(struct))
                )
            await server.write_attribute_value(
                _nid(ObjectIds.Server_ServerStatus_CurrentTime),
                ua.DataValue(ua.Variant(now, ua.VariantType.DateTime)),
            )

    def _check(self, spec: TagSpec, item: ua.WriteValue) -> str | float | int | bool:
        """The value to hand to the mill, or the name of the status that refuses the write."""
        dv = item.Value
        if item.AttributeId != AttributeIds.Value or not spec.writable:
            return "BadNotWritable"
        if item.IndexRange or dv is None:
            return "BadWriteNotSupported"
        carries_extra = (
            dv.SourceTimestamp
            or dv.ServerTimestamp
            or (dv.StatusCode is not None and not dv.StatusCode.is_good())
        )
        if self._strict and carries_extra:
            return "BadWriteNotSupported"
        variant = dv.Value
        if variant is None or variant.VariantType != _VARIANT[spec.kind] or variant.is_array:
            return "BadTypeMismatch"
        value: float | int | bool = variant.Value
        if spec.kind is Kind.DOUBLE and not math.isfinite(value):
            return "BadOutOfRange"
        return value

    async def _handle_write(self, spec: TagSpec, item: ua.WriteValue) -> ua.StatusCode:
        checked = self._check(spec, item)
        status = checked if isinstance(checked, str) else self._mill.write(spec.name, checked)
        shown = None if isinstance(checked, str) else checked
        emit = log.debug if status == "Good" else log.info
        emit("opcua_write_answered", tag=spec.name, status=status, value=shown)
        if status == "Good":  # show the accepted setpoint at once, as a PLC would
            await self.publish({spec.name: self._mill.read(spec.name)})
        return _status(status)
