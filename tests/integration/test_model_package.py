"""Model packages against real onnxruntime and real Ed25519 keys, built and signed in tmp_path."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from agent.domain.errors import RejectedError
from agent.packages.keys import KeyFileError, generate_keypair, sign_package, verify_package
from agent.packages.manifest import ModelRejectedError
from agent.packages.package import load_package, load_public_key
from tests.support.model_packages import N_IN, N_OUT, RNG, B, W, linear_model, write_package


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    generate_keypair(private, public)
    return private, public


@pytest.fixture
def package(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    directory = write_package(tmp_path, linear_model())
    sign_package(directory, keys[0])
    return directory


def rows(n: int, n_in: int = N_IN) -> NDArray[np.float32]:
    return RNG.uniform(1.0, 10.0, (n, n_in)).astype(np.float32)


def test_keygen_writes_a_private_key_only_its_owner_can_read(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in public.read_bytes()
    load_public_key(public)
    with pytest.raises(KeyFileError, match="exists; refusing to overwrite"):
        generate_keypair(private, public.with_name("other.pem"))


@pytest.mark.parametrize("n", [1, 125, 1000])
def test_a_signed_package_loads_and_predicts_like_numpy(
    package: Path, keys: tuple[Path, Path], n: int
) -> None:
    session = load_package(package, load_public_key(keys[1]))
    x = rows(n)
    y = session.predict(x)
    assert y.dtype == np.float32
    assert y.shape == (n, N_OUT)
    np.testing.assert_allclose(y, x @ W + B, rtol=1e-5, atol=1e-5)
    assert session.manifest.version == "1.0.0"


def test_signature_is_base64_of_ed25519_over_the_canonical_manifest(
    package: Path, keys: tuple[Path, Path]
) -> None:
    import base64

    from agent.packages.manifest import canonical_json

    raw = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    signature = base64.b64decode((package / "manifest.sig").read_bytes(), validate=False)
    load_public_key(keys[1]).verify(signature, canonical_json(raw))


def test_a_tampered_model_is_refused_naming_both_hashes(
    package: Path, keys: tuple[Path, Path]
) -> None:
    model = bytearray((package / "model.onnx").read_bytes())
    expected = hashlib.sha256(model).hexdigest()
    model[-1] ^= 0x01
    (package / "model.onnx").write_bytes(model)
    found = hashlib.sha256(model).hexdigest()
    with pytest.raises(ModelRejectedError) as caught:
        load_package(package, load_public_key(keys[1]))
    message = str(caught.value)
    assert message.startswith(str(package / "model.onnx"))
    assert f"sha256 mismatch, expected {expected} (manifest.json) found {found}" in message
    with pytest.raises(ModelRejectedError, match="sha256 mismatch"):
        load_package(package, None)


def test_a_tampered_manifest_is_refused(package: Path, keys: tuple[Path, Path]) -> None:
    raw = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    raw["inputs"][0]["max"] = 99.0
    (package / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ModelRejectedError, match=r"manifest\.sig: bad signature"):
        load_package(package, load_public_key(keys[1]))


def test_reformatting_the_manifest_keeps_the_signature_valid(
    package: Path, keys: tuple[Path, Path]
) -> None:
    raw = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    reordered = dict(reversed(list(raw.items())))
    (package / "manifest.json").write_text(json.dumps(reordered, indent=4), encoding="utf-8")
    load_package(package, load_public_key(keys[1]))


def test_a_package_signed_by_another_key_is_refused(package: Path, tmp_path: Path) -> None:
    other_private, other_public = tmp_path / "other.pem", tmp_path / "other.pub.pem"
    generate_keypair(other_private, other_public)
    with pytest.raises(ModelRejectedError, match="bad signature"):
        load_package(package, load_public_key(other_public))


def test_an_unsigned_package_is_refused_when_a_key_is_configured(
    package: Path, keys: tuple[Path, Path]
) -> None:
    (package / "manifest.sig").unlink()
    with pytest.raises(ModelRejectedError, match="missing signature and a public key"):
        load_package(package, load_public_key(keys[1]))
    load_package(package, None)  # without a key the signature is not checked


def test_a_garbled_signature_is_refused(package: Path, keys: tuple[Path, Path]) -> None:
    (package / "manifest.sig").write_text("not base64 at all!\n")
    with pytest.raises(ModelRejectedError, match="bad signature"):
        load_package(package, load_public_key(keys[1]))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (linear_model(n_in=5), r"graph input 'x' shape mismatch: expected \[batch, 4\]"),
        (linear_model(batch=8), "expected a dynamic batch axis, found 8"),
        (linear_model(out_name="out"), r"graph outputs \['out'\]: expected exactly \['y'\]"),
    ],
)
def test_a_graph_that_does_not_match_the_manifest_is_refused(
    tmp_path: Path, keys: tuple[Path, Path], model: bytes, expected: str
) -> None:
    directory = write_package(tmp_path, model)
    sign_package(directory, keys[0])
    with pytest.raises(ModelRejectedError, match=expected) as caught:
        load_package(directory, load_public_key(keys[1]))
    assert str(caught.value).startswith(f"{directory / 'model.onnx'}: graph does not match")


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    directory = write_package(tmp_path, b"\x00garbage")
    with pytest.raises(ModelRejectedError, match="onnxruntime refused the graph"):
        load_package(directory, None)


def test_nan_outputs_are_rejected_by_predict(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    directory = write_package(tmp_path, linear_model(log=True))
    sign_package(directory, keys[0])
    session = load_package(directory, load_public_key(keys[1]))
    good = rows(3)
    np.testing.assert_allclose(session.predict(good), np.log(good @ W + B), rtol=1e-5)
    bad = good.copy()
    bad[1] = -5.0
    with pytest.raises(
        ModelRejectedError, match=r"output: \d+ NaN or Inf values \(first rows \[1\]"
    ):
        session.predict(bad)


def test_a_model_that_is_nan_at_its_training_midpoints_fails_warm_up(tmp_path: Path) -> None:
    directory = write_package(tmp_path, linear_model(log=True), low=-20.0)
    with pytest.raises(ModelRejectedError, match="NaN or Inf"):
        load_package(directory, None)


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (np.ones((2, 5), dtype=np.float32), r"input shape: expected \[N >= 1, 4\], found \[2, 5\]"),
        (np.ones((0, 4), dtype=np.float32), r"input shape: expected \[N >= 1, 4\], found \[0, 4\]"),
        (np.ones(4, dtype=np.float32), r"found \[4\]"),
        (np.ones((2, 4), dtype=np.float64), "expected float32 array, found float64"),
        (np.full((2, 4), np.inf, dtype=np.float32), "input: NaN or Inf"),
    ],
)
def test_wrong_inputs_are_rejected_by_predict(
    package: Path, x: NDArray[Any], expected: str
) -> None:
    session = load_package(package, None)
    with pytest.raises(RejectedError, match=expected):
        session.predict(x)


def test_sign_refuses_a_manifest_whose_hash_does_not_match(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    directory = write_package(tmp_path, linear_model())
    (directory / "model.onnx").write_bytes(linear_model(n_in=5))
    with pytest.raises(ModelRejectedError, match="sha256 mismatch"):
        sign_package(directory, keys[0])
    assert not (directory / "manifest.sig").exists()


def test_verify_reports_a_good_package(package: Path, keys: tuple[Path, Path]) -> None:
    report = verify_package(package, keys[1])
    assert report.ok
    assert report.signature == "valid"
    assert (report.name, report.version, report.errors) == ("vrm", "1.0.0", ())
    assert [f.name for f in report.inputs] == ["f0", "f1", "f2", "f3"]
    assert [f.unit for f in report.outputs] == ["MPa"] * 3
    assert verify_package(package).signature == "not_checked"


def test_verify_reports_every_problem(package: Path, tmp_path: Path) -> None:
    other_private, other_public = tmp_path / "o.pem", tmp_path / "o.pub.pem"
    generate_keypair(other_private, other_public)
    model = bytearray((package / "model.onnx").read_bytes())
    model[-1] ^= 0x01
    (package / "model.onnx").write_bytes(model)
    report = verify_package(package, other_public)
    assert not report.ok
    assert report.signature == "invalid"
    assert len(report.errors) == 2
    assert "bad signature" in report.errors[0]
    assert "sha256 mismatch" in report.errors[1]


def test_verify_reports_an_invalid_manifest(package: Path, keys: tuple[Path, Path]) -> None:
    raw = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    raw["version"] = "one"
    (package / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    report = verify_package(package, keys[1])
    assert report.signature == "invalid"
    assert any("manifest.version: expected a semver" in error for error in report.errors)
    assert not report.ok


def test_a_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRejectedError, match=r"manifest\.json: cannot read manifest"):
        load_package(tmp_path, None)
    assert not verify_package(tmp_path).ok


def test_a_public_key_that_is_not_ed25519_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ModelRejectedError, match="not a PEM public key"):
        load_public_key(path)


def test_the_session_runs_on_one_cpu_thread_with_spinning_off(package: Path) -> None:
    inner = load_package(package, None)._session  # the onnxruntime session itself
    assert inner.get_providers() == ["CPUExecutionProvider"]
    options = inner.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
