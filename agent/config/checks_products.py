"""Cross-checks of the product table against the rest of the file.

Owns: every rule that relates `[product_selection]` and `[[products]]` to other sections: the
product and silo tags exist and are read-only; ids and names are unique; a product's loop
overrides name a loop once; the loop a product makes validates (the schema) and passes every
rule a `[[loops]]` entry must (agent.config.checks_loops: tags, writability, the envelope inside
the write limits, the tags a mode needs, the signing key); a product may lower a loop's mode,
never raise it (the agent builds a loop's heartbeat and task from its own mode); a model
version is given with its model; a limestone loop's envelope lies in the product's limestone
range; the strength target is not below the class's lower limit; one version per model; the
truth loop names products of the table, and no loop pins its predictions to one product.
Must not: touch the filesystem, the environment or the network; check model packages
(agent.control.model_checks does, for every product's loops).
Invariants: pure and total; every problem is reported once, at the key that holds the value
(a product-made loop's problem that its `[[loops]]` entry has too is reported there only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from agent.config.checks_loops import check_loops
from agent.config.product_settings import Product, ProductLoop
from agent.config.products import MODES, override_of, product_loop
from agent.config.quality_settings import QualitySection
from agent.config.settings import Loop, Settings
from agent.domain.errors import ConfigProblem

__all__ = ["LIMESTONE", "check_products"]

LIMESTONE = "limestone_share"
"""The lever whose envelope must lie inside a product's limestone range."""


def check_products(settings: Settings, tag_names: Sequence[str], file: str) -> list[ConfigProblem]:
    """Every problem of the product table (empty: none)."""
    selection, products, loops = settings.product_selection, settings.products, settings.loops
    out: list[ConfigProblem] = []

    def add(key: str, expected: str, found: str) -> None:
        out.append(ConfigProblem(file, key, expected, found))

    if selection is None:
        if products:
            add("product_selection", "a [product_selection] with the PLC's product id tag, "
                "for the [[products]] table", "none")  # fmt: skip
        return out
    if not products:
        add("products", "at least one [[products]] entry for [product_selection]", "none")
    known = set(tag_names)
    by_tag = {t.name: t for t in settings.tags}
    for field in ("product_tag", "silo_tag"):
        tag = getattr(selection, field)
        if tag is not None and tag not in known:
            add(f"product_selection.{field}", "the name of a [[tags]] entry", repr(tag))
        elif tag is not None and tag in by_tag and by_tag[tag].writable:
            add(f"product_selection.{field}", "a read-only tag: the PLC says the product, the "
                "agent never writes it", f"{tag!r} with writable = true")  # fmt: skip
    for i, lp in enumerate(loops):
        if lp.quality.product is not None:
            add(f"loops[{i}].quality.product", "no fixed product with a [[products]] table "
                "(the loop's predictions name the product it runs)",
                repr(lp.quality.product))  # fmt: skip
    by_loop = {lp.name: lp for lp in loops}
    ids: dict[int, int] = {}
    names: dict[str, int] = {}
    pins: dict[str, tuple[str, str | None]] = {}
    public_key = settings.agent.model_public_key_file is not None
    own = {(p.key, p.found) for p in check_loops(list(enumerate(loops)), settings.tags, file,
                                                 tag_names, public_key=public_key)}  # fmt: skip
    for i, p in enumerate(products):
        key = f"products[{i}]"
        if (first := ids.setdefault(p.id, i)) != i:
            add(f"{key}.id", "a unique product id", f"{p.id} also in products[{first}]")
        if (first := names.setdefault(p.name, i)) != i:
            add(f"{key}.name", "a unique name", f"{p.name!r} also in products[{first}]")
        if p.silos and selection.silo_tag is None:
            add(f"{key}.silos", "product_selection.silo_tag to read the silo from",
                f"silos {p.silos} without it")  # fmt: skip
        if p.model_version is not None and p.model is None:
            add(f"{key}.model_version", "model with it (a version of which model?)",
                f"model_version {p.model_version!r} alone")  # fmt: skip
        seen: dict[str, int] = {}
        for j, over in enumerate(p.loops):
            if over.loop not in by_loop:
                add(f"{key}.loops[{j}].loop", f"the name of a [[loops]] entry ({sorted(by_loop)})",
                    repr(over.loop))  # fmt: skip
            elif (first := seen.setdefault(over.loop, j)) != j:
                add(f"{key}.loops[{j}].loop", "each loop once per product",
                    f"{over.loop!r} also in {key}.loops[{first}]")  # fmt: skip
            if over.model_version is not None and over.model is None:
                add(f"{key}.loops[{j}].model_version", "model with it (a version of which "
                    "model?)", f"model_version {over.model_version!r} alone")  # fmt: skip
        made: list[tuple[int, Loop]] = []
        for index, lp in enumerate(loops):
            found, loop = _check_one(p, lp, key, file, pins)
            out += found
            if loop is not None:
                made.append((index, loop))
        for problem in check_loops(made, settings.tags, file, tag_names, public_key=public_key):
            if (problem.key, problem.found) not in own:
                out.append(_moved(problem, p, loops, key))
    out += _check_quality_names(settings.quality, names, file)
    unique = {(p.key, p.expected, p.found): p for p in out}  # an override shared by loops: once
    return list(unique.values())


def _where(product: Product, loop: str, key: str) -> tuple[ProductLoop | None, str]:
    over = override_of(product, loop)
    return over, (f"{key}.loops[{product.loops.index(over)}]" if over is not None else key)


def _moved(problem: ConfigProblem, product: Product, loops: Sequence[Loop],
           key: str) -> ConfigProblem:  # fmt: skip
    """A product-made loop's problem, at the product's key (its loop override's, if any)."""
    for index, lp in enumerate(loops):
        prefix = f"loops[{index}]"
        if problem.key == prefix or problem.key.startswith((prefix + ".", prefix + "[")):
            _, where = _where(product, lp.name, key)
            return ConfigProblem(problem.file, where + problem.key[len(prefix) :],
                                 f"{problem.expected} (loop {lp.name!r} while {product.name} "
                                 "is ground)", problem.found)  # fmt: skip
    return problem


Pins = dict[str, tuple[str, str | None]]


def _check_one(product: Product, lp: Loop, key: str, file: str,
               pins: Pins) -> tuple[list[ConfigProblem], Loop | None]:  # fmt: skip
    """The loop `lp` while `product` is ground: it validates, its mode is not above the loop's,
    its limestone envelope lies in the product's range, its strength target is not below the
    class's limit, and its model's pinned version agrees with every other loop's; the loop it
    makes (None when it does not validate)."""
    over, where = _where(product, lp.name, key)
    try:
        made = product_loop(lp, product)
    except ValidationError as exc:
        return [ConfigProblem(file, f"{_source(product, over, err['loc'], key, where)}"
                              f"{_loc(err['loc'])}", f"overrides that keep loop {lp.name!r} valid",
                              err["msg"].removeprefix("Value error, "))
                for err in exc.errors()], None  # fmt: skip
    out: list[ConfigProblem] = []
    if MODES.index(made.mode) > MODES.index(lp.mode):
        out.append(ConfigProblem(file, f"{where}.mode", f"at most loop {lp.name!r}'s own mode "
                                 f"({lp.mode!r}): a product may lower a mode, never raise it",
                                 repr(made.mode)))  # fmt: skip
    low, high = product.limestone_min_pct, product.limestone_max_pct
    outside = (low is not None and made.envelope_min < low) or (
        high is not None and made.envelope_max > high
    )
    if made.lever == LIMESTONE and made.mode != "off" and outside:
        out.append(ConfigProblem(
            file, f"{where}.envelope_min",
            f"loop {lp.name!r}'s envelope inside the product's limestone range "
            f"[{low if low is not None else '-'}, {high if high is not None else '-'}] %",
            f"[{made.envelope_min:g}, {made.envelope_max:g}]"))  # fmt: skip
    target = getattr(made.objective, "s28_target_mpa", None)
    if product.s28_lower_mpa is not None and target is not None and target < product.s28_lower_mpa:
        out.append(ConfigProblem(
            file, f"{key}.objective.s28_target_mpa",
            f"a strength target at least the class's lower limit {product.s28_lower_mpa:g} MPa",
            f"{target:g}"))  # fmt: skip
    if made.mode != "off":
        first = pins.setdefault(made.model, (where, made.model_version))
        if first[1] != made.model_version:
            out.append(ConfigProblem(
                file, f"{where}.model_version",
                f"the version {first[0]} runs of model {made.model!r} "
                f"({first[1] or 'newest'}): the agent loads one version of a model",
                made.model_version or "newest"))  # fmt: skip
    return out, made


def _source(product: Product, over: ProductLoop | None, loc: Sequence[int | str], key: str,
            where: str) -> str:  # fmt: skip
    """Which table a bad value came from: the product's loop override, else the product."""
    if over is None:
        return key
    if not loc:  # the loop's own rule across fields (envelope order): the override broke it
        return where
    name = loc[0]
    if name == "objective":
        return where if len(loc) > 2 and loc[2] in over.objective else key
    return where if name in over.model_fields_set else key


def _loc(loc: Sequence[int | str]) -> str:
    parts = [p for p in loc if p != "cement_mill"]  # the objective's discriminator
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _check_quality_names(quality: QualitySection, names: Mapping[str, int],
                         file: str) -> list[ConfigProblem]:  # fmt: skip
    """With a product table, the truth loop's products are its products."""
    out = []
    expected = f"the name of a [[products]] entry ({sorted(names)})"
    for i, relation in enumerate(quality.products):
        if relation.name not in names:
            out.append(ConfigProblem(file, f"quality.products[{i}].name", expected,
                                     repr(relation.name)))  # fmt: skip
    for i, lab in enumerate(quality.tags):
        if lab.product and lab.product not in names:
            out.append(ConfigProblem(file, f"quality.tags[{i}].product", expected,
                                     repr(lab.product)))  # fmt: skip
    return out
