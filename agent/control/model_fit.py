"""Cross-checks of the `[[loops]]` against the model packages they name (`edge-agent check`).

Owns: the rules that relate a loop to the manifest of the package it would run: every model
input is mapped by one of the loop's `[[loops.inputs]]` (or derived by the loop's objective),
each grid axis is a model input, the model has the inputs and outputs the loop's objective
declares it needs (agent.objectives.base: `inputs`, `outputs`), a direct loop's output
exists; every loop input feature the objective derives a model input from (`derived`,
`observes`) is one of the loop's `[[loops.inputs]]` (without it that model input would be
the training mean every cycle); and how a package missing from models_dir or a derived
feature without its loop inputs is judged: an error for a loop that writes (advisory,
closed loop), a warning for a shadow loop (a remote delivery may bring the package; a
shadow loop records the imputed value and writes nothing), naming what is there.
Must not: read files or verify packages (agent.control.model_checks does, and hands `Package`
values here); judge a loop with mode "off" (it loads no model).
Invariants: pure and total, like agent.config.checks; every problem is reported, with a
key path like `loops[0].inputs`; it names no process quantity (the objective declares them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.config.settings import Loop
from agent.domain.errors import ConfigProblem
from agent.objectives.registry import objective_for

__all__ = ["Package", "absent_package", "check_fit", "derived_inputs"]


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
    """The loop can run this package: its inputs, grid axes, output and the objective's
    needs fit the manifest."""
    key = f"loops[{index}]"
    problems = []
    objective = objective_for(loop.objective)
    derived = objective.derived
    mapped = {item.feature for item in loop.inputs}
    unmapped = [f for f in package.inputs if f not in mapped and f not in derived]
    if unmapped:
        problems.append(
            ConfigProblem(
                file,
                f"{key}.inputs",
                f"a [[loops.inputs]] feature for every input of model {package} "
                f"(the agent derives {', '.join(sorted(derived))} itself)",
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
    lacking = [f"input {f}" for f in objective.inputs if f not in package.inputs] + [
        f"output {o}" for o in objective.outputs if o not in package.outputs
    ]
    if lacking:
        needs = [f"the inputs {', '.join(objective.inputs)}"] if objective.inputs else []
        needs += [f"the outputs {', '.join(objective.outputs)}"] if objective.outputs else []
        problems.append(
            ConfigProblem(
                file,
                f"{key}.objective",
                f"a model with what objective '{objective.kind}' needs for strategy 'grid': "
                f"{' and '.join(needs)} (or strategy = 'direct')",
                f"model {package} without {', '.join(lacking)}",
            )
        )
    return problems


def derived_inputs(index: int, loop: Loop, package: Package, file: str) -> ConfigProblem | None:
    """Every loop input the objective derives this package's model inputs from is one of
    the loop's `[[loops.inputs]]`: the problem, else None (the caller judges it an error
    for a loop that writes, a warning for a shadow loop)."""
    objective = objective_for(loop.objective)
    mapped = {item.feature for item in loop.inputs}
    derived = [name for name in package.inputs if name in objective.derived]
    needs = {name: objective.derived[name] for name in derived}
    lacking = {n: [f for f in fs if f not in mapped] for n, fs in needs.items()}
    lacking = {n: fs for n, fs in lacking.items() if fs}
    if not lacking:
        return None
    features = sorted({f for fs in lacking.values() for f in fs})
    froms = "; ".join(f"{n} from {', '.join(fs)}" for n, fs in needs.items())
    return ConfigProblem(
        file,
        f"loops[{index}].inputs",
        f"a [[loops.inputs]] feature for every loop input objective '{objective.kind}' "
        f"derives the inputs of model {package} from ({froms})",
        f"none for {features}: {', '.join(lacking)} would be the training mean every cycle",
    )
