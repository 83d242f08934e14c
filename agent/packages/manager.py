"""The model manager: which version of each model is active, hot-swap, probation, rollback.

Owns: scanning `models_dir/<name>/<version>/` for packages, loading them (signature, sha256,
graph, warm-up: agent.packages.package) off the event loop, activating the pinned or the
newest valid version, watching the directory for new versions (placed by plant IT or
delivered through the sync) and activating them without a restart, and rolling back to the
previous version when a new one fails to load or fails its first cycles; the challenger a
loop's `[loops.quality] challenger_version` names, loaded the same way and kept for the loop
to run in shadow (`challenger(name)`); the operator's `promote()` of it, recorded in the
promotion file (agent.packages.promotion). Every activation, refusal, challenger load,
promotion and rollback is an audit record.
Must not: run control cycles (loops ask `session(name)`/`challenger(name)` each cycle and
`report()` how the cycle's inference went); score or compare models (agent.quality does).
Invariants: a version that failed is not tried again until its manifest changes; the
active session is replaced only by a session that loaded completely; with no valid version
at all, `session()` is None and the loops hold. "Newer" is agent.packages.versions' order
(1.10.0 after 1.9.0); a folder whose name is no version is refused, never loaded or ordered.
Only `promote()` activates a challenger, never a scan (even when it is the newest); a
promoted version is the pin until its probation fails or the configuration changes.
Scans and promotions run one at a time, so a scan's load never undoes a promotion.
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
from agent.packages.promotion import (
    Promotion,
    PromotionFile,
    PromotionFileError,
    PromotionRefusedError,
)

if TYPE_CHECKING:
    from agent.packages.session import ModelSession

__all__ = ["PROBATION_CYCLES", "ModelManager", "PromotionRefusedError"]

PROBATION_CYCLES = 3
"""A hot-swapped version must pass this many cycles before the previous one is let go."""
SCAN_INTERVAL_S = 10.0

Audit = Callable[..., Awaitable[Any]]
log = get_logger(__name__)


@dataclass
class _Model:
    name: str
    config_pin: str | None  # the configuration's model_version and challenger_version
    config_challenger: str | None = None
    promoted: str | None = None  # a promotion in force: the pin instead of the config's
    active: ModelSession | None = None
    previous: ModelSession | None = None
    challenger: ModelSession | None = None
    probation: int = 0
    failed: dict[str, float] = field(default_factory=dict)  # version -> manifest mtime
    challenger_failed: dict[str, float] = field(default_factory=dict)

    @property
    def pinned(self) -> str | None:
        return self.promoted or self.config_pin

    @property
    def challenger_version(self) -> str | None:
        """The configuration's challenger, unless it is the promoted version."""
        return None if self.config_challenger == self.promoted else self.config_challenger


class ModelManager:
    """Active versions of the models the loops use (`pins`: name -> pinned version or None),
    and their challengers (`challengers`: name -> version; a model not in `pins` is ignored)."""

    def __init__(
        self,
        models_dir: Path,
        public_key: Ed25519PublicKey | None,
        pins: Mapping[str, str | None],
        *,
        audit: Audit,
        clock: Clock,
        scan_interval_s: float = SCAN_INTERVAL_S,
        challengers: Mapping[str, str] | None = None,
        promoted_file: Path | None = None,
    ) -> None:
        self.models_dir = models_dir
        self._key = public_key
        self._audit = audit
        self._clock = clock
        self._scan_interval_s = scan_interval_s
        self._lock = asyncio.Lock()
        self._file_lock = asyncio.Lock()
        named = {n: v for n, v in (challengers or {}).items() if n in pins}
        self._promotions = PromotionFile(promoted_file)
        in_force = self._promotions.load(pins, named)
        self._models = {
            n: _Model(n, pin, named.get(n), p.version if (p := in_force.get(n)) else None)
            for n, pin in pins.items()
        }
        if self._models:
            # onnxruntime is imported here, on the event loop's thread, once: a first import
            # inside a worker thread (load_package runs in one) while the main thread imports
            # too risks the import lock; two loaded CI runs timed out in model loading right
            # after the import became lazy.
            importlib.import_module("agent.packages.session")

    def session(self, name: str) -> ModelSession | None:
        model = self._models.get(name)
        return None if model is None else model.active

    def challenger(self, name: str) -> ModelSession | None:
        """The loaded challenger of model `name` (None: none named, not loaded, promoted)."""
        model = self._models.get(name)
        return None if model is None else model.challenger

    @property
    def active(self) -> dict[str, str | None]:
        return {
            n: (m.active.manifest.version if m.active else None) for n, m in self._models.items()
        }

    @property
    def challengers(self) -> dict[str, str | None]:
        """The loaded challenger version of every model (None: no challenger loaded)."""
        return {
            n: (m.challenger.manifest.version if m.challenger else None)
            for n, m in self._models.items()
        }

    def _candidates(self, model: _Model) -> dict[str, tuple[Path, float]]:
        """Every version folder not failed yet that may become active (the pinned one, or
        any but the challenger): name -> (path, manifest mtime)."""
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
            if model.pinned is None and entry.name == model.challenger_version:
                continue  # the challenger becomes active only by promote()
            mtime = manifest.stat().st_mtime
            if model.failed.get(entry.name) == mtime:
                continue
            found[entry.name] = (entry, mtime)
        return found

    async def _refuse(
        self, model: _Model, version: str, mtime: float, error: str, *, challenger: bool = False
    ) -> None:
        (model.challenger_failed if challenger else model.failed)[version] = mtime
        current = model.active.manifest.version if model.active else None
        role = {"role": "challenger"} if challenger else {}
        log.error("model_refused", model=model.name, version=version, error=error, **role)
        await self._audit("model_refused", {"model": model.name, "version": version,
                          "reason": error, "active": current, **role})  # fmt: skip

    async def _load(self, model: _Model, version: str, path: Path) -> ModelSession:
        """The package in `path`, checked to be `model`/`version` (raises ModelRejectedError)."""
        session = await asyncio.to_thread(load_package, path, self._key)
        if session.manifest.version != version or session.manifest.name != model.name:
            raise ModelRejectedError(
                str(path / MANIFEST_FILE),
                f"the folder says {model.name}/{version}, the manifest "
                f"{session.manifest.name}/{session.manifest.version}",
            )
        return session

    async def _scan_challenger(self, model: _Model) -> None:
        """Load the named challenger once (again only when its manifest changes)."""
        version = model.challenger_version
        if version is None or model.challenger is not None:
            return
        path = self.models_dir / model.name / version
        try:
            mtime = (path / MANIFEST_FILE).stat().st_mtime
        except OSError:
            return  # not delivered (yet): `promote` says it is not loaded
        if model.challenger_failed.get(version) == mtime:
            return
        current = model.active.manifest.version if model.active else None
        try:
            if version in (current, model.pinned):
                raise ModelRejectedError(str(path), f"challenger_version {version} is the "
                                         "active (pinned) version: nothing to compare it with; "
                                         "name another version as challenger")  # fmt: skip
            if (problem := versions.problem(version)) is not None:
                raise ModelRejectedError(str(path), f"folder name: {problem}")
            session = await self._load(model, version, path)
            names = [i.name for i in session.manifest.inputs]
            wanted = [i.name for i in model.active.manifest.inputs] if model.active else names
            if names != wanted:
                why = f"runs on the active version's features: inputs {wanted} in this order"
                raise ModelRejectedError(str(path), f"the challenger {why}, not {names}")
        except ModelRejectedError as exc:
            await self._refuse(model, version, mtime, str(exc), challenger=True)
            return
        model.challenger = session
        log.info("challenger_loaded", model=model.name, version=version, active=current)
        await self._audit("challenger_loaded", {"model": model.name, "version": version,
                          "sha256": session.manifest.model.sha256, "active": current})  # fmt: skip

    async def scan(self) -> None:
        """Activate a newer valid version of every model, if one appeared; load challengers."""
        async with self._lock:
            for model in self._models.values():
                await self._scan_active(model)
                await self._scan_challenger(model)

    async def _scan_active(self, model: _Model) -> None:
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
                session = await self._load(model, version, path)
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
        if model.promoted == version:  # the configuration's pin and challenger again
            model.promoted = None
            try:
                await self._persist(name, None)
            except PromotionFileError as exc:
                log.warning("model_promotions_not_written", model=name, error=str(exc))

    async def _persist(self, name: str, promotion: Promotion | None) -> None:
        async with self._file_lock:
            await asyncio.to_thread(self._promotions.put, name, promotion)

    async def promote(self, name: str, version: str, *, operator: str, reason: str) -> str:
        """Make the loaded challenger `version` of `name` the active version, on probation;
        returns the previous active version (raises PromotionRefusedError)."""
        async with self._lock:
            model = self._models.get(name)
            if model is None:
                known = ", ".join(sorted(self._models)) or "none"
                raise PromotionRefusedError(f"unknown model {name!r}: the loops run {known}")
            if model.challenger_version != version:
                named = model.challenger_version or "none: set [loops.quality] challenger_version"
                why = f"the challenger is {named}"
                if version == model.promoted:
                    why = "it was promoted: it is the active version"
                raise PromotionRefusedError(f"{name} {version} is not the challenger ({why})")
            session, current = model.challenger, model.active
            if session is None:
                raise PromotionRefusedError(f"challenger {name} {version} is not loaded "
                                            "(see its model_refused record)")  # fmt: skip
            if current is None:
                raise PromotionRefusedError(f"{name} has no active version to fall back on "
                                            "during the probation")  # fmt: skip
            try:
                await self._persist(
                    name, Promotion(version, model.config_pin, model.config_challenger)
                )
            except PromotionFileError as exc:
                raise PromotionRefusedError(f"the promotion cannot be recorded: {exc}") from exc
            previous = current.manifest.version
            model.previous, model.active, model.probation = current, session, PROBATION_CYCLES
            model.challenger, model.promoted = None, version
            body = {"model": name, "version": version, "previous": previous,
                    "operator": operator, "reason": reason}  # fmt: skip
            log.info("model_promoted", **body)
            await self._audit("model_promoted", body)
            return previous

    async def run(self) -> None:
        """Scan now and then every `scan_interval_s` (on the injected clock), forever."""
        while True:
            await self.scan()
            await self._clock.sleep(self._scan_interval_s)
