"""The truth-loop month tests' rig and checks: one closed loop of the demo configuration,
headless in sim time (agent.demo.headless), and what the tests print and assert about it.

Owns: `truth_rig` (agent.demo.headless.rig.headless_rig with one loop, the separator by
default), `figures` (the truth loop's report printed for the record) and `lost_nothing`.
Must not: patch or mock an agent module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from agent.demo.headless.config import LAB_TESTS
from agent.demo.headless.rig import DAY, HeadlessRig, headless_rig

__all__ = ["DAY", "LAB_TESTS", "figures", "lost_nothing", "truth_rig"]


@contextlib.asynccontextmanager
async def truth_rig(
    folder: Path, *, seed: int, loop: str = "separator", cadence_s: float = 600.0,
    quality: Mapping[str, object] | None = None,
) -> AsyncIterator[HeadlessRig]:  # fmt: skip
    """The mill (seed) and the headless agent with the one loop `loop`, in `folder`."""
    async with headless_rig(folder, seed=seed, loops=[loop], cadence_s=cadence_s,
                            quality=quality) as rig:  # fmt: skip
        yield rig


def figures(rig: HeadlessRig, label: str) -> None:
    report = rig.truth.report(rig.rules.name)
    print(f"\n[{label}] t={(rig.mill.time - rig.mill.time % 1) :.0f} offsets={dict(report.offsets)}"  # noqa: T201
          f" step_down={report.step_down}")  # fmt: skip
    for h in report.tests:
        print(f"  {h.test}: n={h.n} bias={h.bias:.3f} raw_bias={h.raw_bias:.3f} rmse={h.rmse:.3f}"  # noqa: T201
              f" raw_rmse={h.raw_rmse:.3f} declared={h.declared_rmse} degraded={h.degraded}")  # fmt: skip


async def lost_nothing(rig: HeadlessRig) -> None:
    """Every lab result the mill entered of a judged test reached quality.db by the tags, and
    so did what each tag held at the start (the mill's nominal value, sample time = start)."""
    entered = [r for r in rig.mill.lab_results() if r.test in LAB_TESTS]
    assert await rig.truth.store.result_count() == len(entered) + len(LAB_TESTS)
