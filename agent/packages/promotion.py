"""Operator promotions of challenger models, kept across restarts in one small JSON file.

Owns: the promotion file (the lead puts it at STATE_DIR/promoted.json): reading it at start,
deciding which recorded promotion is still in force for the configuration the agent runs,
and writing it atomically (a temp file in the same folder, fsync, os.replace, fsync of the
folder). Its shape: `{model: {"version": v, "config_pin": pin|null, "config_challenger":
c|null}}`, where pin and challenger are what the configuration said when the operator
promoted v. Also `PromotionRefusedError`, the refusal the operator's command shows.
Must not: load, activate or audit a model (agent.packages.manager does); crash on a file it
cannot read: a malformed or unreadable file is logged (WARNING) and ignored.
Invariants: a promotion is in force only while the configuration's `model_version` and
`challenger_version` of its model are those it recorded: when plant IT changed either since,
the promotion is stale, dropped (INFO) and no longer written. An entry for a model no loop
uses now is kept as it is. The file on disk is always a complete old or complete new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.domain.errors import RejectedError
from agent.domain.logger import get_logger
from agent.packages import versions

__all__ = [
    "PROMOTED_FILE",
    "Promotion",
    "PromotionFile",
    "PromotionFileError",
    "PromotionRefusedError",
]

PROMOTED_FILE = "promoted.json"
"""Its name in STATE_DIR."""

log = get_logger(__name__)


class PromotionRefusedError(RejectedError):
    """A promotion the manager refuses: unknown model, not the challenger, not loaded, no
    active version to fall back on, or the promotion could not be recorded."""


class PromotionFileError(RejectedError):
    """The promotion file cannot be written (the OSError's text after the file)."""


@dataclass(frozen=True)
class Promotion:
    """Version `version` was promoted while the configuration said `config_pin` and
    `config_challenger` for its model."""

    version: str
    config_pin: str | None
    config_challenger: str | None


def _parse(raw: object) -> dict[str, Promotion]:
    """The promotions in a decoded file; ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object of models, found {type(raw).__name__}")
    out: dict[str, Promotion] = {}
    for model, entry in raw.items():
        keys = {"version", "config_pin", "config_challenger"}
        if not isinstance(entry, dict) or set(entry) != keys:
            raise ValueError(f"{model}: expected an object with keys {sorted(keys)}")
        version, pin, challenger = (entry[k] for k in ("version", "config_pin",
                                                       "config_challenger"))  # fmt: skip
        if not isinstance(version, str) or (problem := versions.problem(version)) is not None:
            raise ValueError(f"{model}.version: {problem or 'expected a text'}")
        if not all(v is None or isinstance(v, str) for v in (pin, challenger)):
            raise ValueError(f"{model}: expected config_pin and config_challenger text or null")
        out[model] = Promotion(version, pin, challenger)
    return out


class PromotionFile:
    """The promotions recorded in `path` (None: promotions are not kept across restarts)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, Promotion] = {}

    def load(
        self, pins: Mapping[str, str | None], challengers: Mapping[str, str]
    ) -> dict[str, Promotion]:
        """Read the file (at start, once): the promotions in force for `pins`/`challengers`.
        Stale ones are dropped from the file (a failure to rewrite it is logged)."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            self._entries = _parse(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is one
            log.warning("model_promotions_ignored", file=str(self.path), error=str(exc),
                        expected="{model: {version, config_pin, config_challenger}}")  # fmt: skip
            return {}
        in_force: dict[str, Promotion] = {}
        dropped = False
        for model, p in list(self._entries.items()):
            if model not in pins:
                continue  # no loop runs it now: kept for when one does again
            now = (pins[model], challengers.get(model))
            if now == (p.config_pin, p.config_challenger):
                in_force[model] = p
                continue
            del self._entries[model]
            dropped = True
            log.info(
                "model_promotion_dropped",
                model=model,
                version=p.version,
                reason="the configuration changed after the promotion",
                then={"model_version": p.config_pin, "challenger_version": p.config_challenger},
                now={"model_version": now[0], "challenger_version": now[1]},
            )
        if dropped:
            try:
                self.write(self._encode(self._entries))
            except PromotionFileError as exc:  # in force or not is decided: only the file lags
                log.warning("model_promotions_not_written", error=str(exc))
        return in_force

    def put(self, model: str, promotion: Promotion | None) -> None:
        """Record (None: forget) `model`'s promotion in the file; the file and this object
        change only together (blocking: call it off the event loop, one call at a time)."""
        entries = {m: p for m, p in self._entries.items() if m != model}
        if promotion is not None:
            entries[model] = promotion
        self.write(self._encode(entries))
        self._entries = entries

    @staticmethod
    def _encode(entries: Mapping[str, Promotion]) -> bytes:
        body = {m: asdict(p) for m, p in sorted(entries.items())}
        return (json.dumps(body, indent=2) + "\n").encode()

    def write(self, data: bytes) -> None:
        """Replace the file by `data` atomically (blocking: call it off the event loop)."""
        if self.path is None:
            return
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, self.path)
            finally:
                if os.path.exists(temp):
                    os.unlink(temp)
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise PromotionFileError(f"{self.path}: {exc.strerror or exc}") from exc
