"""Loading the configuration: TOML file, environment overrides, secret files, every problem.

Owns: reading the TOML file, applying `EDGE_AGENT__SECTION__KEY` overrides, turning every
validation error into a `ConfigProblem` (file and line, key path, expected, found), running
the cross-checks, and reading secrets from files or `$CREDENTIALS_DIRECTORY`.
Must not: start anything, create directories, or print (the CLI renders the problems).
Invariants: `load_config` either returns a fully valid `LoadedConfig` or raises one
`ConfigError` listing every problem it could find; a secret's value never appears in a
problem, a log or an exception text.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from agent.core import config_checks
from agent.errors import ConfigError, ConfigProblem
from agent.settings import SECRET_FIELDS, Loop, ModbusSource, OpcUaSource, Settings, Source, Tag

ENV_PREFIX = "EDGE_AGENT__"
_SOURCE_KINDS: dict[str | int, type[BaseModel]] = {"opcua": OpcUaSource, "modbus": ModbusSource}


@dataclass(frozen=True)
class LoadedConfig:
    """A valid configuration and the secrets it references, read once at start."""

    path: Path
    settings: Settings
    secrets: Mapping[str, SecretStr]  # "sources.<name>.password", "sync.token"

    def resolve(self, path: Path) -> Path:
        """A path from the file, relative paths taken from the file's own folder."""
        return path if path.is_absolute() else (self.path.parent / path).resolve()


class _Lines:
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


def _found(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}' (text)"
    if isinstance(value, int | float):
        return f"{value!r} (number)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return repr(value)


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
            model = _SOURCE_KINDS.get(item)
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


def _problem(error: Mapping[str, Any], file: str, lines: _Lines) -> ConfigProblem:
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
        expected, found = f"one of {ctx.get('expected_tags')}", repr(ctx.get("tag"))
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


def _env_problems(settings_fields: Mapping[str, Any]) -> list[ConfigProblem]:
    problems = []
    for name in sorted(os.environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        section = name[len(ENV_PREFIX) :].lower().split("__", 1)[0]
        if section not in settings_fields:
            problems.append(
                ConfigProblem(
                    "environment",
                    name,
                    f"EDGE_AGENT__SECTION__KEY with SECTION one of "
                    f"{', '.join(sorted(settings_fields))}",
                    f"unknown section '{section}'",
                )
            )
    return problems


def _items(adapter: TypeAdapter[Any], raw: object) -> list[tuple[int, Any]]:
    """The entries of an array that validate on their own, with their index."""
    valid = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            valid.append((index, adapter.validate_python(item)))
        except ValidationError:
            continue
    return valid


def _cross_checks(data: Mapping[str, Any], file: str) -> list[ConfigProblem]:
    sources = _items(TypeAdapter(Source), data.get("sources"))
    tags = _items(TypeAdapter(Tag), data.get("tags"))
    loops = _items(TypeAdapter(Loop), data.get("loops"))
    return (
        config_checks.check_sources(sources, file)
        + config_checks.check_tags(
            tags, [s for _, s in sources], file, _raw_names(data.get("sources"))
        )
        + config_checks.check_loops(loops, [t for _, t in tags], file, _raw_names(data.get("tags")))
    )


def _raw_names(raw: object) -> list[str]:
    """The names of an array's entries as written, valid or not."""
    items = raw if isinstance(raw, list) else []
    return [str(i["name"]) for i in items if isinstance(i, dict) and "name" in i]


def _read_secret(
    key: str, path: Path | None, credential: str | None, file: str
) -> tuple[SecretStr | None, list[ConfigProblem]]:
    if path is not None and not path.is_absolute():
        path = Path(file).parent / path
    if credential is not None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return None, [
                ConfigProblem(
                    file,
                    key.replace("_file", "_credential"),
                    "$CREDENTIALS_DIRECTORY set by systemd (LoadCredential=)",
                    "not set",
                )
            ]
        path = Path(directory) / credential
    if path is None:
        return None, []
    try:
        info = path.stat()
    except OSError as exc:
        return None, [ConfigProblem(file, key, "a readable secret file", f"{path}: {exc.strerror}")]
    if not stat.S_ISREG(info.st_mode):
        return None, [ConfigProblem(file, key, "a regular file", f"{path} is not a regular file")]
    if info.st_mode & stat.S_IROTH or info.st_mode & stat.S_IWOTH:
        return None, [
            ConfigProblem(
                file,
                key,
                "a secret file not readable by others (chmod 600 or 640)",
                f"{path} with mode {stat.S_IMODE(info.st_mode):04o}",
            )
        ]
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigProblem(file, key, "a readable UTF-8 secret file", f"{path}: {exc}")]
    if not text:
        return None, [ConfigProblem(file, key, "a non-empty secret file", f"{path} is empty")]
    return SecretStr(text), []


def _secrets(settings: Settings, file: str) -> tuple[dict[str, SecretStr], list[ConfigProblem]]:
    secrets: dict[str, SecretStr] = {}
    problems: list[ConfigProblem] = []
    wanted = [
        (
            f"sources.{s.name}.password",
            f"sources[{i}].password_file",
            s.password_file,
            s.password_credential,
        )
        for i, s in enumerate(settings.sources)
        if isinstance(s, OpcUaSource)
    ]
    if settings.sync.enabled:
        wanted.append(
            (
                "sync.token",
                "sync.token_file",
                settings.sync.token_file,
                settings.sync.token_credential,
            )
        )
    for name, key, path, credential in wanted:
        value, found = _read_secret(key, path, credential, file)
        problems += found
        if value is not None:
            secrets[name] = value
    for key in ("ca_file", "client_cert_file", "client_key_file"):
        path = getattr(settings.sync, key)
        if path is not None and not path.is_absolute():
            path = Path(file).parent / path
        if settings.sync.enabled and path is not None and not path.is_file():
            problems.append(
                ConfigProblem(file, f"sync.{key}", "an existing file", f"{path} does not exist")
            )
    return secrets, problems


def load_config(path: Path) -> LoadedConfig:
    """Read, validate and cross-check the file; raise ConfigError with every problem."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(
            [ConfigProblem(file, "(file)", "a readable UTF-8 TOML file", str(detail))]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem(file, "(syntax)", "valid TOML", str(exc))]) from None
    lines = _Lines(text, file)
    problems = _env_problems(Settings.model_fields)
    settings: Settings | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems += [_problem(err, file, lines) for err in exc.errors()]
    later = _cross_checks(data, file)
    secrets: dict[str, SecretStr] = {}
    if settings is not None:
        later += config_checks.check_sync(settings.sync, file)
        secrets, found = _secrets(settings, file)
        later += found
    problems += [lines.locate(p) for p in later]
    if problems or settings is None:
        raise ConfigError(problems)
    return LoadedConfig(path, settings, secrets)
