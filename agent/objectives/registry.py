"""Which objective a loop runs: the registry from `[loops.objective] kind` to its objective.

Owns: `REGISTRY` (kind -> the factory that builds the objective from its settings) and
`objective_for`, the one way the control core gets a loop's objective.
Must not: import anything by a name read from a file or a remote request: every objective
is imported here, by the code, and listed below.
Invariants: every kind the configuration schema accepts (agent.config.settings
`ObjectiveSettings`) has exactly one entry here (tests/unit/test_objectives.py holds the
two lists equal), so a file that loads always gets an objective.

To add an objective (docs/control.md): its settings class with `kind: Literal["..."]` in
agent.config.settings (added to `ObjectiveSettings`), its module in agent/objectives/
implementing agent.objectives.base.Objective, and one line in `REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agent.config.settings import CementMillObjective, ObjectiveSettings
from agent.objectives import cement_mill
from agent.objectives.base import Objective

__all__ = ["REGISTRY", "objective_for"]


def _cement_mill(settings: ObjectiveSettings) -> Objective:
    if not isinstance(settings, CementMillObjective):
        raise TypeError(f"cement_mill needs CementMillObjective settings, not {settings!r}")
    return cement_mill.CementMill(settings)


REGISTRY: Mapping[str, Callable[[ObjectiveSettings], Objective]] = {
    cement_mill.KIND: _cement_mill,
}


def objective_for(settings: ObjectiveSettings) -> Objective:
    """A new objective for one loop, from its `[loops.objective]` settings."""
    return REGISTRY[settings.kind](settings)
