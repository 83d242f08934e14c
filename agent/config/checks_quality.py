"""Cross-checks of the truth loop's settings against the rest of the file.

Owns: every rule that relates `[quality]` and `[loops.quality]` to other sections: the lab
result tags and their sample-time and sample-id tags exist, a test is named once per path, the
products are named once, `cloud = true` has a `[sync]` to pull from, a loop's baseline
confirmation tag exists, a challenger is a version and not the loop's pinned version (and a
model has one challenger), `min_results` and `rmse_min_results` are at most `results`,
`correction_results` at least `min_results`, the step-down tests are monitored ones, and a
lab value read over Modbus (`untimed`: no source time of its own) has its sample-time tag.
Must not: touch the filesystem, the environment or the network (the CSV folder may appear
after the agent starts: the watcher warns while it is missing).
Invariants: pure and total, like agent.config.checks; every problem is reported.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agent.config.quality_settings import QualitySection
from agent.config.settings import Loop, SyncSection
from agent.domain.errors import ConfigProblem

__all__ = ["check_quality"]


def check_quality(
    quality: QualitySection,
    loops: Sequence[Loop],
    sync: SyncSection,
    tag_names: Sequence[str],
    file: str,
    *,
    untimed: Collection[str] = (),
) -> list[ConfigProblem]:
    """Every problem of the truth loop's settings (empty: none)."""
    known = set(tag_names)
    out: list[ConfigProblem] = []

    def add(key: str, expected: str, found: str) -> None:
        out.append(ConfigProblem(file, key, expected, found))

    seen: dict[tuple[str, str], int] = {}
    for i, lab in enumerate(quality.tags):
        for field in ("tag", "sample_time_tag", "sample_id_tag"):
            tag = getattr(lab, field)
            if tag is not None and tag not in known:
                add(f"quality.tags[{i}].{field}", "the name of a [[tags]] entry", repr(tag))
        if lab.sample_time_tag is None and lab.tag in untimed:
            add(f"quality.tags[{i}].sample_time_tag",
                "the tag holding the sample time: a Modbus value has no source time of its own "
                "(each poll would be a new result)", "none")  # fmt: skip
        product = lab.product or quality.default_product
        if (first := seen.setdefault((product, lab.tag), i)) != i:
            add(
                f"quality.tags[{i}].tag",
                "each tag once per product",
                f"{lab.tag!r} also in quality.tags[{first}]",
            )
    names: dict[str, int] = {}
    for i, relation in enumerate(quality.products):
        if (first := names.setdefault(relation.name, i)) != i:
            add(
                f"quality.products[{i}].name",
                "a unique name",
                f"{relation.name!r} also in quality.products[{first}]",
            )
    if quality.cloud and (not sync.enabled or sync.url is None):
        add(
            "quality.cloud",
            "[sync] enabled with a url to pull lab results from",
            "cloud = true without it",
        )
    challengers: dict[str, tuple[int, str]] = {}
    for i, lp in enumerate(loops):
        key, q = f"loops[{i}]", lp.quality
        if q.challenger_version is not None and lp.mode != "off":
            named = challengers.setdefault(lp.model, (i, q.challenger_version))
            if named[1] != q.challenger_version:
                add(
                    f"{key}.quality.challenger_version",
                    f"the challenger loops[{named[0]}] names for model {lp.model!r} "
                    f"({named[1]!r}): a model has one challenger",
                    repr(q.challenger_version),
                )
        if lp.baseline_confirm_tag is not None and lp.baseline_confirm_tag not in known:
            add(
                f"{key}.baseline_confirm_tag",
                "the name of a [[tags]] entry",
                repr(lp.baseline_confirm_tag),
            )
        if q.min_results > q.results:
            add(f"{key}.quality.min_results", f"at most results ({q.results})", str(q.min_results))
        if q.rmse_min_results > q.results:
            add(f"{key}.quality.rmse_min_results",
                f"at most results ({q.results}): the RMSE is judged over the last results",
                str(q.rmse_min_results))  # fmt: skip
        if q.correction and q.correction_results < q.min_results:
            add(f"{key}.quality.correction_results",
                f"at least min_results ({q.min_results}), or no offset is ever estimated",
                str(q.correction_results))  # fmt: skip
        if missing := [t for t in q.step_down_tests if t not in q.tests]:
            add(f"{key}.quality.step_down_tests", f"tests the loop monitors ({q.tests})",
                f"{missing} not in tests")  # fmt: skip
        version = q.challenger_version
        if version is not None:
            parts = version.split(".")
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                add(
                    f"{key}.quality.challenger_version",
                    "a version MAJOR.MINOR.PATCH",
                    repr(version),
                )
            elif version == lp.model_version:
                add(
                    f"{key}.quality.challenger_version",
                    "another version than model_version",
                    f"both {version!r}",
                )
    return out
