"""Loading a model package directory and running batched inference on it.

Owns: reading ``manifest.json`` and ``manifest.sig``, the Ed25519 check of the signature over
the canonical manifest bytes, the sha256 check of ``model.onnx``, the onnxruntime session
(CPU only, one intra-op and one inter-op thread, spinning off), the check of the graph
against the manifest, the warm-up, and ``ModelSession.predict``. onnxruntime and
cryptography errors are mapped here, once, into ``ModelRejectedError``.
Must not: decide what a prediction means (features, guard, control), pick a version, or
sign anything (``agent.packages.keys`` signs).
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
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from agent.domain.logger import get_logger
from agent.packages.manifest import (
    ModelManifest,
    ModelRejectedError,
    canonical_json,
    parse_manifest,
)

if TYPE_CHECKING:
    from agent.packages.session import ModelSession

__all__ = [
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "SignatureStatus",
    "check_signature",
    "load_package",
    "load_public_key",
    "read_manifest",
    "read_model",
]

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
SignatureStatus = Literal["valid", "invalid", "missing", "not_checked"]

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
    from agent.packages.session import open_session  # onnxruntime only when a model runs

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
