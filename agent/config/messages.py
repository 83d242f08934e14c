"""Turning validation errors into messages plant IT can act on.

Owns: the rendering of a pydantic error as a `ConfigProblem` (key path like `tags[3].address`,
what was expected, what was found, in words rather than pydantic's), and finding the line
of a key in the TOML text.
Must not: read files, the environment (beyond naming an overriding variable) or validate.
Invariants: a secret's value is never rendered: an inline secret key is reported by name.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel

from agent.config.settings import SECRET_FIELDS, ObjectiveSettings, Settings, Source
from agent.domain.errors import ConfigProblem

ENV_PREFIX = "EDGE_AGENT__"


def kinds_of(union: Any) -> dict[str | int, type[BaseModel]]:
    """`kind` -> settings class of a discriminated union (`Annotated[A | B, ...]` or
    `Annotated[A, ...]`), read from the schema itself, so a new member needs no list here."""
    members = get_args(union)[0]
    classes = get_args(members) or (members,)
    return {get_args(c.model_fields["kind"].annotation)[0]: c for c in classes}


_SOURCE_KINDS = kinds_of(Source)
_OBJECTIVE_KINDS = kinds_of(ObjectiveSettings)


class Lines:
    """Finds the line of a key path in the TOML text (best effort, for the message)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.]+)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.where: dict[str, int] = {}
        counts: dict[str, int] = {}
        prefix = ""
        for number, line in enumerate(text.splitlines(), start=1):
            if match := self._header.match(line):
                name = match[2]
                head, dot, tail = name.partition(".")
                parent = f"{head}[{counts[head]}]." if dot and head in counts else name + "."
                path = parent + tail if dot and head in counts else name
                if match[1] == "[[":
                    counts[path] = counts.get(path, -1) + 1
                    prefix = f"{path}[{counts[path]}]"
                else:
                    prefix = path
                self.where.setdefault(prefix, number)
            elif (match := self._key.match(line)) and prefix:
                self.where.setdefault(f"{prefix}.{match[1]}", number)
            elif match:
                self.where.setdefault(match[1], number)

    def locate(self, problem: ConfigProblem) -> ConfigProblem:
        """The problem with the line of its key appended to the file name, where known."""
        line = self.line(problem.key)
        if line is None or problem.file != self.file:
            return problem
        return ConfigProblem(f"{problem.file}:{line}", problem.key, problem.expected, problem.found)

    def line(self, key: str) -> int | None:
        while key:
            if key in self.where:
                return self.where[key]
            key = key.rpartition(".")[0] if "." in key else key.rpartition("[")[0]
        return None


_SHOWN = 80  # characters of a found value shown in a message (a line plant IT can read)


def _found(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > _SHOWN:
            return f"'{value[:_SHOWN]}...' (text of {len(value)} characters)"
        return f"'{value}' (text)"
    if isinstance(value, int | float):
        text = repr(value)
        if len(text) > _SHOWN:
            return f"{text[:_SHOWN]}... (a number of {len(text)} digits)"
        return f"{text} (number)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


_PATTERN_HELP = {
    "name": "a name of letters, digits, '_', '.', '-' starting with a letter (at most 64)",
    "id": "an id of letters, digits, '_', '.', '-' (at most 64)",
    "endpoint": "an OPC UA endpoint URL like 'opc.tcp://10.0.0.5:4840'",
    "url": "an https:// URL",
}
_TYPE_HELP = {
    "float": "a number",
    "int": "a whole number",
    "bool": "true or false",
    "string": "text in quotes",
    "list": "an array",
    "dict": "a table",
    "model": "a table",
    "path": "a file path in quotes",
    "model_attributes": "a table",
}


def _key_path(loc: tuple[str | int, ...]) -> tuple[str, type[BaseModel] | None]:
    """Render a pydantic location as `tags[3].address`; return the model owning the last key."""
    model: Any = Settings
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if model is object:  # a discriminated union: this location item is the tag
            model = _SOURCE_KINDS.get(item) or _OBJECTIVE_KINDS.get(item)
            continue
        if item in _OBJECTIVE_KINDS and model is not None and item not in model.model_fields:
            model = _OBJECTIVE_KINDS[item]  # the tag of `[loops.objective]`: not a key path
            continue
        fields = getattr(model, "model_fields", {}) if model is not None else {}
        parts.append(("." if parts else "") + item)
        model = _inner_model(fields[item].annotation) if item in fields else None
    return "".join(parts), model


def _inner_model(annotation: Any) -> Any:
    """The model type inside `list[Model]`, `Model | None` or a discriminated union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = getattr(annotation, "__args__", ())
    models = [m for m in (_inner_model(a) for a in args) if m is not None]
    return models[0] if len(models) == 1 else (object if models else None)


def problem_from_error(error: Mapping[str, Any], file: str, lines: Lines) -> ConfigProblem:
    key, _ = _key_path(tuple(error["loc"]))
    kind: str = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    expected = error["msg"]
    found = _found(value)
    if kind == "extra_forbidden":
        _, model = _key_path(tuple(error["loc"][:-1]))
        name = str(error["loc"][-1])
        known = sorted(getattr(model, "model_fields", {})) if model not in (None, object) else []
        if name in SECRET_FIELDS:
            file_key, cred_key = SECRET_FIELDS[name]
            expected = (
                f"the secret in a file: {file_key} = '/etc/edge-agent/...' or "
                f"{cred_key} = 'name' (systemd LoadCredential=); never inline"
            )
            found = "an inline secret (refused; its value is not shown)"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            expected = f"{hint}one of the known keys: {', '.join(known)}"
            found = f"unknown key '{name}'"
    elif kind == "missing":
        expected, found = "a value (this key is required)", "nothing"
    elif kind == "union_tag_invalid":
        key = f"{key}.kind"
        tag = value.get("kind", ctx.get("tag")) if isinstance(value, dict) else ctx.get("tag")
        expected, found = f"one of {ctx.get('expected_tags')}", repr(tag)  # as written: 5, 'x'

    elif kind == "union_tag_not_found":
        key = f"{key}.kind"
        expected, found = "kind = 'opcua' or kind = 'modbus'", "nothing"
    elif kind in ("literal_error", "enum"):
        expected = f"one of {ctx.get('expected')}"
    elif kind == "string_pattern_mismatch":
        expected = _PATTERN_HELP.get(key.rpartition(".")[2], f"text matching {ctx.get('pattern')}")
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        symbol = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }[kind]
        bound = next(iter(ctx.values()))
        expected = f"a number {symbol} {int(bound) if float(bound).is_integer() else bound}"
    elif kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
        base = kind.removesuffix("_type").removesuffix("_parsing").removesuffix("_from_float")
        expected = _TYPE_HELP.get(base, expected)
    elif kind == "value_error":  # our validators say "expected; found ..."
        expected, _, found = str(ctx.get("error", expected)).partition("; found ")
    env_name = ENV_PREFIX + key.replace(".", "__").upper()
    if "[" not in key and env_name in {n.upper() for n in os.environ}:
        return ConfigProblem("environment", env_name, expected, found)
    return lines.locate(ConfigProblem(file, key, expected, found))
