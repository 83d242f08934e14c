"""Remote support's rules: what the cloud may ask of the agent, and what the agent answers.

Owns: parsing and validating the desired-state document the agent pulls from the cloud
(``parse_desired``), the fixed allowlist of diagnostics and their arguments (``ALLOWED``),
remembering which request ids were processed (``SeenIds``), masking secrets in a
configuration (``mask_secrets``) and turning a result into capped, strict JSON
(``json_bytes``, ``cap_lines``).

Must not: do any I/O, read a clock or import anything beyond the standard library and
agent.packages.versions (the version rule a model request is checked against) (pure:
agent.remote.client fetches, uploads and audits, agent.remote.diagnostics serves). No code
path here can name a shell command, a tag to write or a limit to change: the allowlist
below is the whole vocabulary.

Invariants:
- The document is ``{"model": {"name", "version"} | null, "diagnostics": [{"id", "kind",
  "args"}]}``, nothing else. A document with other keys or of another shape is refused as a
  whole (subject "document"); a bad model request refuses the model only; a bad diagnostics
  item refuses that item only (its reason names the key, what was expected, what was found).
- A diagnostic is accepted only if its kind is in ``ALLOWED`` and every argument is one that
  kind declares, of the declared type and range. Anything else is a ``Refusal``.
- ``SeenIds.add`` is true once per id among the last ``capacity`` ids it saw.
- ``json_bytes`` never raises on a value: NaN/Infinity become null, unknown types their
  ``str``; the result is at most ``cap`` bytes (else a small stand-in saying it was cut).
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.packages import versions

__all__ = [
    "ALLOWED",
    "MASKED",
    "MAX_DIAGNOSTICS",
    "Desired",
    "Diagnostic",
    "ModelRequest",
    "Refusal",
    "SeenIds",
    "cap_lines",
    "json_bytes",
    "mask_secrets",
    "parse_desired",
]

MASKED = "**********"
MAX_DIAGNOSTICS = 20
"""Diagnostics served from one document; the rest are refused (and asked again later)."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_SECRET_KEY = re.compile(r"(_file|_credential|password|passphrase|token|secret)$", re.IGNORECASE)


@dataclass(frozen=True)
class _Arg:
    kind: Literal["int", "name"]
    low: int = 0
    high: int = 0

    def problem(self, value: object) -> str | None:
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                return f"expected an integer, found {_show(value)}"
            if not self.low <= value <= self.high:
                return f"expected {self.low}..{self.high}, found {value}"
            return None
        if not isinstance(value, str) or not _NAME.match(value):
            return f"expected a source name, found {_show(value)}"
        return None


ALLOWED: Mapping[str, Mapping[str, _Arg]] = {
    "log_bundle": {"lines": _Arg("int", 1, 5000)},
    "connectivity": {"source": _Arg("name")},
    "config_masked": {},
    "buffer_stats": {},
}
"""The whole vocabulary: diagnostics kind -> its optional arguments."""


@dataclass(frozen=True)
class ModelRequest:
    name: str
    version: str


@dataclass(frozen=True)
class Diagnostic:
    id: str
    kind: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A refused part of the document; ``id`` is None when the item had no usable id."""

    subject: Literal["document", "model", "diagnostic"]
    reason: str
    id: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Desired:
    model: ModelRequest | None = None
    diagnostics: tuple[Diagnostic, ...] = ()
    refusals: tuple[Refusal, ...] = ()


def parse_desired(document: object) -> Desired:
    """Validate the desired-state document; every refused part carries its reason."""
    if not isinstance(document, dict):
        return Desired(
            refusals=(Refusal("document", f"expected an object, found {_show(document)}"),)
        )
    extra = sorted(set(document) - {"model", "diagnostics"})
    if extra:
        reason = f"unknown keys {extra}; expected only 'model' and 'diagnostics'"
        return Desired(refusals=(Refusal("document", reason),))
    items = document.get("diagnostics", [])
    if not isinstance(items, list):
        reason = f"diagnostics: expected a list, found {_show(items)}"
        return Desired(refusals=(Refusal("document", reason),))
    refusals: list[Refusal] = []
    model = None
    raw_model = document.get("model")
    if raw_model is not None:
        model, why = _model(raw_model)
        if why is not None:
            refusals.append(Refusal("model", f"model: {why}"))
    accepted: list[Diagnostic] = []
    for position, item in enumerate(items):
        diagnostic, refusal = _diagnostic(position, item)
        if refusal is None and len(accepted) >= MAX_DIAGNOSTICS:
            reason = f"more than {MAX_DIAGNOSTICS} diagnostics in one document"
            refusal = Refusal("diagnostic", reason, diagnostic.id, diagnostic.kind)
        if refusal is not None:
            refusals.append(refusal)
        else:
            accepted.append(diagnostic)
    return Desired(model, tuple(accepted), tuple(refusals))


def _model(raw: object) -> tuple[ModelRequest | None, str | None]:
    if not isinstance(raw, dict):
        return None, f"expected an object or null, found {_show(raw)}"
    extra = sorted(set(raw) - {"name", "version"})
    if extra:
        return None, f"unknown keys {extra}; expected only 'name' and 'version'"
    name, version = raw.get("name"), raw.get("version")
    if not isinstance(name, str) or not _NAME.match(name):
        return None, f"name: expected a model name ([A-Za-z0-9._-]), found {_show(name)}"
    if not isinstance(version, str) or len(version) > 64:
        return None, f"version: expected a semver like 1.2.0, found {_show(version)}"
    wrong = versions.problem(version)  # the order the model manager activates versions in
    if wrong is not None:
        return None, f"version: {wrong}"
    return ModelRequest(name, version), None


def _diagnostic(position: int, item: object) -> tuple[Diagnostic, Refusal | None]:
    empty = Diagnostic("", "", {})
    where = f"diagnostics[{position}]"
    if not isinstance(item, dict):
        return empty, Refusal("diagnostic", f"{where}: expected an object, found {_show(item)}")
    raw_id, raw_kind = item.get("id"), item.get("kind")
    ident = raw_id if isinstance(raw_id, str) and _ID.match(raw_id) else None
    kind = raw_kind if isinstance(raw_kind, str) else None
    if ident is None:
        why = f"{where}.id: expected [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}, found {_show(raw_id)}"
        return empty, Refusal("diagnostic", why, None, kind)
    extra = sorted(set(item) - {"id", "kind", "args"})
    if extra:
        why = f"{where}: unknown keys {extra}; expected only 'id', 'kind' and 'args'"
        return empty, Refusal("diagnostic", why, ident, kind)
    if kind is None or kind not in ALLOWED:
        why = f"{where}.kind: {_show(raw_kind)} is not allowed; allowed: {', '.join(ALLOWED)}"
        return empty, Refusal("diagnostic", why, ident, kind)
    args = item.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        why = f"{where}.args: expected an object, found {_show(args)}"
        return empty, Refusal("diagnostic", why, ident, kind)
    declared = ALLOWED[kind]
    for key, value in args.items():
        spec = declared.get(key)
        if spec is None:
            allowed = ", ".join(declared) or "none"
            why = f"{where}.args: {_show(key)} is not an argument of {kind}; allowed: {allowed}"
            return empty, Refusal("diagnostic", why, ident, kind)
        problem = spec.problem(value)
        if problem is not None:
            return empty, Refusal("diagnostic", f"{where}.args.{key}: {problem}", ident, kind)
    return Diagnostic(ident, kind, dict(args)), None


def _show(value: object) -> str:
    text = json.dumps(value, default=lambda v: type(v).__name__)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class SeenIds:
    """The last ``capacity`` request ids processed (``add`` says whether one is new)."""

    capacity: int = 1000
    _order: deque[str] = field(default_factory=deque)
    _set: set[str] = field(default_factory=set)

    def __contains__(self, ident: object) -> bool:
        return ident in self._set

    def add(self, ident: str) -> bool:
        if ident in self._set:
            return False
        self._order.append(ident)
        self._set.add(ident)
        while len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())
        return True


def mask_secrets(value: object) -> object:
    """A copy with every ``*_file``, ``*_credential``, password, token or secret value masked."""
    if isinstance(value, Mapping):
        return {
            k: MASKED if isinstance(k, str) and _SECRET_KEY.search(k) and v is not None
            else mask_secrets(v)
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item) for item in value]
    return value


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def json_bytes(value: object, cap: int) -> tuple[bytes, bool]:
    """Strict JSON of ``value`` and whether it had to be cut (then a stand-in is returned)."""
    data = json.dumps(_finite(value), separators=(",", ":"), allow_nan=False).encode()
    if len(data) <= cap:
        return data, False
    stand_in = {"truncated": True, "bytes": len(data), "cap_bytes": cap}
    return json.dumps(stand_in).encode(), True


def cap_lines(lines: list[str], cap: int) -> tuple[list[str], bool]:
    """The newest lines whose total UTF-8 size (plus separators) is at most ``cap``."""
    kept: list[str] = []
    total = 0
    for line in reversed(lines):
        total += len(line.encode()) + 4  # quotes, comma, some escaping
        if total > cap:
            return kept[::-1], True
        kept.append(line)
    return kept[::-1], False
