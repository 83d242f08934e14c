"""Loading the configuration: TOML file, environment overrides, secret files, every problem.

Owns: reading the TOML file, applying `EDGE_AGENT__SECTION__KEY` overrides, turning every
validation error into a `ConfigProblem` (file and line, key path, expected, found), running
the cross-checks, and reading secrets from files or `$CREDENTIALS_DIRECTORY`.
Must not: start anything, create directories, or print (the CLI renders the problems).
Invariants: `load_config` either returns a fully valid `LoadedConfig` or raises one
`ConfigError` listing every problem it could find, whatever bytes the file holds
(agent.config.reader): never another exception; a secret's value never appears in a
problem, a log or an exception text.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from agent.config import checks as config_checks
from agent.config import checks_loops as config_checks_loops
from agent.config.checks_products import check_products
from agent.config.checks_quality import check_quality
from agent.config.messages import ENV_PREFIX, Lines, problem_from_error
from agent.config.reader import parse, read_text, shape_problems
from agent.config.settings import Loop, ModbusSource, OpcUaSource, Settings, Source, Tag
from agent.domain.errors import ConfigError, ConfigProblem

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class LoadedConfig:
    """A valid configuration and the secrets it references, read once at start."""

    path: Path
    settings: Settings
    secrets: Mapping[str, SecretStr]  # "sources.<name>.password", "sync.token"
    # Every path in `settings` is absolute: relative ones were taken from the file's folder.


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
        + config_checks_loops.check_loops(
            loops,
            [t for _, t in tags],
            file,
            _raw_names(data.get("tags")),
            public_key=_has_key(data),
        )
    )


def _has_key(data: Mapping[str, Any]) -> bool:
    agent = data.get("agent")
    return isinstance(agent, dict) and agent.get("model_public_key_file") is not None


def _raw_names(raw: object) -> list[str]:
    """The names of an array's entries as written, valid or not."""
    items = raw if isinstance(raw, list) else []
    return [str(i["name"]) for i in items if isinstance(i, dict) and "name" in i]


def _read_secret(
    key: str, path: Path | None, credential: str | None, file: str
) -> tuple[SecretStr | None, list[ConfigProblem]]:
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
        if settings.sync.enabled and path is not None and not path.is_file():
            problems.append(
                ConfigProblem(file, f"sync.{key}", "an existing file", f"{path} does not exist")
            )
    return secrets, problems


def load_config(path: Path, *, secrets: bool = True) -> LoadedConfig:
    """Read, validate and cross-check the file; raise ConfigError with every problem.

    `secrets=False` for a command that needs none (`opcua trust`, `audit verify`): the
    secret files, `$CREDENTIALS_DIRECTORY` and the sync TLS files are then not read (nor
    required), and `LoadedConfig.secrets` is empty. Each problem is one printable line
    (control characters of the file, say in a key, are shown escaped).
    """
    try:
        return _load(path, secrets)
    except ConfigError as exc:
        raise ConfigError([_one_line(p) for p in exc.problems]) from None


def _one_line(problem: ConfigProblem) -> ConfigProblem:
    def printable(text: str) -> str:
        if text.isprintable():
            return text
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)

    return ConfigProblem(*(printable(part) for part in (
        problem.file, problem.key, problem.expected, problem.found)))  # fmt: skip


def _load(path: Path, secrets: bool) -> LoadedConfig:
    file = str(path)
    text = read_text(path, file)
    data = parse(text, file)
    lines = Lines(text, file)
    if shape := shape_problems(data, file):  # before anything walks the values
        raise ConfigError([lines.locate(p) for p in shape])
    problems = _env_problems(Settings.model_fields)
    settings: Settings | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems += [problem_from_error(err, file, lines) for err in exc.errors()]
    later = _cross_checks(data, file)
    read: dict[str, SecretStr] = {}
    if settings is not None:
        settings = _absolute_paths(settings, path.parent)  # once: every check below sees them
        later += config_checks.check_sync(settings.sync, file)
        modbus = {src.name for src in settings.sources if isinstance(src, ModbusSource)}
        untimed = {t.name for t in settings.tags if t.source in modbus}
        later += check_quality(settings.quality, settings.loops, settings.sync,
                               _raw_names(data.get("tags")), file, untimed=untimed)  # fmt: skip
        later += check_products(settings, _raw_names(data.get("tags")), file)
        if secrets:
            read, found = _secrets(settings, file)
            later += found
            if settings.sync.enabled and not found:
                later += _tls_problems(settings, path.parent, file)
    problems += [lines.locate(p) for p in later]
    if problems or settings is None:
        raise ConfigError(problems)
    return LoadedConfig(path, settings, read)


def _tls_problems(settings: Settings, base: Path, file: str) -> list[ConfigProblem]:
    """Build the sync TLS context once now, so a bad CA bundle or key pair is a config error."""
    from agent.config.tls import tls_context

    try:
        tls_context(settings.sync, base)
    except ConfigError as exc:
        return [ConfigProblem(file, p.key, p.expected, p.found) for p in exc.problems]
    return []


def _absolute_paths(settings: Settings, base: Path) -> Settings:
    """Every relative path of the file taken from the file's folder, once, at load."""

    def fix(model: _M, *keys: str) -> _M:
        update = {
            key: (base / value).resolve()
            for key in keys
            if isinstance(value := getattr(model, key), Path) and not value.is_absolute()
        }
        return model.model_copy(update=update) if update else model

    sources = [
        fix(src, "password_file", "trusted_dir", "rejected_dir")
        if isinstance(src, OpcUaSource)
        else src
        for src in settings.sources
    ]
    return settings.model_copy(
        update={
            "agent": fix(settings.agent, "state_dir", "models_dir", "model_public_key_file"),
            "sources": sources,
            "sync": fix(
                settings.sync, "token_file", "ca_file", "client_cert_file", "client_key_file"
            ),
            "quality": settings.quality.model_copy(
                update={"csv": fix(settings.quality.csv, "folder")}
            )
            if settings.quality.csv is not None
            else settings.quality,
        }
    )
