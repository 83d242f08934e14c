"""Configuration files for tests, built from TOML data, never edited as text.

Owns: `ConfigDoc`, a TOML document loaded with tomllib into dicts and lists, edited by key
path and written back with a small writer (`dumps`) for the shapes our configs use (tables,
arrays of tables, strings, numbers, booleans, lists of scalars); `replace_once` for the
tests whose subject is the text itself (a broken file, a line number in a message), and
`sub_once`, its regex twin; `agent_config` and its parts (`opcua_source`, `modbus_source`,
`mill_tags`, `FEEDER_TAG`): the base config of a test's agent, built from dicts.

Must not: edit a config with `str.replace` or a regex (a no-op once the demo config
changes), guess a key that is not there, or write what tomllib would read back differently.

Invariants: every edit fails loudly (KeyError naming the path and what is there) when the
key it sets or removes is missing, or the key it adds is already present; a selector matches
at least one entry (`[*]`) or exactly one (`[key=value]`, `[i]`); `dumps(doc)` read back with
tomllib equals `doc`.

Paths: dotted keys, each optionally followed by one selector into an array of tables:
`sync.enabled`, `loops[*].cadence_s`, `loops[1].model`, `loops[name=limestone].mode`,
`loops[0].inputs[feature=feed_rate]` (an entry of an array: `remove` drops it).
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from agent.demo.headless.config import dumps

Table = dict[str, Any]

_SEGMENT = re.compile(r"^(?P<key>[A-Za-z0-9_-]+)(?:\[(?P<selector>[^\]]+)\])?$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigDoc:
    """A TOML configuration as data: read, edit by key path (loudly), write."""

    def __init__(self, data: Table) -> None:
        self.data = data

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls(tomllib.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def parse(cls, text: str) -> Self:
        return cls(tomllib.loads(text))

    def get(self, path: str) -> Any:
        """The one value at `path` (a selector that matches several is an error here)."""
        found = [table[key] for table, key in self._slots(path, must_exist=True)]
        if len(found) != 1:
            raise KeyError(f"{path}: {len(found)} values match, expected one")
        return found[0]

    def has(self, path: str) -> bool:
        """Whether `path` names a value (in every entry its selectors match)."""
        try:
            self._slots(path, must_exist=True)
        except KeyError:
            return False
        return True

    def set(self, path: str, value: object) -> Self:
        """Change a key that is there (in every entry the selectors match)."""
        for table, key in self._slots(path, must_exist=True):
            table[key] = value
        return self

    def add(self, path: str, value: object) -> Self:
        """Add a key that is not there yet (its table must be)."""
        for table, key in self._slots(path, must_exist=False):
            if key in table:
                raise KeyError(f"{path}: already there ({table[key]!r}), expected a new key")
            table[key] = value
        return self

    def append(self, path: str, entry: Table) -> Self:
        """Append an entry to the array of tables at `path` (which must be there)."""
        for table, key in self._slots(path, must_exist=True):
            array = table[key]
            if not isinstance(array, list):
                raise KeyError(f"{path}: expected an array of tables, found {array!r}")
            array.append(entry)
        return self

    def remove(self, path: str) -> Self:
        """Drop a key, or the entries of an array its last selector matches."""
        *parents, last = _split(path)
        match = _SEGMENT.match(last)
        assert match is not None
        if match["selector"] is None:
            for table, key in self._slots(path, must_exist=True):
                del table[key]
            return self
        for table in self._tables(parents, path):
            array = _array(table, match["key"], path)
            chosen = list(_select(array, match["selector"], path))
            table[match["key"]] = [e for e in array if not any(e is c for c in chosen)]
        return self

    def text(self) -> str:
        return dumps(self.data)

    def write(self, path: Path) -> Path:
        path.write_text(self.text(), encoding="utf-8")
        return path

    def _slots(self, path: str, *, must_exist: bool) -> list[tuple[Table, str]]:
        *parents, last = _split(path)
        if not _BARE_KEY.match(last):
            raise KeyError(f"{path}: the last part must be a plain key, found {last!r}")
        slots = [(table, last) for table in self._tables(parents, path)]
        if must_exist:
            for table, key in slots:
                if key not in table:
                    raise KeyError(f"{path}: no key {key!r}, found {sorted(table)}")
        return slots

    def _tables(self, segments: list[str], path: str) -> list[Table]:
        tables = [self.data]
        for segment in segments:
            match = _SEGMENT.match(segment)
            if match is None:
                raise KeyError(f"{path}: cannot read the part {segment!r}")
            key, selector = match["key"], match["selector"]
            step: list[Table] = []
            for table in tables:
                if selector is None:
                    child = table.get(key)
                    if not isinstance(child, dict):
                        raise KeyError(f"{path}: no table {key!r}, found {sorted(table)}")
                    step.append(child)
                else:
                    step.extend(_select(_array(table, key, path), selector, path))
            tables = step
        return tables


def _split(path: str) -> list[str]:
    parts = re.findall(r"[^.\[]+(?:\[[^\]]*\])?", path)
    if ".".join(parts) != path:
        raise KeyError(f"{path}: not a key path (dotted keys, [i], [*] or [key=value])")
    return parts


def _array(table: Table, key: str, path: str) -> list[Table]:
    array = table.get(key)
    if not isinstance(array, list) or not all(isinstance(e, dict) for e in array):
        raise KeyError(f"{path}: no array of tables {key!r}, found {sorted(table)}")
    return array


def _select(array: list[Table], selector: str, path: str) -> Iterator[Table]:
    if selector == "*":
        if not array:
            raise KeyError(f"{path}: [*] of an empty array")
        yield from array
    elif selector.isdigit():
        index = int(selector)
        if index >= len(array):
            raise KeyError(f"{path}: [{index}] of an array of {len(array)}")
        yield array[index]
    else:
        name, sep, wanted = selector.partition("=")
        chosen = [e for e in array if sep and str(e.get(name)) == wanted]
        if len(chosen) != 1:
            present = [e.get(name) for e in array]
            raise KeyError(f"{path}: [{selector}] matches {len(chosen)} of {present}, expected 1")
        yield chosen[0]


# -- the writer: agent.demo.headless.config.dumps (the evaluation writes its config with it) --


def sub_once(pattern: str, new: str, text: str, *, flags: int = 0) -> str:
    """`re.sub(pattern, new, text)` for tests whose subject is text (a bundle's script, a
    unit file): fails loudly unless `pattern` matches exactly once."""
    result, found = re.subn(pattern, new, text, flags=flags)
    if found != 1:
        raise AssertionError(f"expected /{pattern}/ to match once in the text, found {found}")
    return result


def replace_once(text: str, old: str, new: str) -> str:
    """`text` with its one `old` replaced: for tests whose subject is the text itself (a
    broken file, a line number in a message). Fails loudly unless `old` is there once."""
    found = text.count(old)
    if found != 1:
        raise AssertionError(f"expected {old!r} once in the text, found it {found} times")
    return text.replace(old, new)


# -- the base config of a test's agent --------------------------------------------------------

MILL = "nsu=urn:edge-agent:demo:cement-mill;s=Plant/Mill1/"
"""The simulated mill's tag addresses: `MILL + "FeedRate"`."""


def opcua_source(endpoint: str, *, name: str = "mill", **fields: object) -> Table:
    """An OPC UA source without security, sampling fast (fields add or change keys)."""
    return {"kind": "opcua", "name": name, "endpoint": endpoint, "security_policy": "None",
            "security_mode": "None", "publishing_interval_s": 0.2, "sampling_interval_s": 0.1,
            **fields}  # fmt: skip


def modbus_source(port: int, *, name: str = "feeders", **fields: object) -> Table:
    return {"kind": "modbus", "name": name, "host": "127.0.0.1", "port": port, **fields}


def mill_tags(*names: str, source: str = "mill", **fields: object) -> list[Table]:
    """Tags of the simulated mill's OPC UA server, by their names there."""
    return [{"name": n, "source": source, "address": MILL + n, **fields} for n in names]


FEEDER_TAG: Table = {"name": "ClinkerFeedRate", "source": "feeders", "address": "input:1",
                     "type": "int16", "unit_id": 1, "scale": 0.1}  # fmt: skip
"""The simulated feeders' clinker feed rate, read over Modbus (source `feeders`)."""


def agent_config(
    agent_id: str,
    *,
    sources: list[Table],
    tags: list[Table],
    sync: Table | None = None,
    api: Table | None = None,
    **agent: object,
) -> ConfigDoc:
    """An agent's config: [agent] (id, state_dir "state", then `agent`), its sources and
    tags, and [sync] / [api] when given (left out: the agent's defaults). Edit the result
    by key path, then `write` it."""
    data: Table = {"agent": {"id": agent_id, "state_dir": "state", **agent}}
    data |= {"sources": sources, "tags": tags}
    data |= {k: v for k, v in (("sync", sync), ("api", api)) if v is not None}
    return ConfigDoc(copy.deepcopy(data))  # shared parts (FEEDER_TAG) stay as they are


def single_product(config: ConfigDoc) -> ConfigDoc:
    """The demo config as a one-product mill (no `[product_selection]`, no `[[products]]`;
    `[[quality.products]]` only the default product's): the loops run their own model, for
    the tests whose subject is not the product table (docs/operations.md 13)."""
    for key in ("product_selection", "products"):
        if config.has(key):
            config.remove(key)
    if config.has("quality.products"):
        default = config.get("quality.default_product")
        config.set("quality.products", [p for p in config.get("quality.products")
                                        if p["name"] == default])  # fmt: skip
    return config
