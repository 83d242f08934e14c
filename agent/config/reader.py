"""Reading the configuration file into a TOML document, whatever bytes it holds.

Owns: the size limit, the UTF-8 decoding, the TOML parsing and the shapes no setting can
hold (nesting deeper than MAX_DEPTH, NUL characters in text, infinite or NaN numbers),
each turned into a `ConfigProblem` inside a `ConfigError`.
Must not: validate settings (agent.config.loader and the schema do), print, or recurse over
the document (the input decides how deep it goes).
Invariants: `read_text` and `parse` return or raise ConfigError and nothing else, for any
bytes (a property test feeds them random ones); `shape_problems` walks any document with
an explicit stack, so nothing here can hit Python's recursion limit, and what it lets
through nests at most MAX_DEPTH levels.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.domain.errors import ConfigError, ConfigProblem

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "parse", "read_text", "shape_problems"]

MAX_FILE_BYTES = 8 * 1024 * 1024
"""A configuration file is read up to this size (a 5,000-tag plant needs well under 1 MiB)."""
MAX_DEPTH = 16
"""How deep values may nest (arrays, tables); the schema needs 6. Deeper input is refused
before anything recursive (the TOML parser, validation) could hit Python's recursion limit."""


def read_text(path: Path, file: str) -> str:
    """The file's text (at most MAX_FILE_BYTES, UTF-8), or ConfigError saying why not."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problem = ConfigProblem(file, "(file)", "a readable UTF-8 TOML file", str(exc.strerror))
        raise ConfigError([problem]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([ConfigProblem(
            file, "(file)", f"a TOML file of at most {MAX_FILE_BYTES // 2**20} MiB",
            f"a file of more than {MAX_FILE_BYTES // 2**20} MiB",
        )]) from None  # fmt: skip
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = ConfigProblem(file, "(file)", "a readable UTF-8 TOML file", str(exc))
        raise ConfigError([problem]) from None


def parse(text: str, file: str) -> dict[str, Any]:
    """The TOML document, or ConfigError: bad syntax, an integer of more than 4,300 digits
    (Python's limit, a ValueError), or nesting that exhausts the parser's recursion."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        found = "arrays or inline tables nested too deep to read"
        expected = f"valid TOML, values nested at most {MAX_DEPTH} levels deep"
        raise ConfigError([ConfigProblem(file, "(syntax)", expected, found)]) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError is one
        raise ConfigError([ConfigProblem(file, "(syntax)", "valid TOML", str(exc))]) from None


def shape_problems(data: Mapping[str, Any], file: str) -> list[ConfigProblem]:
    """Values no setting can hold, found without recursion: nesting deeper than MAX_DEPTH,
    text with a NUL character (no path or name may hold one), infinite or NaN numbers."""
    problems: list[ConfigProblem] = []
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack and len(problems) < 10:
        value, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(ConfigProblem(file, key, f"values nested at most {MAX_DEPTH} "
                                          "levels deep", "deeper nesting"))  # fmt: skip
        elif isinstance(value, dict):
            stack += [(v, f"{key}.{k}" if key else str(k), depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value)]
        elif isinstance(value, str) and "\x00" in value:
            problems.append(ConfigProblem(file, key, "text without NUL characters",
                                          "text with a NUL character (\\u0000)"))  # fmt: skip
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(ConfigProblem(file, key, "a finite number", repr(value)))
    return problems
