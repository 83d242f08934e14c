"""The committed model packages of each product (plant-model 4.1, issue 15): every package under
models/ is signed with the demo key and named after its folder; each product's package was
trained where the plant's operators grind it (the operator baseline's recipe point and one
correction either side, agent.demo.evaluate), meets its validation targets and answers like the
mill there; the backfill's excitation band and limestone moves that trained them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from agent.config.loader import load_config
from agent.demo.backfill import backfill, plan_bands
from agent.demo.evaluate.operator import (
    LIMESTONE_STEP_PCT,
    SEPARATOR_STEP_RPM,
    Recipe,
    recipe_point,
)
from agent.demo.evaluate.scenario import recipes
from agent.packages.manifest import training_midpoints
from agent.packages.package import load_package, load_public_key

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
PUBLIC_KEY = MODELS / "demo-signing-key.pub.pem"
PRODUCT_PACKAGES = {1: "vrm-quality-cem1", 2: "vrm-quality-cem2a", 3: "vrm-quality-cem2b"}


def _recipes() -> dict[int, Recipe]:
    settings = load_config(ROOT / "config" / "demo.toml").settings
    return {r.product_id: r for r in recipes(settings, "product").values()}


def test_every_package_under_models_is_signed_with_the_demo_key_and_named_after_its_folder() -> (
    None
):
    key = load_public_key(PUBLIC_KEY)
    found = sorted(p.parent for p in MODELS.glob("*/*/manifest.json"))
    assert {p.parent.name for p in found} >= {"vrm-quality", *PRODUCT_PACKAGES.values()}
    for package in found:
        model = load_package(package, key)
        assert (model.manifest.name, model.manifest.version) == (package.parent.name, package.name)


@pytest.mark.parametrize("product_id", sorted(PRODUCT_PACKAGES))
def test_each_products_model_knows_where_the_operators_grind_it(product_id: int) -> None:
    recipe = _recipes()[product_id]
    model = load_package(MODELS / PRODUCT_PACKAGES[product_id] / "1.0.0",
                         load_public_key(PUBLIC_KEY))  # fmt: skip
    ranges = {f.name: (f.min, f.max) for f in model.manifest.inputs}
    ls, n = recipe_point(recipe)
    window = recipe.limestone_window
    # The recipe and one operator correction either side (inside the operators' window).
    for x in (max(ls - LIMESTONE_STEP_PCT, window[0]), ls, min(ls + LIMESTONE_STEP_PCT, window[1])):
        lo, hi = ranges["limestone_share"]
        assert lo <= x <= hi, (PRODUCT_PACKAGES[product_id], x, (lo, hi))
    for x in (n - SEPARATOR_STEP_RPM, n, n + SEPARATOR_STEP_RPM):
        lo, hi = ranges["separator_speed"]
        assert lo <= x <= hi, (PRODUCT_PACKAGES[product_id], x, (lo, hi))
    rmse = model.manifest.validation.rmse  # time-ordered hold-out, against noisy lab labels
    assert rmse["s28"] <= 1.6 and rmse["s2"] <= 1.1 and rmse["blaine"] <= 60, rmse

    names = [f.name for f in model.manifest.inputs]
    base = np.array([training_midpoints(model.manifest)], dtype=np.float32)
    base[0, names.index("separator_speed")] = n
    base[0, names.index("feed_rate")] = 180.0
    base[0, names.index("limestone_share")] = ls
    now = model.predict(base)[0]
    # The recipe point aims at the target mean at nominal clinker: the model agrees within 3 MPa.
    assert abs(now[2] - recipe.s28_target_mean_mpa) < 3.0, now
    more_limestone = base.copy()
    more_limestone[0, names.index("limestone_share")] += 1.0  # the mill: about -0.6 MPa
    assert -1.3 < model.predict(more_limestone)[0][2] - now[2] < -0.3
    faster = base.copy()
    faster[0, names.index("separator_speed")] += 10.0  # the mill: +13 cm2/g, +0.16 MPa
    delta = model.predict(faster)[0] - now
    assert 5.0 < delta[0] < 25.0 and 0.0 < delta[2] < 0.4, delta


def test_the_default_bands_are_the_recipes_and_give_the_same_backfill() -> None:
    assert plan_bands(2) == ((850.0, 1050.0), (10.0, 14.0))
    assert plan_bands(3) == ((820.0, 1020.0), (25.0, 29.0))
    default = backfill(1.5, seed=2)
    explicit = backfill(1.5, seed=2, separator_band=(850.0, 1050.0), limestone_band=(10.0, 14.0))
    for name, series in default.items():
        np.testing.assert_array_equal(series, explicit[name], err_msg=name)


def test_a_given_band_is_where_the_limestone_is_drawn() -> None:
    data = backfill(4.0, seed=1, limestone_band=(16.0, 20.0), limestone_moves="draw")
    sp = data["LimestoneShareSetpoint"]
    # Recipe 12 % is outside the band: the plan starts at its nearest edge, written at once.
    assert sp[0] == 16.0
    assert sp.min() >= 16.0 and sp.max() <= 20.0
    steps = np.abs(np.diff(sp))
    assert len(set(sp.tolist())) >= 3  # a fresh level each day (a walk would step by 1)
    assert np.any((steps != 0.0) & (steps != 1.0)), sorted(set(sp.tolist()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limestone_band": (20.0, 9.0)}, "limestone band must satisfy 0 <= low, low + 1 <= high "
                                          "<= 40, got (20, 9)"),
        ({"separator_band": (900.0, 920.0)}, "separator band must satisfy 0 <= low, low + 50 <= "
                                             "high <= 1500, got (900, 920)"),
        ({"limestone_moves": "jump"}, "limestone_moves must be one of walk, draw, got 'jump'"),
    ],
)  # fmt: skip
def test_a_bad_band_or_move_is_refused_with_what_it_expects(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        backfill(0.1, **kwargs)  # type: ignore[arg-type]
