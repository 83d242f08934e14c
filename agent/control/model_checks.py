"""`edge-agent check` of the loops against models_dir: the packages they would run, verified.

Owns: listing models_dir (`<name>/<version>/manifest.json`), verifying the package each
loop that is not off would run (agent.packages.keys.verify_package: the signature with
the configured public key, the manifest, the sha256 and the graph) in the model manager's
order (the pinned version, else the newest that loads), and handing the manifests to
agent.control.model_fit; the problems come back split into errors and warnings,
with the line of their key.
Must not: print or exit (agent.cli.main does), write anything, or load a package for a loop with
mode "off" (the agent does not load one either).
Invariants: what it calls an error is what would keep a loop from ever acting, or make it
act on a model input that is the training mean every cycle, when the agent runs this
configuration on this machine; a warning (a shadow loop's model not here yet or its derived
feature without its loop inputs, a newer version the agent would refuse, a key file no
present package needs yet) never makes `check` fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.config.loader import LoadedConfig
from agent.config.messages import Lines
from agent.control.model_fit import Package, absent_package, check_fit, derived_inputs
from agent.domain.errors import ConfigProblem
from agent.packages import versions  # the manager's own order: one place
from agent.packages.keys import verify_package
from agent.packages.manifest import ModelRejectedError
from agent.packages.package import MANIFEST_FILE, load_public_key

__all__ = ["LoopCheckReport", "check_loop_models"]

_KEY = "agent.model_public_key_file"
_KEY_EXPECTED = "an Ed25519 public key (PEM) the agent can read"


@dataclass
class LoopCheckReport:
    """The problems found: errors make `check` exit 78, warnings are printed only."""

    errors: list[ConfigProblem] = field(default_factory=list)
    warnings: list[ConfigProblem] = field(default_factory=list)


def present_packages(models_dir: Path) -> tuple[dict[str, list[str]], str | None]:
    """Every `<name>: [versions, newest first, then the folders named no version]` with a
    manifest under models_dir, and why models_dir cannot be listed (None when it can, or
    does not exist)."""
    found: dict[str, list[str]] = {}
    try:
        names = sorted(p for p in models_dir.iterdir() if p.is_dir())
    except FileNotFoundError:
        return found, None
    except OSError as exc:
        return found, f"cannot list {models_dir}: {exc.strerror}"
    for folder in names:
        try:
            listed = [v.name for v in folder.iterdir() if (v / MANIFEST_FILE).is_file()]
        except OSError:
            continue
        listed = [v for v in listed if not v.startswith(".")]  # a delivery in progress
        if listed and not folder.name.startswith("."):
            newest = versions.newest_first(listed)
            found[folder.name] = newest + sorted(set(listed) - set(newest))
    return found, None


def _verify(directory: Path, name: str, version: str, key: Path | None) -> Package | str:
    """The package as the model manager would activate it, or why it would refuse it."""
    report = verify_package(directory, key)
    if not report.ok:
        return "; ".join(report.errors) or f"{directory}: signature {report.signature}"
    if (report.name, report.version) != (name, version):
        return (
            f"{directory / MANIFEST_FILE}: the folder says {name}/{version}, the manifest "
            f"{report.name}/{report.version}"
        )
    inputs = tuple(i.name for i in report.inputs)
    return Package(report.name, report.version, inputs, tuple(o.name for o in report.outputs))


class _Packages:
    """Each (model, pinned version) verified once, however many loops run it."""

    def __init__(self, models_dir: Path, key: Path | None, present: Mapping[str, Sequence[str]]):
        self.models_dir, self.key, self.present = models_dir, key, present
        self._seen: dict[tuple[str, str | None], tuple[Package | None, list[str]]] = {}

    def choose(self, name: str, pin: str | None) -> tuple[Package | None, list[str]]:
        """The version the manager would activate, and why each newer one would be refused."""
        if (name, pin) not in self._seen:
            listed = [pin] if pin is not None else self.present.get(name, [])
            refused = [  # as the manager: a folder named no version is refused, never loaded
                f"{self.models_dir / name / version}: folder name: {problem}"
                for version in listed
                if (problem := versions.problem(version)) is not None
            ]
            chosen = None
            for version in versions.newest_first(listed):
                found = _verify(self.models_dir / name / version, name, version, self.key)
                if isinstance(found, Package):
                    chosen = found
                    break
                refused.append(found)
            self._seen[(name, pin)] = (chosen, refused)
        return self._seen[(name, pin)]


def check_loop_models(loaded: LoadedConfig) -> LoopCheckReport:
    """Every loop that is not off, against the package it would run (see the module doc)."""
    s, file = loaded.settings, str(loaded.path)
    models_dir = s.agent.models_dir or s.agent.state_dir / "models"
    report = LoopCheckReport()
    present, unlisted = present_packages(models_dir)
    key_path = s.agent.model_public_key_file
    key_problem = None
    if key_path is not None:
        try:
            load_public_key(key_path)
        except ModelRejectedError as exc:
            key_problem = ConfigProblem(file, _KEY, _KEY_EXPECTED, str(exc))
    packages = _Packages(models_dir, key_path, present)
    key_needed = False
    for index, loop in enumerate(s.loops):
        if loop.mode == "off":
            continue
        absent = absent_package(index, loop, str(models_dir), present, file, unlisted=unlisted)
        if absent is not None:
            (report.warnings if loop.mode == "shadow" else report.errors).append(absent)
            continue
        if key_problem is not None:  # no signature can be checked without the key
            key_needed = True
            continue
        chosen, refused = packages.choose(loop.model, loop.model_version)
        where = f"loops[{index}].{'model' if loop.model_version is None else 'model_version'}"
        if chosen is None:
            report.errors.append(ConfigProblem(file, where, "a model package that loads "
                                 "(signature, manifest, sha256, graph)", refused[0]))  # fmt: skip
            continue
        report.warnings += [
            ConfigProblem(file, where, f"only packages that load (the agent runs {chosen})", why)
            for why in refused
        ]
        report.errors += check_fit(index, loop, chosen, file)
        if (needs := derived_inputs(index, loop, chosen, file)) is not None:
            (report.warnings if loop.mode == "shadow" else report.errors).append(needs)
    if key_problem is not None:
        if key_needed:
            report.errors.insert(0, key_problem)
        else:
            expected = f"{_KEY_EXPECTED} (`run` refuses to start without it)"
            report.warnings.insert(0, ConfigProblem(file, _KEY, expected, key_problem.found))
    return _located(loaded.path, report)


def _located(path: Path, report: LoopCheckReport) -> LoopCheckReport:
    """The problems with the line of their key in the file, where it can be found."""
    try:
        lines = Lines(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError):
        return report
    return LoopCheckReport(
        [lines.locate(p) for p in report.errors], [lines.locate(p) for p in report.warnings]
    )
