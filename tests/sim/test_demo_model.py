"""The committed demo model package: signed, within its validation targets, physically sane."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.packages.manifest import training_midpoints
from agent.packages.package import load_package, load_public_key

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "models" / "vrm-quality" / "1.0.0"
PUBLIC_KEY = ROOT / "models" / "demo-signing-key.pub.pem"


def test_demo_package_is_signed_and_meets_its_validation_targets() -> None:
    model = load_package(PACKAGE, load_public_key(PUBLIC_KEY))
    rmse = model.manifest.validation.rmse
    assert rmse["s28"] <= 1.6  # MPa, time-ordered hold-out, against noisy lab labels
    assert rmse["blaine"] <= 60  # cm2/g
    assert [f.name for f in model.manifest.inputs][:3] == [
        "separator_speed", "feed_rate", "limestone_share",
    ]  # fmt: skip


def test_demo_model_answers_like_the_mill() -> None:
    model = load_package(PACKAGE, load_public_key(PUBLIC_KEY))
    names = [f.name for f in model.manifest.inputs]
    base = np.array([training_midpoints(model.manifest)], dtype=np.float32)
    base[0, names.index("separator_speed")] = 950.0
    base[0, names.index("feed_rate")] = 180.0
    base[0, names.index("limestone_share")] = 12.0
    grid = np.repeat(base, 1000, axis=0)
    grid[:, 0] += np.linspace(-60, 60, 1000, dtype=np.float32)
    y = model.predict(grid)
    assert y.shape == (1000, 5)
    now = model.predict(base)[0]
    assert 3600 < now[0] < 4000 and 48 < now[2] < 54 and 16 < now[4] < 20
    faster = base.copy()
    faster[0, 0] += 10  # separator +10 rpm: about +13 cm2/g and +0.16 MPa in the mill
    delta = model.predict(faster)[0] - now
    assert 5 < delta[0] < 25, delta
    assert 0.0 < delta[2] < 0.4, delta
    more_limestone = base.copy()
    more_limestone[0, 2] += 1  # limestone +1 %: S28 about -0.6 MPa
    assert -1.0 < model.predict(more_limestone)[0][2] - now[2] < -0.2
