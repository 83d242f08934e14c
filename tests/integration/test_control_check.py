"""`edge-agent check` validates every loop against the model package it names (issue 12, 3).

Peers: real model packages on disk (copies of models/vrm-quality/1.0.0, signed with the demo
key; one re-signed with a fresh key), verified the way the agent loads them (signature,
manifest, sha256, the ONNX graph), and config/demo.toml pointed at them. Each case edits
one thing of it as data (tests.support.config.ConfigDoc) and expects its exact line; errors
exit 78, warnings are printed and exit 0.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.packages.keys import generate_keypair, sign_package
from tests.integration.control_rig import MODELS, REPO
from tests.support.config import ConfigDoc, single_product

KEY = MODELS / "demo-signing-key.pub.pem"
LIMESTONE_NAME = 'name = "limestone"'
MILL_POWER = 'feature = "mill_power"'
LIMESTONE = "loops[name=limestone]"

Edit = Callable[[ConfigDoc], object]


def setting(path: str, value: object) -> Edit:
    return lambda config: config.set(path, value)


def limestone(**values: object) -> Edit:
    """Set keys of the limestone loop (model, mode) and add the others."""

    def edit(config: ConfigDoc) -> None:
        for key, value in values.items():
            where = f"{LIMESTONE}.{key}"
            (config.set if config.has(where) else config.add)(where, value)

    return edit


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(config path, models dir): the demo config, its packages copied under tmp_path."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    models = tmp_path / "models"
    shutil.copytree(MODELS / "vrm-quality" / "1.0.0", models / "vrm-quality" / "1.0.0")
    return tmp_path / "agent.toml", models


def check(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], *edits: Edit
) -> tuple[int, list[str], str]:
    path, models = setup
    config = ConfigDoc.read(REPO / "config" / "demo.toml")
    config.set("agent.models_dir", str(models))
    config.set("agent.model_public_key_file", str(KEY))
    config.set("agent.state_dir", str(path.parent / "state"))
    single_product(config)  # the loops' own model (the product table: the last test)
    for edit in edits:
        edit(config)
    config.write(path)
    code = main(["check", "--config", str(path)])
    out = capsys.readouterr()
    return code, out.err.splitlines(), out.out


def line_of(path: Path, needle: str, after: str = "") -> int:
    """The line number of the first `needle` line after the first `after` line."""
    lines = path.read_text().splitlines()
    start = next(i for i, t in enumerate(lines) if after in t) if after else 0
    return next(i for i, t in enumerate(lines) if i >= start and t.startswith(needle)) + 1


def test_the_demo_loops_fit_their_signed_package(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, out = check(setup, capsys)
    assert (code, err) == (0, [])
    assert "OK: agent 'demo-mill-1'" in out
    assert "warning" not in out


def test_a_misspelled_model_of_a_closed_loop_is_an_error_naming_what_is_there(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, models = setup
    code, err, out = check(setup, capsys, limestone(model="vrm-quality-2"))
    line = line_of(path, "model = ", LIMESTONE_NAME)
    assert code == 78
    assert err == [
        f"{path}:{line}: loops[1].model: expected a model package {models}/<model>/<version>/ "
        "(present: vrm-quality 1.0.0), found 'vrm-quality-2', which is not there",
        f"edge-agent: 1 configuration problem in {path}",
    ]
    assert out == ""


def test_a_misspelled_model_of_a_shadow_loop_is_a_warning(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, models = setup
    shadow = limestone(mode="shadow", model="vrm-quality-2")
    code, err, out = check(setup, capsys, shadow)
    line = line_of(path, "model = ", LIMESTONE_NAME)
    assert code == 0
    assert err == [
        f"warning: {path}:{line}: loops[1].model: expected a model package "
        f"{models}/<model>/<version>/ (present: vrm-quality 1.0.0), found 'vrm-quality-2', "
        "which is not there (yet: a shadow loop waits for it, e.g. for a remote delivery)"
    ]
    assert out.endswith(" (1 warning)\n")


def test_an_off_loop_is_not_checked_against_models(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    off = limestone(mode="off", model="vrm-quality-2")
    assert check(setup, capsys, off)[:2] == (0, [])


def test_every_model_input_must_be_mapped(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = setup
    code, err, _ = check(
        setup, capsys, lambda config: config.remove("loops[0].inputs[feature=feed_rate]")
    )
    assert code == 78
    assert err[0] == (
        f"{path}:{line_of(path, '[[loops]]')}: loops[0].inputs: expected a [[loops.inputs]] "
        "feature for every input of model 'vrm-quality' 1.0.0 (the agent derives blaine_bias, "
        "grindability itself), found none for ['feed_rate']"
    )
    # The grindability the objective derives needs it too.
    assert "derives the inputs of model" in err[1] and "none for ['feed_rate']" in err[1]
    assert len(err) == 3


def test_grid_features_and_a_direct_output_must_be_in_the_model(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = setup
    axis = {"feature": "mill_power", "span": 10.0, "step": 5.0}
    direct = limestone(strategy="direct", output="s99")
    code, err, _ = check(setup, capsys, lambda config: config.append("loops[0].grid", axis), direct)
    assert code == 78
    inputs = (
        "separator_speed, feed_rate, limestone_share, gypsum_share, grinding_aid, fan_speed, "
        "water_injection, clinker_c3s, grindability, blaine_bias"
    )
    assert err == [
        f"{path}:{line_of(path, MILL_POWER, '[[loops.grid]]')}: "
        f"loops[0].grid[2].feature: expected an input of model 'vrm-quality' 1.0.0 "
        f"({inputs}), found 'mill_power'",
        f"{path}:{line_of(path, 'output = ', LIMESTONE_NAME)}: loops[1].output: "
        "expected an output of model 'vrm-quality' 1.0.0 (blaine, residue45, s28, s2, "
        "spec_energy), found 's99'",
        f"edge-agent: 2 configuration problems in {path}",
    ]


def test_a_model_without_an_output_the_objective_needs_is_an_error(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The package names its specific-energy output otherwise (re-signed with a fresh key):
    # every other check passes, but the cement mill objective of both grid loops scores
    # with spec_energy (agent.objectives.cement_mill declares it).
    path, models = setup
    package = models / "vrm-quality" / "1.0.0"
    manifest = json.loads((package / "manifest.json").read_text())
    (output,) = [o for o in manifest["outputs"] if o["name"] == "spec_energy"]
    output["name"] = "energy_kwh_t"
    rmse = manifest["validation"]["rmse"]
    rmse["energy_kwh_t"] = rmse.pop("spec_energy")
    (package / "manifest.json").write_text(json.dumps(manifest, indent=2))
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    sign_package(package, tmp_path / "other.pem")
    key = setting("agent.model_public_key_file", str(tmp_path / "other.pub.pem"))
    code, err, _ = check(setup, capsys, key)
    needs = (
        "expected a model with what objective 'cement_mill' needs for strategy 'grid': the "
        "inputs feed_rate and the outputs blaine, residue45, s28, spec_energy (or strategy = "
        "'direct'), found model 'vrm-quality' 1.0.0 without output spec_energy"
    )
    lines = line_of(path, "[loops.objective]"), line_of(path, "[loops.objective]", LIMESTONE_NAME)
    assert code == 78
    assert err == [
        f"{path}:{lines[0]}: loops[0].objective: {needs}",
        f"{path}:{lines[1]}: loops[1].objective: {needs}",
        f"edge-agent: 2 configuration problems in {path}",
    ]


def test_the_signature_is_checked_with_the_configured_key(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path, models = setup
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub.pem")
    sign_package(models / "vrm-quality" / "1.0.0", tmp_path / "other.pem")  # not the demo key
    code, err, _ = check(setup, capsys)
    sig = models / "vrm-quality" / "1.0.0" / "manifest.sig"
    assert code == 78
    assert err[:2] == [
        f"{path}:{line_of(path, 'model = ')}: loops[0].model: expected a model package that "
        f"loads (signature, manifest, sha256, graph), found {sig}: bad signature",
        f"{path}:{line_of(path, 'model = ', LIMESTONE_NAME)}: loops[1].model: "
        "expected a model package that loads (signature, manifest, sha256, graph), found "
        f"{sig}: bad signature",
    ]
    # With the key that signed it, the same package passes.
    key = setting("agent.model_public_key_file", str(tmp_path / "other.pub.pem"))
    code, err, _ = check(setup, capsys, key)
    assert (code, err) == (0, [])


def test_a_pinned_version_must_be_there_and_a_newer_refused_one_is_a_warning(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, models = setup
    code, err, _ = check(setup, capsys, limestone(model_version="2.0.0"))
    assert code == 78
    assert err[0] == (
        f"{path}:{line_of(path, 'model_version = ')}: loops[1].model_version: expected a "
        f"version of 'vrm-quality' in {models}/vrm-quality/ (present: 1.0.0), found '2.0.0', "
        "which is not there"
    )
    # A newer copy the agent would refuse (its manifest says 1.0.0, unsigned for 1.1.0):
    # the agent runs 1.0.0, so this is a warning, for each loop that runs the model.
    shutil.copytree(models / "vrm-quality" / "1.0.0", models / "vrm-quality" / "1.1.0")
    (models / "vrm-quality" / "1.1.0" / "manifest.sig").unlink()
    code, err, out = check(setup, capsys)
    assert code == 0, err
    missing = models / "vrm-quality" / "1.1.0" / "manifest.sig"
    assert err[0] == (
        f"warning: {path}:{line_of(path, 'model = ')}: loops[0].model: expected only packages "
        f"that load (the agent runs 'vrm-quality' 1.0.0), found {missing}: missing signature"
    )
    assert len(err) == 2 and out.endswith(" (2 warnings)\n")


def test_an_unreadable_key_is_an_error_once_a_package_needs_it(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path, models = setup
    gone = tmp_path / "gone.pub.pem"
    no_key = setting("agent.model_public_key_file", str(gone))
    code, err, _ = check(setup, capsys, no_key)
    problem = (
        f"{path}:{line_of(path, 'model_public_key_file')}: agent.model_public_key_file: "
        "expected an Ed25519 public key (PEM) the agent can read{more}, found "
        f"{gone}: cannot read public key: No such file or directory"
    )
    assert code == 78
    assert err == [problem.format(more=""), f"edge-agent: 1 configuration problem in {path}"]
    # Before the packages are on this machine (both loops in shadow): only a warning.
    shutil.rmtree(models / "vrm-quality")
    code, err, _ = check(setup, capsys, no_key, setting("loops[*].mode", "shadow"))
    assert code == 0
    assert err[0] == "warning: " + problem.format(more=" (`run` refuses to start without it)")
    assert [e.split(": ")[2] for e in err[1:]] == ["loops[0].model", "loops[1].model"]


def test_a_models_dir_that_cannot_be_listed_says_why(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path, _ = setup
    plain = tmp_path / "models.txt"
    plain.write_text("not a folder\n")
    code, err, _ = check(setup, capsys, setting("agent.models_dir", str(plain)))
    assert code == 78
    assert err[0] == (
        f"{path}:{line_of(path, 'model = ')}: loops[0].model: expected a model package "
        f"{plain}/<model>/<version>/ (present: none: cannot list {plain}: Not a directory), "
        "found 'vrm-quality', which is not there"
    )
    assert len(err) == 3  # both loops, and the count


def without_estimator_inputs(config: ConfigDoc) -> None:
    """Both loops lose the mill power and the lab Blaine (grindability, Blaine bias)."""
    for feature in ("mill_power", "lab_blaine"):
        config.remove(f"loops[*].inputs[feature={feature}]")


def test_the_loop_inputs_of_the_derived_features_must_be_mapped(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The model's grindability and blaine_bias have no tag: the cement objective derives them
    # from loop inputs. Without those, each would be the training mean every cycle.
    path, _ = setup
    code, err, out = check(setup, capsys, without_estimator_inputs)
    problem = (
        "loops[{i}].inputs: expected a [[loops.inputs]] feature for every loop input objective "
        "'cement_mill' derives the inputs of model 'vrm-quality' 1.0.0 from (grindability "
        "from mill_power, feed_rate, product_fineness; blaine_bias from lab_blaine, "
        "product_fineness), found none for ['lab_blaine', 'mill_power']: grindability, "
        "blaine_bias would be the training mean every cycle"
    )
    lines = line_of(path, "[[loops]]"), line_of(path, LIMESTONE_NAME, "[[loops]]") - 1
    assert code == 78 and out == ""
    assert err == [
        f"{path}:{lines[0]}: {problem.format(i=0)}",
        f"{path}:{lines[1]}: {problem.format(i=1)}",
        f"edge-agent: 2 configuration problems in {path}",
    ]
    # A shadow loop writes nothing: it runs on the imputed values, with a warning.
    code, err, out = check(setup, capsys, without_estimator_inputs, limestone(mode="shadow"))
    assert code == 78 and out == ""
    assert sorted(err) == sorted([
        f"{path}:{lines[0]}: {problem.format(i=0)}",
        f"warning: {path}:{lines[1]}: {problem.format(i=1)}",
        f"edge-agent: 1 configuration problem in {path}",
    ])  # fmt: skip
    code, err, out = check(
        setup, capsys, without_estimator_inputs, setting("loops[*].mode", "shadow")
    )
    assert code == 0
    assert err == [f"warning: {path}:{lines[0]}: {problem.format(i=0)}",
                   f"warning: {path}:{lines[1]}: {problem.format(i=1)}"]  # fmt: skip
    assert out.endswith(" (2 warnings)\n")


def test_every_products_model_is_checked_against_its_loops(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = setup

    def cem1(config: ConfigDoc) -> None:
        demo = ConfigDoc.read(REPO / "config" / "demo.toml")
        config.add("product_selection", demo.get("product_selection"))
        cem1, cem2 = demo.get("products")[:2]
        config.add("products", [{**cem1, "model": "vrm-quality-cem9"},
                                {**cem2, "model": "vrm-quality"}])  # fmt: skip

    code, err, _ = check(setup, capsys, cem1)
    assert code == 78
    expected = (
        "expected a model package {models}/<model>/<version>/ (present: vrm-quality 1.0.0), "
        "found 'vrm-quality-cem9', which is not there"
    ).format(models=path.parent / "models")
    line = line_of(path, 'model = "vrm-quality-cem9"')
    assert err == [  # once, at the product's key and line, for both loops that run it
        f"{path}:{line}: products[0].model: {expected}",
        f"edge-agent: 1 configuration problem in {path}",
    ]
