"""Cross-checks of the `[[loops]]` against the model packages they name (`edge-agent check`).

Owns: the rules that relate a loop to the manifest of the package it would run: every model
input is mapped by one of the loop's `[[loops.inputs]]` (or derived by the agent), each grid
axis is a model input, the grid search finds the inputs and outputs it needs, a direct
loop's output exists; and how a package missing from models_dir is judged: an error for a
loop that writes (advisory, closed loop), a warning for a shadow loop (a remote delivery may
bring it), naming the packages that are there.
Must not: read files or verify packages (agent.control.model_checks does, and hands `Package`
values here); judge a loop with mode "off" (it loads no model).
Invariants: pure and total, like agent.config.checks; every problem is reported, with a
key path like `loops[0].inputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.config.settings import Loop
from agent.control.features import DERIVED
from agent.domain.errors import ConfigProblem

__all__ = ["GRID_INPUTS", "GRID_OUTPUTS", "Package", "absent_package", "check_fit"]

GRID_INPUTS = ("feed_rate",)
"""Model inputs the grid search reads besides its axes (the capacity constraint)."""
GRID_OUTPUTS = ("blaine", "residue45", "s28", "spec_energy")
"""Model outputs the grid search's objective and constraints read (plant-model 2.3)."""


@dataclass(frozen=True)
class Package:
    """What the checks need of a package that loads: its identity, inputs and outputs."""

    name: str
    version: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def __str__(self) -> str:
        return f"'{self.name}' {self.version}"


def _listing(present: Mapping[str, Sequence[str]], unlisted: str | None) -> str:
    parts = [f"{name} {', '.join(versions)}" for name, versions in sorted(present.items())]
    return "; ".join(parts) or ("none" if unlisted is None else f"none: {unlisted}")


def absent_package(
    index: int,
    loop: Loop,
    models_dir: str,
    present: Mapping[str, Sequence[str]],
    file: str,
    *,
    unlisted: str | None = None,
) -> ConfigProblem | None:
    """The loop's model (or its pinned version) is not in models_dir: the problem, else None.

    A shadow loop's missing package is a warning (the caller decides how to print it);
    `present` maps every model name under models_dir to its versions; `unlisted` says why
    models_dir could not be listed, if it could not (so nothing is known to be there).
    """
    versions = present.get(loop.model)
    later = (
        " (yet: a shadow loop waits for it, e.g. for a remote delivery)"
        if loop.mode == "shadow"
        else ""
    )
    if not versions:
        return ConfigProblem(
            file,
            f"loops[{index}].model",
            f"a model package {models_dir}/<model>/<version>/ "
            f"(present: {_listing(present, unlisted)})",
            f"'{loop.model}', which is not there{later}",
        )
    if loop.model_version is not None and loop.model_version not in versions:
        return ConfigProblem(
            file,
            f"loops[{index}].model_version",
            f"a version of '{loop.model}' in {models_dir}/{loop.model}/ "
            f"(present: {', '.join(versions)})",
            f"'{loop.model_version}', which is not there{later}",
        )
    return None


def check_fit(index: int, loop: Loop, package: Package, file: str) -> list[ConfigProblem]:
    """The loop can run this package: its inputs, grid axes and output fit the manifest."""
    key = f"loops[{index}]"
    problems = []
    mapped = {item.feature for item in loop.inputs}
    unmapped = [f for f in package.inputs if f not in mapped and f not in DERIVED]
    if unmapped:
        problems.append(
            ConfigProblem(
                file,
                f"{key}.inputs",
                f"a [[loops.inputs]] feature for every input of model {package} "
                f"(the agent derives {', '.join(sorted(DERIVED))} itself)",
                f"none for {unmapped}",
            )
        )
    if loop.strategy == "direct":
        if loop.output not in package.outputs:
            problems.append(
                ConfigProblem(
                    file,
                    f"{key}.output",
                    f"an output of model {package} ({', '.join(package.outputs)})",
                    repr(loop.output),
                )
            )
        return problems
    for j, axis in enumerate(loop.grid):
        if axis.feature not in package.inputs:
            problems.append(
                ConfigProblem(
                    file,
                    f"{key}.grid[{j}].feature",
                    f"an input of model {package} ({', '.join(package.inputs)})",
                    repr(axis.feature),
                )
            )
    lacking = [f"input {f}" for f in GRID_INPUTS if f not in package.inputs] + [
        f"output {o}" for o in GRID_OUTPUTS if o not in package.outputs
    ]
    if lacking:
        problems.append(
            ConfigProblem(
                file,
                f"{key}.strategy",
                f"a model with the input {', '.join(GRID_INPUTS)} and the outputs "
                f"{', '.join(GRID_OUTPUTS)} for strategy 'grid' (or strategy = 'direct')",
                f"model {package} without {', '.join(lacking)}",
            )
        )
    return problems
