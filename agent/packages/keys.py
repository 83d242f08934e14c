"""Model signing keys, signing a package, and the verify report (behind the CLI).

Owns: ``generate_keypair`` (Ed25519 private key PEM, mode 0600, and its public key PEM),
``sign_package`` (writes ``manifest.sig``), ``verify_package`` (a ``VerifyReport`` listing
every problem instead of stopping at the first).
Must not: print, parse arguments or exit (the CLI does); overwrite an existing key; sign a
manifest that is invalid or whose sha256 does not match its ``model.onnx``; log a key.
Invariants:
- The private key file is created with ``O_EXCL`` and mode 0600 from the first byte (never
  chmod-ed after being written).
- ``manifest.sig`` holds base64 (one line) of the Ed25519 signature over
  ``canonical_json`` of the manifest object, exactly what ``model_package`` verifies.
- ``VerifyReport.ok`` is true only when there is no error, and the signature is valid (or
  not checked because no public key was given).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from agent.domain.errors import RejectedError
from agent.packages.manifest import (
    InputFeature,
    ModelRejectedError,
    OutputFeature,
    canonical_json,
    manifest_problems,
    parse_manifest,
)
from agent.packages.package import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    SignatureStatus,
    check_signature,
    load_public_key,
    read_manifest,
    read_model,
)

__all__ = ["KeyFileError", "VerifyReport", "generate_keypair", "sign_package", "verify_package"]


class KeyFileError(RejectedError):
    """A key file cannot be written or read as an Ed25519 key; the message names the file."""


@dataclass(frozen=True)
class VerifyReport:
    """What ``edge-agent model verify`` shows: the package's identity and every problem."""

    directory: Path
    name: str
    version: str
    inputs: tuple[InputFeature, ...]
    outputs: tuple[OutputFeature, ...]
    signature: SignatureStatus
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the package would load with the key given (if any)."""
        return not self.errors and self.signature in ("valid", "not_checked")


def generate_keypair(private_key_path: Path, public_key_path: Path) -> None:
    """Write a new Ed25519 private key (PKCS#8 PEM, 0600) and its public key (PEM)."""
    for path in (private_key_path, public_key_path):
        if path.exists():
            raise KeyFileError(f"{path}: exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(private_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        public_key_path.write_bytes(public_pem)
    except OSError as exc:
        raise KeyFileError(f"{exc.filename}: cannot write key: {exc.strerror}") from exc


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read private key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 key, found {type(key).__name__}")
    return key


def sign_package(directory: Path, private_key_path: Path) -> Path:
    """Validate the package, then write ``manifest.sig``; return its path."""
    key = _load_private_key(private_key_path)
    raw = read_manifest(directory)
    manifest = parse_manifest(raw, str(directory / MANIFEST_FILE))
    read_model(directory, manifest)
    signature = key.sign(canonical_json(raw))
    path = directory / SIGNATURE_FILE
    tmp = path.with_name(SIGNATURE_FILE + ".tmp")
    tmp.write_bytes(base64.b64encode(signature) + b"\n")
    tmp.replace(path)
    return path


def verify_package(directory: Path, public_key_path: Path | None = None) -> VerifyReport:
    """Check everything ``load_package`` checks, collecting every problem in a report.

    The graph is checked and warmed up even when the signature is bad, so one run shows
    every problem; ``load_package`` would stop at the signature.
    """
    errors: list[str] = []
    signature: SignatureStatus = "not_checked"
    try:
        raw = read_manifest(directory)
    except ModelRejectedError as exc:
        return VerifyReport(directory, "", "", (), (), signature, (str(exc),))
    key = None
    if public_key_path is not None:
        try:
            key = load_public_key(public_key_path)
            signature = check_signature(directory, raw, key)
        except ModelRejectedError as exc:
            errors.append(str(exc))
    if signature == "missing":
        errors.append(f"{directory / SIGNATURE_FILE}: missing signature")
    elif signature == "invalid":
        errors.append(f"{directory / SIGNATURE_FILE}: bad signature")
    problems = manifest_problems(raw)
    errors.extend(f"{directory / MANIFEST_FILE}: {problem}" for problem in problems)
    if problems:
        return VerifyReport(directory, "", "", (), (), signature, tuple(errors))
    manifest = parse_manifest(raw)
    try:
        from agent.packages.session import open_session

        open_session(directory, manifest, read_model(directory, manifest))
    except ModelRejectedError as exc:
        errors.append(str(exc))
    return VerifyReport(
        directory,
        manifest.name,
        manifest.version,
        manifest.inputs,
        manifest.outputs,
        signature,
        tuple(errors),
    )
