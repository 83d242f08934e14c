"""The rules of tests/README.md, checked on the source of the tests themselves.

- No test module imports from another test module (or from a conftest), however it is
  spelled (`from tests.x.test_y import`, `from tests.x import test_y`, `import tests.x.test_y`,
  `from .test_y import`, `from . import test_y`), and none is a program a test runs
  (`__main__`): shared helpers, peers and child programs live in tests/support/, fixtures in
  tests/conftest.py.
- No test edits text with `str.replace` or `re.sub`/`re.subn` (a no-op once the demo config
  changes): configs are edited as data (tests.support.config.ConfigDoc), and a test about
  the text itself uses `replace_once` or `sub_once`, which fail unless their text is there
  exactly once.
- No assertion on a measured duration (a monotonic clock's reading, `time.monotonic` or
  `time.perf_counter`, also imported by name; or the difference of two readings of any
  clock, `time.time` too): a clock may set the deadline of a polling loop, asserted there as
  its time-out (`assert time.monotonic() < deadline`), never feed an assert outside a
  `while` loop, nor a lower bound or an equality inside one.
- No fixed sleep before asserting: a `time.sleep(...)` or `await asyncio.sleep(...)` directly
  followed by an `assert` in the same block is a guess of how long something takes
  (`asyncio.sleep(0)`, one turn of the event loop, is no wait).

Each check is a function of a module's text; `test_each_check_catches_what_it_is_for` plants
a violation (and its allowed twin) in a string, so a check that finds nothing is not taken
for a tree that keeps the rule.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
EDITS_ALLOWED = {"support/config.py"}  # replace_once and sub_once themselves
SUB_ALLOWED = {("system/test_bundle.py", "_dist")}  # a package name normalised (PEP 503), no text
MONOTONIC_CLOCKS = {"monotonic", "perf_counter", "monotonic_ns", "perf_counter_ns"}
CLOCKS = MONOTONIC_CLOCKS | {"time", "time_ns"}
_FROM = re.compile(
    r"^[ \t]*from[ \t]+(?P<module>\.+[\w.]*|tests(?:\.\w+)*)[ \t]+import[ \t]+"
    r"(?P<names>\([^)]*\)|[^\n]*)",
    re.M,
)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+(?P<modules>tests\b[^\n]*)", re.M)
_TEST_MODULE = re.compile(r"^(test_\w+|conftest)$")

Finding = tuple[int, str]  # line, what


def sources() -> Iterator[tuple[str, str]]:
    for path in sorted(TESTS.rglob("*.py")):
        yield path.relative_to(TESTS).as_posix(), path.read_text(encoding="utf-8")


# -- the checks: each takes a module's path (relative to tests/) and text ----------------------


def imports_of_test_modules(path: str, text: str) -> list[Finding]:
    """On the text, so that code in strings (a child process's script) counts too."""
    found = []
    for m in _FROM.finditer(text):
        parts = re.findall(r"\w+", m["module"])
        names = re.findall(r"\w+", m["names"].split("#")[0])
        if any(_TEST_MODULE.match(p) for p in parts + names):
            found.append((text.count("\n", 0, m.start()) + 1, m[0].strip()))
    for m in _IMPORT.finditer(text):
        parts = re.findall(r"\w+", m["modules"].split("#")[0])
        if any(_TEST_MODULE.match(p) for p in parts):
            found.append((text.count("\n", 0, m.start()) + 1, m[0].strip()))
    return found


def programs(path: str, text: str) -> list[Finding]:
    if not Path(path).name.startswith("test_"):
        return []
    return [
        (node.lineno, "if __name__ ...")
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "__name__"
    ]


def text_edits(path: str, text: str) -> list[Finding]:
    if path in EDITS_ALLOWED:
        return []
    found = []
    for func, node in _calls(ast.parse(text)):
        if not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        if name == "replace" and len(node.args) >= 2:  # str.replace(old, new), not Path's
            found.append((node.lineno, "str.replace"))
        elif (
            name in {"sub", "subn"}
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and (path, func) not in SUB_ALLOWED
        ):
            found.append((node.lineno, f"re.{name}"))
    return found


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    """Every call with the name of the function it is in ("" at module level)."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for func in [n for n in ast.walk(tree) if isinstance(n, functions)] + [tree]:
        name = getattr(func, "name", "")
        stack = list(ast.iter_child_nodes(func))
        while stack:
            node = stack.pop()
            if isinstance(node, functions):
                continue  # its own calls are listed under its name
            if isinstance(node, ast.Call):
                yield name, node
            stack.extend(ast.iter_child_nodes(node))


def duration_asserts(path: str, text: str) -> list[Finding]:
    visitor = _DurationAsserts()
    visitor.visit(ast.parse(text))
    return [(node.lineno, ast.unparse(node)) for node in visitor.found]


class _DurationAsserts(ast.NodeVisitor):
    """Asserts on a measured duration: on a monotonic clock (`monotonic`, `perf_counter`)
    or a name computed from one, or on the difference of two readings of any clock (also
    `time.time`, whose readings are otherwise timestamps: `s.source_time > muted_at` is
    fine). Outside `while` loops any; inside one all but a time-out of the loop
    (`now < deadline`, `deadline > now`, `deadline - now > 0`)."""

    def __init__(self) -> None:
        self.imported: dict[str, str] = {}  # `from time import monotonic as m`: m -> monotonic
        self.timed: set[str] = set()  # from a monotonic clock
        self.stamps: set[str] = set()  # from any clock
        self.loops = 0
        self.found: list[ast.Assert] = []

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "time":
            self.imported |= {a.asname or a.name: a.name for a in node.names if a.name in CLOCKS}

    def _clock(self, call: ast.AST) -> str | None:
        if not isinstance(call, ast.Call):
            return None
        f = call.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "time":
            return f.attr if f.attr in CLOCKS else None
        return self.imported.get(f.id) if isinstance(f, ast.Name) else None

    def _uses(self, node: ast.AST, *, monotonic: bool) -> bool:
        names, clocks = self.timed if monotonic else self.timed | self.stamps, set()
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id in names:
                return True
            clocks.add(self._clock(n))
        return bool(clocks & (MONOTONIC_CLOCKS if monotonic else CLOCKS))

    def _uses_time(self, node: ast.AST) -> bool:
        """A monotonic reading, or a difference of two readings of any clock."""
        return self._uses(node, monotonic=True) or any(
            isinstance(n, ast.BinOp)
            and isinstance(n.op, ast.Sub)
            and self._uses(n.left, monotonic=False)
            and self._uses(n.right, monotonic=False)
            for n in ast.walk(node)
        )

    def _mark(self, targets: list[ast.expr], value: ast.AST | None) -> None:
        if value is None:
            return
        names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if self._uses_time(value):
            self.timed |= names
        if self._uses(value, monotonic=False):
            self.stamps |= names

    def visit_Assign(self, node: ast.Assign) -> None:
        self._mark(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._mark([node.target], node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._mark([node.target], node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._mark([node.target], node.value)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.loops += 1
        self.generic_visit(node)
        self.loops -= 1

    def visit_Assert(self, node: ast.Assert) -> None:
        if self._uses_time(node.test) and not (self.loops and self._is_a_time_out(node.test)):
            self.found.append(node)

    def _is_a_time_out(self, test: ast.expr) -> bool:
        """`now < deadline`, `deadline > now`, `left > 0`: the loop fails once time is up."""
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
            return False
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if isinstance(op, ast.Lt | ast.LtE):
            return self._uses_time(left)
        if isinstance(op, ast.Gt | ast.GtE):
            zero = isinstance(right, ast.Constant) and right.value == 0
            return self._uses_time(right) or zero
        return False


def sleeps_before_asserts(path: str, text: str) -> list[Finding]:
    found = []
    for node in ast.walk(ast.parse(text)):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for first, second in itertools.pairwise(block):
                if _is_a_sleep(first) and isinstance(second, ast.Assert):
                    found.append((first.lineno, ast.unparse(first)))
    return found


def _is_a_sleep(stmt: ast.stmt) -> bool:
    if not isinstance(stmt, ast.Expr):
        return False
    call = stmt.value.value if isinstance(stmt.value, ast.Await) else stmt.value
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "sleep"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id in {"asyncio", "time"}
        and not (call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value == 0)
    )


Check = Callable[[str, str], list[Finding]]
CHECKS: dict[str, tuple[Check, str]] = {
    "imports_of_test_modules": (
        imports_of_test_modules,
        "import shared helpers from tests.support",
    ),
    "programs": (programs, "a child program goes to tests/support/ (python -m)"),
    "text_edits": (text_edits, "edit a config with ConfigDoc, text with replace_once/sub_once"),
    "duration_asserts": (duration_asserts, "poll a condition (tests.support.wait) instead"),
    "sleeps_before_asserts": (sleeps_before_asserts, "poll (tests.support.wait) instead"),
}


@pytest.mark.parametrize("name", CHECKS)
def test_the_tests_keep_the_rule(name: str) -> None:
    check, advice = CHECKS[name]
    found = [
        f"tests/{path}:{line}: {what}"
        for path, text in sources()
        for line, what in check(path, text)
    ]
    assert found == [], f"{advice}:\n" + "\n".join(found)


# -- the checks checked: a planted violation is found, its allowed twin is not -----------------

PLANTED: list[tuple[str, str, str, bool]] = [
    # check, path, text, a violation?
    ("imports_of_test_modules", "unit/test_a.py", "from tests.integration.test_x import f\n", True),
    ("imports_of_test_modules", "unit/test_a.py", "from tests.integration import test_x\n", True),
    ("imports_of_test_modules", "unit/test_a.py", "from tests.integration import (\n  a,\n  test_x,\n)\n", True),
    ("imports_of_test_modules", "unit/test_a.py", "import tests.unit.test_x as t\n", True),
    ("imports_of_test_modules", "unit/test_a.py", "from .test_x import helper\n", True),
    ("imports_of_test_modules", "unit/test_a.py", "from . import test_x\n", True),
    ("imports_of_test_modules", "unit/test_a.py", "from ..integration.conftest import f\n", True),
    ("imports_of_test_modules", "unit/test_a.py", 'SCRIPT = """\nfrom tests.unit import test_x\n"""\n', True),
    ("imports_of_test_modules", "unit/test_a.py", "from tests.support.wait import until\n", False),
    ("imports_of_test_modules", "unit/test_a.py", "from tests.support import tasks\n", False),
    ("programs", "unit/test_a.py", "if __name__ == '__main__':\n    pass\n", True),
    ("programs", "support/child.py", "if __name__ == '__main__':\n    pass\n", False),
    ("text_edits", "unit/test_a.py", "t = s.replace('a', 'b')\n", True),
    ("text_edits", "unit/test_a.py", "import re\nt = re.sub('a', 'b', s)\n", True),
    ("text_edits", "unit/test_a.py", "import re\nt, n = re.subn('a', 'b', s)\n", True),
    ("text_edits", "unit/test_a.py", "p.replace(target)\nt = replace_once(s, 'a', 'b')\n", False),
    ("text_edits", "support/config.py", "t = s.replace('a', 'b')\n", False),
    ("text_edits", "system/test_bundle.py", "import re\ndef _dist(n):\n    return re.sub('a', 'b', n)\n", False),
    ("text_edits", "system/test_bundle.py", "import re\ndef other(n):\n    return re.sub('a', 'b', n)\n", True),
    ("duration_asserts", "unit/test_a.py", "import time\nt0 = time.monotonic()\nassert time.monotonic() - t0 < 1\n", True),
    ("duration_asserts", "unit/test_a.py", "import time\nt0 = time.time()\nassert time.time() - t0 < 1\n", True),
    ("duration_asserts", "unit/test_a.py", "from time import monotonic\nt0 = monotonic()\nassert monotonic() - t0 < 1\n", True),
    ("duration_asserts", "unit/test_a.py", "from time import perf_counter as pc\nt: float = pc()\nassert t > 0\n", True),
    ("duration_asserts", "unit/test_a.py", "import time\nt0 = time.monotonic()\nwhile f():\n    assert time.monotonic() - t0 >= 0.5\n", True),
    ("duration_asserts", "unit/test_a.py", "import time\nt0 = time.monotonic()\nwhile f():\n    assert time.monotonic() - t0 == 1\n", True),
    ("duration_asserts", "unit/test_a.py", "import time\nend = time.monotonic() + 60\nwhile f():\n    assert time.monotonic() < end, 'late'\n", False),
    ("duration_asserts", "unit/test_a.py", "import time\nend = time.monotonic() + 60\nwhile f():\n    assert end > time.monotonic()\n", False),
    ("sleeps_before_asserts", "unit/test_a.py", "import asyncio\nasync def t():\n    await asyncio.sleep(2)\n    assert done()\n", True),
    ("sleeps_before_asserts", "unit/test_a.py", "import time\ndef t():\n    if x:\n        time.sleep(0.5)\n        assert done()\n", True),
    ("sleeps_before_asserts", "unit/test_a.py", "import asyncio\nasync def t():\n    await asyncio.sleep(2)\n    await until(done)\n    assert done()\n", False),
    ("duration_asserts", "unit/test_a.py", "import time\nt0 = time.time()\nassert s.source_time > t0\n", False),
    ("duration_asserts", "unit/test_a.py", "import time\nend = time.monotonic() + 9\nwhile 1:\n    left = end - time.monotonic()\n    assert left > 0\n", False),
    ("sleeps_before_asserts", "unit/test_a.py", "import asyncio\nasync def t():\n    await asyncio.sleep(0)\n    assert done()\n", False),
    ("sleeps_before_asserts", "unit/test_a.py", "async def t(clock):\n    await clock.sleep(2)\n    assert done()\n", False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "text", "violation"), PLANTED)
def test_each_check_catches_what_it_is_for(
    name: str, path: str, text: str, violation: bool
) -> None:
    check, _ = CHECKS[name]
    assert bool(check(path, text)) is violation, (name, text, check(path, text))


def test_every_check_is_checked() -> None:
    planted = {name for name, _, _, violation in PLANTED if violation}
    allowed = {name for name, _, _, violation in PLANTED if not violation}
    assert planted == allowed == set(CHECKS)
