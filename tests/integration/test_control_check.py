"""`edge-agent check` validates every loop against the model package it names (issue 12, 3).

Peers: real model packages on disk (copies of models/vrm-quality/1.0.0, signed with the demo
key; one re-signed with a fresh key), verified the way the agent loads them (signature,
manifest, sha256, the ONNX graph), and config/demo.toml pointed at them. Each case edits
one thing and expects its exact line; errors exit 78, warnings are printed and exit 0.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli.main import main
from agent.packages.keys import generate_keypair, sign_package
from tests.integration.control_rig import MODELS, REPO

KEY = MODELS / "demo-signing-key.pub.pem"
LIMESTONE_NAME = 'name = "limestone"'
MILL_POWER = 'feature = "mill_power"'
LIMESTONE = 'name = "limestone"\nmode = "closed_loop"\nmodel = "vrm-quality"\n'
FEED_RATE = (
    '[[loops.inputs]]\nfeature = "feed_rate"\ntag = "FeedRate"\nmax_age_s = 10.0\n'
    "frozen_after_samples = 20\n\n"
)

Edit = Callable[[str], str]


def sub(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

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
    text = (REPO / "config" / "demo.toml").read_text(encoding="utf-8")
    text = sub('models_dir = "../models"', f'models_dir = "{models}"')(text)
    text = sub('model_public_key_file = "../models/', f'model_public_key_file = "{MODELS}/')(text)
    text = sub('state_dir = "../state/demo"', f'state_dir = "{path.parent / "state"}"')(text)
    for edit in edits:
        text = edit(text)
    path.write_text(text, encoding="utf-8")
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
    code, err, out = check(setup, capsys, sub(LIMESTONE, LIMESTONE.replace('y"', 'y-2"')))
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
    shadow = LIMESTONE.replace("closed_loop", "shadow").replace('y"', 'y-2"')
    code, err, out = check(setup, capsys, sub(LIMESTONE, shadow))
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
    off = LIMESTONE.replace("closed_loop", "off").replace('y"', 'y-2"')
    assert check(setup, capsys, sub(LIMESTONE, off))[:2] == (0, [])


def test_every_model_input_must_be_mapped(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = setup
    code, err, _ = check(setup, capsys, sub(FEED_RATE, ""))
    assert code == 78
    assert err[0] == (
        f"{path}:{line_of(path, '[[loops]]')}: loops[0].inputs: expected a [[loops.inputs]] "
        "feature for every input of model 'vrm-quality' 1.0.0 (the agent derives blaine_bias, "
        "grindability itself), found none for ['feed_rate']"
    )
    assert len(err) == 2


def test_grid_features_and_a_direct_output_must_be_in_the_model(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = setup
    axis = f"[[loops.grid]]\n{MILL_POWER}\nspan = 10.0\nstep = 5.0\n\n[loops.objective]"
    direct = LIMESTONE + 'strategy = "direct"\noutput = "s99"\n'
    code, err, _ = check(setup, capsys, sub("[loops.objective]", axis), sub(LIMESTONE, direct))
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
    key = f'model_public_key_file = "{tmp_path / "other.pub.pem"}"'
    code, err, _ = check(setup, capsys, sub(f'model_public_key_file = "{KEY}"', key))
    assert (code, err) == (0, [])


def test_a_pinned_version_must_be_there_and_a_newer_refused_one_is_a_warning(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, models = setup
    pinned = LIMESTONE + 'model_version = "2.0.0"\n'
    code, err, _ = check(setup, capsys, sub(LIMESTONE, pinned))
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
    no_key = sub(f'model_public_key_file = "{KEY}"', f'model_public_key_file = "{gone}"')
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
    code, err, _ = check(setup, capsys, no_key, lambda t: t.replace('"closed_loop"', '"shadow"'))
    assert code == 0
    assert err[0] == "warning: " + problem.format(more=" (`run` refuses to start without it)")
    assert [e.split(": ")[2] for e in err[1:]] == ["loops[0].model", "loops[1].model"]


def test_a_models_dir_that_cannot_be_listed_says_why(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path, _ = setup
    plain = tmp_path / "models.txt"
    plain.write_text("not a folder\n")
    code, err, _ = check(
        setup, capsys, sub(f'models_dir = "{setup[1]}"', f'models_dir = "{plain}"')
    )
    assert code == 78
    assert err[0] == (
        f"{path}:{line_of(path, 'model = ')}: loops[0].model: expected a model package "
        f"{plain}/<model>/<version>/ (present: none: cannot list {plain}: Not a directory), "
        "found 'vrm-quality', which is not there"
    )
    assert len(err) == 3  # both loops, and the count
