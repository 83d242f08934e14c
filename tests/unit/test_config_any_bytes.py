"""Any bytes at all in the configuration file: a valid configuration or a ConfigError.

The loader is called in-process on generated files: mutations of a valid configuration
(values replaced by generated TOML values, lines inserted, bytes spliced in, slices cut),
values nested hundreds of levels deep (arrays and inline tables: Python's TOML parser
recurses), invalid UTF-8, NUL bytes, random binary, huge files. Whatever the input, the
outcome is a `LoadedConfig` or a `ConfigError` whose problems are each one readable line;
never another exception (systemd would restart the agent in a loop on exit code 1).
`check` and `run` get a few of those files as subprocesses (exit 78, no traceback). The file
alone decides: tests/conftest.py removes the runner's EDGE_AGENT__ variables for every test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.loader import LoadedConfig, load_config
from agent.config.reader import MAX_DEPTH, MAX_FILE_BYTES
from agent.domain.errors import ConfigError
from tests.support.config import replace_once
from tests.support.env import clean_env

BASE = """\
[agent]
id = "fuzz-1"
state_dir = "state"

[[sources]]
kind = "opcua"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:4840"

[[sources]]
kind = "modbus"
name = "feeders"
host = "127.0.0.1"
port = 5020

[[tags]]
name = "FeedRate"
source = "plc"
address = "nsu=urn:edge-agent:test;s=FeedRate"
unit = "t/h"

[[tags]]
name = "Total"
source = "feeders"
address = "input:12"
type = "float32"

[sync]
enabled = false

[api]
enabled = false
"""
LINES = BASE.splitlines(keepends=True)
AGENT = [sys.executable, "-m", "agent"]


def outcome(content: bytes) -> LoadedConfig | ConfigError:
    """Load `content` as a configuration file; any exception but ConfigError escapes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "agent.toml"
        path.write_bytes(content)
        try:
            return load_config(path)
        except ConfigError as exc:
            assert exc.problems, "a ConfigError names its problems"
            for problem in exc.problems:
                line = problem.render()
                assert line.isprintable(), repr(line)  # one line, no control characters
                assert len(line) < 2000, line
            return exc


# -- generated TOML ----------------------------------------------------------------------

BARE_KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True)
KEYS = st.one_of(BARE_KEYS, st.text(max_size=12).map(json.dumps))  # quoted keys: any text
ODD_SCALARS = st.sampled_from([
    "true", "false", "inf", "-inf", "nan", "+nan", "1e400", "-0.0", "0x7fffffff", "0o17",
    "0b101", "1_000", "1979-05-27T07:32:00Z", "1979-05-27 07:32:00.999999-07:00",
    "1979-05-27", "07:32:00", "1979-13-45T99:99:99", '"\\u0000"', '"a\\u0000b"', '"\\uD800"',
    "'literal'", '"""multi\nline"""', "'''raw\nlines'''", "9" * 4300, "9" * 4301, '""',
    '"' + "x" * 100_000 + '"', "[]", "{}", "[1, 'two', 3.0]",
])  # fmt: skip
SCALARS = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=30).map(json.dumps),
    ODD_SCALARS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(BARE_KEYS, inner, max_size=4).map(
            lambda table: "{" + ", ".join(f"{k} = {v}" for k, v in table.items()) + "}"
        ),
    ),
    max_leaves=12,
)


@st.composite
def deep_values(draw: st.DrawFn) -> str:
    """An array or inline table nested 1..3000 levels deep, possibly mixed."""
    depth = draw(st.integers(1, 3000))
    kinds = draw(st.sampled_from(["[", "{", "mixed"]))
    opening, closing = [], []
    for level in range(depth):
        kind = kinds if kinds != "mixed" else "[{"[level % 2]
        opening.append("[" if kind == "[" else "{a = ")
        closing.append("]" if kind == "[" else "}")
    return "".join(opening) + draw(st.sampled_from(["1", '"x"', "[]"])) + "".join(reversed(closing))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The valid configuration with one to three mutations."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines)))
        value = draw(st.one_of(VALUES, deep_values()))
        kind = draw(st.sampled_from(["replace", "insert", "table", "splice", "cut"]))
        if kind == "replace" and at < len(lines) and "=" in lines[at]:
            lines[at] = lines[at].split("=", 1)[0] + "= " + value + "\n"
        elif kind == "insert":
            lines.insert(at, f"{draw(KEYS)} = {value}\n")
        elif kind == "table":
            lines.insert(
                at, draw(st.sampled_from(["[agent]\n", "[[tags]]\n", "[x.y]\n", "[[]]\n"]))
            )
        elif kind == "splice":
            text = "".join(lines)
            cut = draw(st.integers(0, len(text)))
            lines = [text[:cut] + draw(st.text(max_size=20)) + text[cut:]]
        elif kind == "cut" and lines:
            del lines[at : at + draw(st.integers(1, 5))]
    return "".join(lines).encode("utf-8", errors="surrogatepass")


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """The valid configuration's bytes with raw bytes spliced in: invalid UTF-8, NULs."""
    data = bytearray(BASE.encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        junk = draw(st.one_of(st.binary(min_size=1, max_size=8),
                              st.sampled_from([b"\x00", b"\xff", b"\xc3(", b"\xed\xa0\x80"])))  # fmt: skip
        data[at:at] = junk
    return bytes(data)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_base_configuration_is_valid() -> None:
    assert isinstance(outcome(BASE.encode()), LoadedConfig)


@FUZZ
@given(mutated())
def test_any_mutation_of_a_valid_file_loads_or_is_refused(content: bytes) -> None:
    outcome(content)


@FUZZ
@given(corrupted())
def test_invalid_utf8_and_nul_bytes_are_refused(content: bytes) -> None:
    outcome(content)


@FUZZ
@given(st.binary(max_size=4096))
def test_any_binary_is_refused_or_loads(content: bytes) -> None:
    outcome(content)


@FUZZ
@given(deep_values(), st.sampled_from(["agent.id", "tags", "x", "sources"]))
def test_deep_nesting_is_refused_with_its_key(value: str, where: str) -> None:
    if where == "agent.id":
        text = replace_once(BASE, 'id = "fuzz-1"', f"id = {value}")
    elif where in ("tags", "sources"):
        text = BASE + f"\n[[{where}]]\nname = {value}\n"
    else:
        text = f"{where} = {value}\n" + BASE
    result = outcome(text.encode())
    assert isinstance(result, ConfigError)
    depth = value.count("[") + value.count("{")
    if depth > MAX_DEPTH:  # said as such, not as a type error somewhere inside
        assert any("nested at most" in p.expected for p in result.problems), result.problems


def test_a_nul_in_a_value_is_refused_by_name() -> None:
    result = outcome(replace_once(BASE, '"state"', '"st\\u0000ate"').encode())
    assert isinstance(result, ConfigError)
    assert [(p.key, p.expected) for p in result.problems] == [
        ("agent.state_dir", "text without NUL characters")
    ]


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all() -> None:
    result = outcome(BASE.encode() + b"#" * MAX_FILE_BYTES)
    assert isinstance(result, ConfigError)
    (problem,) = result.problems
    assert (problem.key, problem.expected) == ("(file)", "a TOML file of at most 8 MiB")


def test_a_file_just_under_the_limit_loads() -> None:
    padding = b"# a comment line of a very long configuration file\n"
    body = BASE.encode()
    content = body + padding * ((MAX_FILE_BYTES - len(body)) // len(padding))
    assert len(content) <= MAX_FILE_BYTES
    assert isinstance(outcome(content), LoadedConfig)


def test_a_huge_value_is_shown_shortened() -> None:
    result = outcome(replace_once(BASE, '"fuzz-1"', '"' + "x" * 1_000_000 + '"').encode())
    assert isinstance(result, ConfigError)
    (problem,) = result.problems
    assert problem.key == "agent.id" and "(text of 1000000 characters)" in problem.found


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("array nested 600 deep", (BASE + "x = " + "[" * 600 + "]" * 600 + "\n").encode()),
        (
            "inline table nested 600 deep",
            (BASE + "x = " + "{a = " * 600 + "1" + "}" * 600).encode(),
        ),
        ("invalid UTF-8", BASE.encode() + b"\xff\xfe"),
        ("NUL bytes", replace_once(BASE, "[api]", "[a\x00pi]").encode()),
        ("a 600-deep state_dir", replace_once(BASE, '"state"', "[" * 600 + "]" * 600).encode()),
    ],
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_refuse_with_78_and_no_traceback(
    tmp_path: Path, command: str, name: str, content: bytes
) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(content)
    env = clean_env()
    result = subprocess.run(
        [*AGENT, command, "--config", str(path)], capture_output=True, text=True, timeout=120,
        env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 78, (name, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == "", (name, result.stderr)
    assert result.stderr.endswith(f"in {path}; nothing was started\n"), result.stderr
    assert not (tmp_path / "state").exists()  # nothing was started
