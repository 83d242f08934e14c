"""`edge-agent check` of the loops against models_dir: the packages they would run, verified.

Owns: listing models_dir (`<name>/<version>/manifest.json`), verifying the package each
loop that is not off would run, as written and as each `[[products]]` entry makes it (another
model, version or mode: reported under `products[i]`), with agent.packages.keys.verify_package
(the signature with the configured public key, the manifest, the sha256 and the graph) in the
model manager's order (the pinned version, else the newest that loads), and handing the
manifests to agent.control.model_fit; the problems come back split into errors and warnings,
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
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.config.loader import LoadedConfig
from agent.config.messages import Lines
from agent.config.product_settings import Product
from agent.config.products import override_of, product_loop
from agent.config.settings import Loop
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
    own: set[tuple[str, str]] = set()  # the problems of the loops as written
    said: set[tuple[str, str]] = set()
    for index, loop, where in _every_loop(s.loops, s.products):
        found = LoopCheckReport()
        key_needed |= _check_loop(index, loop, packages=packages, unlisted=unlisted, file=file,
                                  report=found, no_key=key_problem is not None)  # fmt: skip
        written = where == f"loops[{index}]"
        for problems, into in ((found.errors, report.errors), (found.warnings, report.warnings)):
            for problem in problems:
                moved = _moved(problem, index, where)
                # A product's loop repeats none of its loop's problems; a product model run by
                # several loops is reported once, at the product's key.
                if (not written and (problem.key, problem.found) in own) or (
                    moved.key, moved.found) in said:  # fmt: skip
                    continue
                if written:
                    own.add((problem.key, problem.found))
                said.add((moved.key, moved.found))
                into.append(moved)
    if key_problem is not None:
        if key_needed:
            report.errors.insert(0, key_problem)
        else:
            expected = f"{_KEY_EXPECTED} (`run` refuses to start without it)"
            report.warnings.insert(0, ConfigProblem(file, _KEY, expected, key_problem.found))
    return _located(loaded.path, report)


def _every_loop(loops: Sequence[Loop], products: Sequence[Product]) -> list[tuple[int, Loop, str]]:
    """(index in [[loops]], the loop, where its problems are reported) of every loop as it runs:
    as written, then as each product makes it when that runs another model, version or mode
    (reported at the product's key, or at its `[[products.loops]]` entry's)."""
    every = [(i, lp, f"loops[{i}]") for i, lp in enumerate(loops)]
    for j, product in enumerate(products):
        for i, lp in enumerate(loops):
            made = product_loop(lp, product)
            if (made.model, made.model_version, made.mode) != (lp.model, lp.model_version, lp.mode):
                over = override_of(product, lp.name)
                at = (
                    ""
                    if over is None or over.model is None
                    else f".loops[{product.loops.index(over)}]"
                )
                every.append((i, made, f"products[{j}]{at}"))
    return every


def _moved(problem: ConfigProblem, index: int, where: str) -> ConfigProblem:
    """A problem of loops[index] reported where the loop comes from (a product's override)."""
    prefix = f"loops[{index}]"
    if where == prefix or not problem.key.startswith(prefix):
        return problem
    return replace(problem, key=where + problem.key[len(prefix) :])


def _check_loop(
    index: int, loop: Loop, *, packages: _Packages, unlisted: str | None, file: str,
    report: LoopCheckReport, no_key: bool,
) -> bool:  # fmt: skip
    """One loop against the package it would run (into `report`); True when that needs the
    public key that could not be read."""
    if loop.mode == "off":
        return False
    absent = absent_package(index, loop, str(packages.models_dir), packages.present, file,
                            unlisted=unlisted)  # fmt: skip
    if absent is not None:
        (report.warnings if loop.mode == "shadow" else report.errors).append(absent)
        return False
    if no_key:  # no signature can be checked without the key
        return True
    chosen, refused = packages.choose(loop.model, loop.model_version)
    where = f"loops[{index}].{'model' if loop.model_version is None else 'model_version'}"
    if chosen is None:
        report.errors.append(ConfigProblem(file, where, "a model package that loads "
                             "(signature, manifest, sha256, graph)", refused[0]))  # fmt: skip
        return False
    report.warnings += [
        ConfigProblem(file, where, f"only packages that load (the agent runs {chosen})", why)
        for why in refused
    ]
    report.errors += check_fit(index, loop, chosen, file)
    if (needs := derived_inputs(index, loop, chosen, file)) is not None:
        (report.warnings if loop.mode == "shadow" else report.errors).append(needs)
    return False


def _located(path: Path, report: LoopCheckReport) -> LoopCheckReport:
    """The problems with the line of their key in the file, where it can be found."""
    try:
        lines = Lines(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError):
        return report
    return LoopCheckReport(
        [lines.locate(p) for p in report.errors], [lines.locate(p) for p in report.warnings]
    )
