"""The model manager: which version of each model is active, hot-swap, probation, rollback.

Owns: scanning `models_dir/<name>/<version>/` for packages, loading them (signature, sha256,
graph, warm-up: agent.packages.package) off the event loop, activating the pinned or the
newest valid version, watching the directory for new versions (placed by plant IT or
delivered through the sync) and activating them without a restart, and rolling back to the
previous version when a new one fails to load or fails its first cycles. Every activation,
refusal and rollback is an audit record.
Must not: run control cycles; loops ask `session(name)` each cycle and `report()` how the
cycle's inference went.
Invariants: a version that failed is not tried again until its manifest changes; the
active session is replaced only by a session that loaded completely; with no valid version
at all, `session()` is None and the loops hold. "Newer" is agent.packages.versions' order
(1.10.0 after 1.9.0); a folder whose name is no version is refused, never loaded or ordered.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.domain.clock import Clock
from agent.domain.logger import get_logger
from agent.packages import versions
from agent.packages.manifest import ModelRejectedError
from agent.packages.package import MANIFEST_FILE, load_package

if TYPE_CHECKING:
    from agent.packages.session import ModelSession

__all__ = ["PROBATION_CYCLES", "ModelManager"]

PROBATION_CYCLES = 3
"""A hot-swapped version must pass this many cycles before the previous one is let go."""
SCAN_INTERVAL_S = 10.0

Audit = Callable[..., Awaitable[Any]]
log = get_logger(__name__)


@dataclass
class _Model:
    name: str
    pinned: str | None
    active: ModelSession | None = None
    previous: ModelSession | None = None
    probation: int = 0
    failed: dict[str, float] = field(default_factory=dict)  # version -> manifest mtime


class ModelManager:
    """Active versions of the models the loops use (`pins`: name -> pinned version or None)."""

    def __init__(
        self,
        models_dir: Path,
        public_key: Ed25519PublicKey | None,
        pins: Mapping[str, str | None],
        *,
        audit: Audit,
        clock: Clock,
        scan_interval_s: float = SCAN_INTERVAL_S,
    ) -> None:
        self.models_dir = models_dir
        self._key = public_key
        self._audit = audit
        self._clock = clock
        self._scan_interval_s = scan_interval_s
        self._models = {name: _Model(name, pin) for name, pin in pins.items()}
        if self._models:
            # onnxruntime is imported here, on the event loop's thread, once: a first import
            # inside a worker thread (load_package runs in one) while the main thread imports
            # too risks the import lock; two loaded CI runs timed out in model loading right
            # after the import became lazy.
            importlib.import_module("agent.packages.session")

    def session(self, name: str) -> ModelSession | None:
        model = self._models.get(name)
        return None if model is None else model.active

    @property
    def active(self) -> dict[str, str | None]:
        return {
            n: (m.active.manifest.version if m.active else None) for n, m in self._models.items()
        }

    def _candidates(self, model: _Model) -> dict[str, tuple[Path, float]]:
        """Every version folder not failed yet: name -> (path, manifest mtime)."""
        folder = self.models_dir / model.name
        found: dict[str, tuple[Path, float]] = {}
        try:
            entries = list(folder.iterdir())
        except OSError:
            return {}
        for entry in entries:
            manifest = entry / MANIFEST_FILE
            if entry.name.startswith(".") or not manifest.is_file():
                continue  # a delivery still being written, or not a package
            if model.pinned is not None and entry.name != model.pinned:
                continue
            mtime = manifest.stat().st_mtime
            if model.failed.get(entry.name) == mtime:
                continue
            found[entry.name] = (entry, mtime)
        return found

    async def _refuse(self, model: _Model, version: str, mtime: float, error: str) -> None:
        model.failed[version] = mtime
        current = model.active.manifest.version if model.active else None
        log.error("model_refused", model=model.name, version=version, error=error)
        await self._audit("model_refused", {"model": model.name, "version": version,
                          "reason": error, "active": current})  # fmt: skip

    async def scan(self) -> None:
        """Activate a newer valid version of every model, if one appeared."""
        for model in self._models.values():
            current = model.active.manifest.version if model.active else None
            candidates = self._candidates(model)
            for version, (path, mtime) in sorted(candidates.items()):
                if (problem := versions.problem(version)) is not None:  # no version: not loaded
                    error = str(ModelRejectedError(str(path), f"folder name: {problem}"))
                    await self._refuse(model, version, mtime, error)
            for version in versions.newest_first(candidates):
                path, mtime = candidates[version]
                if current is not None and not versions.is_newer(version, current):
                    break
                try:
                    session = await asyncio.to_thread(load_package, path, self._key)
                    if session.manifest.version != version or session.manifest.name != model.name:
                        raise ModelRejectedError(
                            str(path / MANIFEST_FILE),
                            f"the folder says {model.name}/{version}, the manifest "
                            f"{session.manifest.name}/{session.manifest.version}",
                        )
                except ModelRejectedError as exc:
                    await self._refuse(model, version, mtime, str(exc))
                    continue
                model.previous, model.active = model.active, session
                model.probation = PROBATION_CYCLES if model.previous is not None else 0
                log.info("model_activated", model=model.name, version=version, previous=current)
                signature = "valid" if self._key else "not_checked"
                await self._audit("model_activated", {"model": model.name, "version": version,
                                  "sha256": session.manifest.model.sha256, "previous": current,
                                  "signature": signature})  # fmt: skip
                break

    async def report(self, name: str, version: str, ok: bool, reason: str) -> None:
        """How a cycle's inference with `name`/`version` went; a failure on probation rolls back."""
        model = self._models.get(name)
        if model is None or model.active is None or model.active.manifest.version != version:
            return
        if ok:
            if model.probation > 0:
                model.probation -= 1
                if model.probation == 0:
                    model.previous = None
            return
        if model.probation == 0 or model.previous is None:
            return  # a proven version: the loop's own gates handle a bad cycle
        bad = model.active
        manifest = bad.directory / MANIFEST_FILE
        model.failed[version] = manifest.stat().st_mtime if manifest.exists() else 0.0
        model.active, model.previous, model.probation = model.previous, None, 0
        back = model.active.manifest.version
        log.error("model_rolled_back", model=name, version=version, to=back, reason=reason)
        await self._audit("model_rolled_back", {"model": name, "version": version,
                          "to": back, "reason": reason})  # fmt: skip

    async def run(self) -> None:
        """Scan now and then every `scan_interval_s` (on the injected clock), forever."""
        while True:
            await self.scan()
            await self._clock.sleep(self._scan_interval_s)
