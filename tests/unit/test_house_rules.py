"""Rules of the house that no linter states exactly, checked on the source of the daemon.

The one-except rule: ``except Exception`` appears in the agent only where
agent.service.supervisor says it does, its restart loop. Nothing else catches broadly: no
bare ``except:``, no ``except Exception``/``BaseException`` under any spelling (in a tuple,
``builtins.Exception``) and no ``contextlib.suppress`` of either. The one other broad
handler allowed is cleanup-then-reraise: ``except BaseException:`` whose body ends in a bare
``raise`` and never leaves early (no ``return``, ``break``, ``continue`` or other ``raise``),
so whatever it caught, a cancellation included, goes on unchanged. ruff's BLE001 alone
misses a handler that logs with a traceback or re-raises on some path only, so the handlers
are read from the syntax tree here, and no ``noqa: BLE`` may silence BLE001.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAEMON = [p for d in ("agent", "drivers") for p in sorted((ROOT / d).rglob("*.py"))]
BROAD = {"Exception", "BaseException"}
ALLOWED = {("agent/service/supervisor.py", "Exception")}
"""Where a broad handler may be (the supervisor's docstring names it)."""
_NOQA_BLE = re.compile(r"#\s*noqa:[^#\n]*\bBLE")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _names(node: ast.expr | None) -> list[str]:
    if node is None:
        return ["<bare>"]
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    return [ast.unparse(n) for n in items]


def _is_broad(name: str) -> bool:
    """``Exception``, ``BaseException`` or either reached through a module (``builtins.``)."""
    return name.rsplit(".", 1)[-1] in BROAD


def _own_statements(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of a handler's body, but not inside a function or class defined there."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if not isinstance(node, _SCOPES):
            yield node
            todo.extend(ast.iter_child_nodes(node))


def _cleanup_then_reraise(handler: ast.ExceptHandler) -> bool:
    """``except BaseException:`` that cleans up and re-raises what it caught, on every path."""
    last = handler.body[-1]
    if not (isinstance(last, ast.Raise) and last.exc is None):
        return False
    return not any(
        isinstance(n, ast.Return | ast.Break | ast.Continue)
        or (isinstance(n, ast.Raise) and n.exc is not None)
        for n in _own_statements(handler.body)
    )


def _suppressed(call: ast.Call) -> list[str]:
    """The broad types a ``suppress(...)``/``contextlib.suppress(...)`` call swallows."""
    func = ast.unparse(call.func)
    if func.rsplit(".", 1)[-1] != "suppress":
        return []
    return [f"suppress({ast.unparse(a)})" for a in call.args if _is_broad(ast.unparse(a))]


def broad_handlers(source: str) -> list[tuple[str, int]]:
    """(what is caught, line) of every broad catch but a cleanup-then-reraise BaseException."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            found += [(name, node.lineno) for name in _suppressed(node)]
        if not isinstance(node, ast.ExceptHandler):
            continue
        for name in _names(node.type):
            if name == "<bare>" or (
                _is_broad(name) and not (name == "BaseException" and _cleanup_then_reraise(node))
            ):
                found.append((name, node.lineno))
    return sorted(found, key=lambda f: f[1])


def test_the_only_broad_except_in_the_daemon_is_the_supervisors() -> None:
    found = [
        (path.relative_to(ROOT).as_posix(), name, line)
        for path in DAEMON
        for name, line in broad_handlers(path.read_text(encoding="utf-8"))
    ]
    assert [h for h in found if (h[0], h[1]) not in ALLOWED] == []
    assert sorted((f, n) for f, n, _ in found) == sorted(ALLOWED)  # and the supervisor keeps it


def test_no_noqa_silences_the_broad_except_rule() -> None:
    silenced = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in DAEMON
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _NOQA_BLE.search(line)
    ]
    assert silenced == []


def test_the_check_sees_a_broad_handler_that_logs_or_hides_in_a_tuple() -> None:
    source = (
        "try:\n    pass\nexcept (OSError, Exception) as exc:\n    log.error('x', exc_info=exc)\n"
        "try:\n    pass\nexcept BaseException:\n    cleanup()\n    raise\n"
        "try:\n    pass\nexcept:\n    pass\n"
        "try:\n    pass\nexcept BaseException as exc:\n    raise RuntimeError from exc\n"
    )
    assert broad_handlers(source) == [("Exception", 3), ("<bare>", 12), ("BaseException", 16)]


def test_the_check_sees_a_broad_handler_that_reraises_on_some_paths_only() -> None:
    source = (
        # 3: except Exception is never the cleanup form, even when it ends in a bare raise
        "try:\n    pass\nexcept Exception:\n    cleanup()\n    raise\n"
        # 8: it returns on one path, then re-raises
        "try:\n    pass\nexcept Exception:\n    if flag:\n        return None\n    raise\n"
        # 14: the same with BaseException: a cancellation can end in that return
        "try:\n    pass\nexcept BaseException:\n    if flag:\n        return None\n    raise\n"
        # 21, 28: a loop left by break or continue from the handler
        "for x in y:\n  try:\n    pass\n  except BaseException:\n    if x:\n      break\n    raise\n"
        "for x in y:\n  try:\n    pass\n  except BaseException:\n    if x:\n      continue\n    raise\n"
        # 34: another exception raised instead of the one caught, on one path
        "try:\n    pass\nexcept BaseException:\n    if flag:\n        raise KeyError\n    raise\n"
        # 40: a function defined in the handler may return: the handler still re-raises (kept)
        "try:\n    pass\nexcept BaseException:\n    def f():\n        return 1\n    raise\n"
    )
    assert broad_handlers(source) == [
        ("Exception", 3), ("Exception", 8), ("BaseException", 14), ("BaseException", 21),
        ("BaseException", 28), ("BaseException", 34),
    ]  # fmt: skip


def test_the_check_sees_every_spelling_of_a_broad_catch() -> None:
    source = (
        "import builtins, contextlib\n"
        "from contextlib import suppress\n"
        "try:\n    pass\nexcept builtins.Exception:\n    pass\n"
        "try:\n    pass\nexcept (ValueError, builtins.BaseException):\n    pass\n"
        "with contextlib.suppress(Exception):\n    pass\n"
        "with suppress(OSError, BaseException):\n    pass\n"
        "with contextlib.suppress(OSError, KeyboardInterrupt):\n    pass\n"
    )
    assert broad_handlers(source) == [
        ("builtins.Exception", 5),
        ("builtins.BaseException", 9),
        ("suppress(Exception)", 11),
        ("suppress(BaseException)", 13),
    ]
