"""Cross-checks of a configuration: the relations between sections that types cannot express.

Owns: every rule that spans keys or sections (tag sources exist, names unique, writable
tags carry limits, addresses parse and fit the protocol, secrets are referenced correctly,
sync URLs are safe); the loops' rules are in agent.config.checks_loops. Each problem
is a `ConfigProblem` with a key path like `tags[3].address`.
Must not: touch the filesystem, the environment or the network (agent.config.loader checks
that secret files exist and are private).
Invariants: pure and total: it never raises on a well-typed input, and reports every
problem it finds rather than the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import ip_address
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from agent.config.addresses import (
    MAX_ADDRESS,
    ModbusType,
    parse_modbus_address,
    parse_opcua_address,
    register_count,
)
from agent.config.settings import ModbusSource, OpcUaSource, SyncSection, Tag
from agent.domain.errors import ConfigProblem

Source = OpcUaSource | ModbusSource

__all__ = ["check_sources", "check_sync", "check_tags", "first_by_name", "unique_names"]


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


_Named = TypeVar("_Named", bound=_HasName)


def unique_names(items: Iterable[tuple[int, str]], section: str, file: str) -> list[ConfigProblem]:
    first: dict[str, int] = {}
    problems = []
    for index, name in items:
        if name in first:
            problems.append(
                ConfigProblem(
                    file,
                    f"{section}[{index}].name",
                    f"a name not used by another entry of [[{section}]]",
                    f"'{name}' again (first at {section}[{first[name]}])",
                )
            )
        else:
            first[name] = index
    return problems


def check_sources(sources: Sequence[tuple[int, Source]], file: str) -> list[ConfigProblem]:
    """Unique names and secret references of every source."""
    problems = unique_names(((i, s.name) for i, s in sources), "sources", file)
    for index, source in sources:
        if isinstance(source, OpcUaSource):
            key = f"sources[{index}]"
            problems += _secret_ref(
                key,
                "password",
                source.password_file,
                source.password_credential,
                file,
                required=source.username is not None,
            )
            if source.username is not None and source.security_policy == "None":
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.username",
                        "a security_policy and security_mode other than 'None' to send a "
                        "password (or no username, for an anonymous session)",
                        "security_policy 'None'",
                    )
                )
            if source.username is None and (source.password_file or source.password_credential):
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.username",
                        "a username to go with the password",
                        "a password reference but no username",
                    )
                )
    return problems


def _secret_ref(
    key: str, what: str, path: object, credential: str | None, file: str, *, required: bool
) -> list[ConfigProblem]:
    if path is not None and credential is not None:
        return [
            ConfigProblem(
                file,
                f"{key}.{what}_file",
                f"either {what}_file or {what}_credential, not both",
                "both",
            )
        ]
    if required and path is None and credential is None:
        return [
            ConfigProblem(
                file,
                f"{key}.{what}_file",
                f"{what}_file = '/path/to/file' or {what}_credential = 'name' (systemd credential)",
                "neither",
            )
        ]
    return []


def _check_modbus_tag(key: str, tag: Tag, file: str) -> list[ConfigProblem]:
    try:
        where = parse_modbus_address(tag.address)
    except ValueError as exc:
        return [
            ConfigProblem(
                file, f"{key}.address", str(exc).removeprefix("expected "), repr(tag.address)
            )
        ]
    value_type = tag.type or (ModbusType.BOOL if where.table.is_bit else None)
    if value_type is None:
        return [
            ConfigProblem(
                file,
                f"{key}.type",
                "a type for a register tag (int16, uint16, int32, uint32, int64, "
                "uint64, float32, float64, string, or bool with a '.BIT' address)",
                "nothing",
            )
        ]
    if (where.table.is_bit or where.bit is not None) and value_type is not ModbusType.BOOL:
        return [
            ConfigProblem(
                file,
                f"{key}.type",
                "type 'bool' for a coil, discrete input or '.BIT' address",
                repr(str(value_type)),
            )
        ]
    if not where.table.is_bit and where.bit is None and value_type is ModbusType.BOOL:
        return [
            ConfigProblem(
                file,
                f"{key}.address",
                "a '.BIT' suffix (e.g. 'holding:7.3') for a bool in a register",
                repr(tag.address),
            )
        ]
    try:
        count = register_count(value_type, tag.length)
    except ValueError as exc:
        return [ConfigProblem(file, f"{key}.length", str(exc).removeprefix("expected "), "nothing")]
    problems = _check_modbus_coding(key, tag, value_type, file)
    if where.address + count - 1 > MAX_ADDRESS:
        problems.append(
            ConfigProblem(
                file,
                f"{key}.address",
                f"a {value_type} ({count} registers) ending at or below address {MAX_ADDRESS}",
                f"{tag.address!r}, which ends at {where.address + count - 1}",
            )
        )
    if tag.writable and not where.table.writable:
        problems.append(
            ConfigProblem(
                file,
                f"{key}.writable",
                "false: the Modbus table is read-only "
                f"({where.table}); writable tags live in coil or holding",
                "true",
            )
        )
    return problems


def _check_modbus_coding(
    key: str, tag: Tag, value_type: ModbusType, file: str
) -> list[ConfigProblem]:
    """What the register codec cannot honour: scaled bools/strings, writable strings."""
    problems = []
    if value_type in (ModbusType.BOOL, ModbusType.STRING) and (tag.scale, tag.offset) != (1, 0):
        problems.append(
            ConfigProblem(
                file,
                f"{key}.{'scale' if tag.scale != 1 else 'offset'}",
                f"no scale or offset on a {value_type} tag (they apply to numbers only)",
                f"scale {tag.scale:g}, offset {tag.offset:g}",
            )
        )
    if value_type is ModbusType.STRING and tag.writable:
        problems.append(
            ConfigProblem(file, f"{key}.writable", "false: string tags are read-only", "true")
        )
    return problems


def _check_limits(key: str, tag: Tag, file: str) -> list[ConfigProblem]:
    if not tag.writable:
        return []
    problems = [
        ConfigProblem(
            file,
            f"{key}.{bound}",
            "a number: a writable tag needs write_min and write_max",
            "nothing",
        )
        for bound, value in (("write_min", tag.write_min), ("write_max", tag.write_max))
        if value is None
    ]
    if tag.write_min is not None and tag.write_max is not None and tag.write_min >= tag.write_max:
        problems.append(
            ConfigProblem(
                file,
                f"{key}.write_max",
                f"a number above write_min ({tag.write_min:g})",
                f"{tag.write_max:g}",
            )
        )
    return problems


def first_by_name(items: Iterable[_Named]) -> dict[str, _Named]:
    by_name: dict[str, _Named] = {}
    for item in items:
        by_name.setdefault(item.name, item)
    return by_name


def check_tags(
    tags: Sequence[tuple[int, Tag]],
    sources: Sequence[Source],
    file: str,
    source_names: Sequence[str] = (),
) -> list[ConfigProblem]:
    """Unique names, known sources, addresses that parse and fit, limits on writable tags.

    `source_names` names every source in the file, also those that failed validation (their
    tags are not blamed for it); `sources` are the valid ones, whose addresses are checked.
    """
    problems = unique_names(((i, t.name) for i, t in tags), "tags", file)
    by_name = first_by_name(sources)
    known_names = list(dict.fromkeys([*source_names, *by_name]))
    for index, tag in tags:
        key = f"tags[{index}]"
        problems += _check_limits(key, tag, file)
        source = by_name.get(tag.source)
        if source is None and tag.source in known_names:
            continue
        if source is None:
            known = ", ".join(repr(n) for n in known_names) or "none defined"
            problems.append(
                ConfigProblem(
                    file,
                    f"{key}.source",
                    f"the name of a [[sources]] entry ({known})",
                    repr(tag.source),
                )
            )
        elif isinstance(source, ModbusSource):
            problems += _check_modbus_tag(key, tag, file)
        else:
            try:
                parse_opcua_address(tag.address)
            except ValueError as exc:
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.address",
                        str(exc).removeprefix("expected "),
                        repr(tag.address),
                    )
                )
    return problems


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_sync(sync: SyncSection, file: str) -> list[ConfigProblem]:
    """An enabled sync needs a URL; plain http is allowed to this machine only."""
    if not sync.enabled:
        return []
    if sync.url is None:
        return [
            ConfigProblem(
                file,
                "sync.url",
                "the cloud ingest URL (https://...), or enabled = false",
                "nothing",
            )
        ]
    problems = _secret_ref(
        "sync", "token", sync.token_file, sync.token_credential, file, required=False
    )
    parts = urlsplit(sync.url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        problems.append(
            ConfigProblem(
                file,
                "sync.url",
                "an https:// URL (plain http only to 127.0.0.1 or localhost)",
                repr(sync.url),
            )
        )
    if (sync.client_cert_file is None) != (sync.client_key_file is None):
        problems.append(
            ConfigProblem(
                file,
                "sync.client_key_file",
                "client_cert_file and client_key_file together (mTLS)",
                "only one of them",
            )
        )
    return problems
