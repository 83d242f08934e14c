"""Loading a model package directory and running batched inference on it.

Owns: reading ``manifest.json`` and ``manifest.sig``, the Ed25519 check of the signature over
the canonical manifest bytes, the sha256 check of ``model.onnx``, the onnxruntime session
(CPU only, one intra-op and one inter-op thread, spinning off), the check of the graph
against the manifest, the warm-up, and ``ModelSession.predict``. onnxruntime and
cryptography errors are mapped here, once, into ``ModelRejectedError``.
Must not: decide what a prediction means (features, guard, control), pick a version, or
sign anything (``agent.shell.model_keys`` signs).
Invariants:
- A session is only ever created from the exact bytes whose sha256 matched the manifest
  (the file is read once; no second read that could differ).
- With a public key configured: a missing, malformed or wrong signature refuses the package
  before any field of the manifest is trusted. Without one the signature is not checked.
- ``predict`` takes float32 ``[N, n_inputs]`` (N >= 1) with finite values and returns
  float32 ``[N, n_outputs]`` with finite values, or raises ``ModelRejectedError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from numpy.typing import NDArray
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    RuntimeException,
)
from onnxruntime.capi.onnxruntime_pybind11_state import (
    NotImplemented as OrtNotImplemented,
)

from agent.core.model_manifest import (
    GraphSignature,
    ModelManifest,
    ModelRejectedError,
    TensorSpec,
    canonical_json,
    check_graph,
    parse_manifest,
    training_midpoints,
)
from agent.logs import get_logger

__all__ = [
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "ModelSession",
    "SignatureStatus",
    "check_signature",
    "load_package",
    "load_public_key",
    "open_session",
    "read_manifest",
    "read_model",
]

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
SignatureStatus = Literal["valid", "invalid", "missing", "not_checked"]

_ORT_ERRORS = (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    OrtNotImplemented,
    RuntimeException,
)
_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64"}
_log = get_logger(__name__)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM); refuse anything else naming the file."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ModelRejectedError(str(path), f"cannot read public key: {exc.strerror}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ModelRejectedError(str(path), "not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ModelRejectedError(str(path), f"expected an Ed25519 key, found {type(key).__name__}")
    return key


def read_manifest(directory: Path) -> object:
    """Return the decoded JSON object of ``directory/manifest.json`` (not yet validated)."""
    path = directory / MANIFEST_FILE
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except OSError as exc:
        raise ModelRejectedError(str(path), f"cannot read manifest: {exc.strerror}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelRejectedError(str(path), f"not valid UTF-8 JSON: {exc}") from exc


def check_signature(directory: Path, raw: object, key: Ed25519PublicKey) -> SignatureStatus:
    """Verify ``manifest.sig`` (base64 Ed25519) over the canonical bytes of ``raw``."""
    path = directory / SIGNATURE_FILE
    try:
        encoded = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise ModelRejectedError(str(path), f"cannot read signature: {exc.strerror}") from exc
    try:
        signature = base64.b64decode(encoded.strip(), validate=True)
        key.verify(signature, canonical_json(raw))
    except (binascii.Error, InvalidSignature, ValueError):
        return "invalid"
    return "valid"


def read_model(directory: Path, manifest: ModelManifest) -> bytes:
    """Return the bytes of the model file after checking their sha256 against the manifest."""
    path = directory / manifest.model.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelRejectedError(str(path), f"cannot read model: {exc.strerror}") from exc
    found = hashlib.sha256(data).hexdigest()
    if found != manifest.model.sha256:
        raise ModelRejectedError(
            str(path),
            f"tampered or wrong model: sha256 mismatch, expected {manifest.model.sha256} "
            f"(manifest.json) found {found}",
        )
    return data


def load_package(directory: Path, public_key: Ed25519PublicKey | None) -> ModelSession:
    """Verify a package directory and return a warmed-up session; raise ``ModelRejectedError``."""
    raw = read_manifest(directory)
    if public_key is not None:
        status = check_signature(directory, raw, public_key)
        sig = str(directory / SIGNATURE_FILE)
        if status == "missing":
            raise ModelRejectedError(sig, "missing signature and a public key is configured")
        if status == "invalid":
            raise ModelRejectedError(sig, "bad signature: manifest.json was not signed by this key")
    manifest = parse_manifest(raw, str(directory / MANIFEST_FILE))
    session = open_session(directory, manifest, read_model(directory, manifest))
    _log.info(
        "model_loaded",
        model_dir=str(directory),
        model=manifest.name,
        version=manifest.version,
        sha256=manifest.model.sha256,
        signature="valid" if public_key is not None else "not_checked",
    )
    return session


def open_session(directory: Path, manifest: ModelManifest, data: bytes) -> ModelSession:
    """Create the session from verified model bytes, check its graph, warm it up."""
    session = ModelSession(directory, manifest, _create_session(directory, data))
    session.predict(np.asarray([training_midpoints(manifest)], dtype=np.float32))
    return session


def _create_session(directory: Path, data: bytes) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    path = str(directory / "model.onnx")
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as exc:
        raise ModelRejectedError(path, f"onnxruntime refused the graph: {exc}") from exc
    return session


def _signature(session: Any) -> GraphSignature:
    def spec(arg: Any) -> TensorSpec:
        return TensorSpec(arg.name, _DTYPES.get(arg.type, arg.type), tuple(arg.shape))

    inputs = tuple(spec(arg) for arg in session.get_inputs())
    return GraphSignature(inputs, tuple(spec(arg) for arg in session.get_outputs()))


@dataclass(frozen=True, eq=False)
class ModelSession:
    """A verified, warmed-up model: ``manifest`` says what it is, ``predict`` runs batches."""

    directory: Path
    manifest: ModelManifest
    _session: Any

    def __post_init__(self) -> None:
        problems = check_graph(self.manifest, _signature(self._session))
        if problems:
            file = str(self.directory / self.manifest.model.file)
            raise ModelRejectedError(file, "graph does not match manifest: " + "; ".join(problems))

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run one batch: float32 ``[N, n_inputs]`` in, float32 ``[N, n_outputs]`` out."""
        file = str(self.directory / self.manifest.model.file)
        n_in, n_out = len(self.manifest.inputs), len(self.manifest.outputs)
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            found = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise ModelRejectedError(file, f"input: expected float32 array, found {found}")
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != n_in:
            raise ModelRejectedError(
                file, f"input shape: expected [N >= 1, {n_in}], found {list(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise ModelRejectedError(file, "input: NaN or Inf values")
        feeds = {self.manifest.model.input_name: np.ascontiguousarray(x)}
        try:
            (y,) = self._session.run([self.manifest.model.output_name], feeds)
        except _ORT_ERRORS as exc:
            raise ModelRejectedError(file, f"inference failed: {exc}") from exc
        if not isinstance(y, np.ndarray) or y.dtype != np.float32:
            raise ModelRejectedError(file, "output: expected a float32 array")
        if y.shape != (x.shape[0], n_out):
            raise ModelRejectedError(
                file, f"output shape: expected [{x.shape[0]}, {n_out}], found {list(y.shape)}"
            )
        bad = ~np.isfinite(y)
        if bad.any():
            rows = sorted({int(r) for r in np.nonzero(bad)[0][:5]})
            raise ModelRejectedError(
                file, f"output: {int(bad.sum())} NaN or Inf values (first rows {rows})"
            )
        return y
