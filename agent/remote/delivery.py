"""Delivering a model package the cloud offers: download, verify, place atomically.

Owns: downloading ``manifest.json``, ``manifest.sig`` and ``model.onnx`` from
``{url}/v1/models/{name}/{version}/{file}`` (size-capped), writing them into a hidden temp
directory next to the final one (``<models_dir>/<name>/.incoming-<version>-*``), fsyncing,
checking the Ed25519 signature with the configured public key, the manifest (its name and
version must be the ones asked for) and the model's sha256, then renaming the directory to
``<models_dir>/<name>/<version>`` and fsyncing the parent.

Must not: activate, load or run a model (the model manager watches ``models_dir``); overwrite
or touch an existing version directory; accept a package without a valid signature (no public
key configured means no remote delivery at all); follow a redirect.

Invariants: after ``deliver`` returns or raises, either ``<name>/<version>`` is a complete,
verified package (renamed in one step, durable) or nothing of this attempt is left on disk.
Network trouble raises ``RetryableError`` (the caller retries later); a package that fails a
check gives ``Delivery("rejected", reason)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.domain.errors import ConnectionLostError, DeviceTimeoutError, RetryableError
from agent.packages.manifest import MODEL_FILE, ModelRejectedError, parse_manifest
from agent.packages.package import MANIFEST_FILE, SIGNATURE_FILE, check_signature, read_manifest
from agent.remote.policy import ModelRequest
from agent.sync.policy import parse_retry_after

__all__ = ["MAX_BYTES", "PACKAGE_FILES", "Delivery", "deliver", "package_url"]

PACKAGE_FILES = (MANIFEST_FILE, SIGNATURE_FILE, MODEL_FILE)
MAX_BYTES = {MANIFEST_FILE: 1024 * 1024, SIGNATURE_FILE: 4096, MODEL_FILE: 512 * 1024 * 1024}
_INCOMING = ".incoming-"


@dataclass(frozen=True)
class Delivery:
    """``delivered`` (now in place), ``present`` (was already) or ``rejected`` (reason)."""

    status: Literal["delivered", "present", "rejected"]
    reason: str = ""
    sha256: str = ""
    directory: str = ""


def package_url(base_url: str, request: ModelRequest, file: str) -> str:
    name, version = quote(request.name, safe=""), quote(request.version, safe="")
    return f"{base_url}/v1/models/{name}/{version}/{file}"


async def deliver(
    client: httpx.AsyncClient,
    base_url: str,
    request: ModelRequest,
    models_dir: Path,
    public_key: Ed25519PublicKey | None,
    *,
    now: float,
) -> Delivery:
    """Bring ``request`` into ``models_dir`` unless it is there already."""
    final = models_dir / request.name / request.version
    if final.exists():
        return Delivery("present", directory=str(final))
    if public_key is None:
        reason = (
            "no model public key configured ([agent] model_public_key_file): "
            "remote model delivery needs a signature check"
        )
        return Delivery("rejected", reason, directory=str(final))
    files: dict[str, bytes] = {}
    for file in PACKAGE_FILES:
        data = await _download(client, package_url(base_url, request, file), file, now)
        if isinstance(data, str):
            return Delivery("rejected", data, directory=str(final))
        files[file] = data
    try:
        sha = await asyncio.to_thread(_install, final, files, request, public_key)
    except ModelRejectedError as exc:
        return Delivery("rejected", str(exc), directory=str(final))
    if sha is None:
        return Delivery("present", directory=str(final))
    return Delivery("delivered", sha256=sha, directory=str(final))


async def _download(client: httpx.AsyncClient, url: str, file: str, now: float) -> bytes | str:
    """The file's bytes, or why the package is refused (too large); raises on network trouble."""
    limit = MAX_BYTES[file]
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                hint = parse_retry_after(response.headers.get("retry-after"), now)
                raise RetryableError(f"HTTP {response.status_code} for {file}", retry_after_s=hint)
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    return f"{file}: larger than {limit} bytes"
            return bytes(data)
    except httpx.TimeoutException as exc:
        raise DeviceTimeoutError(f"{type(exc).__name__}: no answer for {file}") from exc
    except httpx.RequestError as exc:
        raise ConnectionLostError(f"{type(exc).__name__}: {exc}") from exc


def _install(
    final: Path, files: dict[str, bytes], request: ModelRequest, key: Ed25519PublicKey
) -> str | None:
    """Write, verify and rename; the sha256 of the model, or None if the version appeared."""
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f"{_INCOMING}{request.version}-*"):  # a crash mid-delivery
        shutil.rmtree(stale, ignore_errors=True)
    temp = Path(tempfile.mkdtemp(prefix=f"{_INCOMING}{request.version}-", dir=parent))
    try:
        for name, data in files.items():
            with (temp / name).open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        _fsync_dir(temp)
        try:
            sha = _verify(temp, request, key)
        except ModelRejectedError as exc:  # name the final place, not the temp directory
            file = exc.file.replace(str(temp), str(final))
            file = file if Path(file).is_absolute() else str(final / file)
            raise ModelRejectedError(file, exc.reason.replace(str(temp), str(final))) from exc
        if final.exists():
            return None
        os.rename(temp, final)  # atomic; fails rather than replace a non-empty directory
        _fsync_dir(parent)
        return sha
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _verify(directory: Path, request: ModelRequest, key: Ed25519PublicKey) -> str:
    raw = read_manifest(directory)
    status = check_signature(directory, raw, key)
    if status != "valid":
        raise ModelRejectedError(SIGNATURE_FILE, f"signature {status}: not signed by this key")
    manifest = parse_manifest(raw, MANIFEST_FILE)
    found = (manifest.name, manifest.version)
    if found != (request.name, request.version):
        raise ModelRejectedError(
            MANIFEST_FILE,
            f"expected model {request.name} {request.version}, found {found[0]} {found[1]}",
        )
    if manifest.model.file != MODEL_FILE:
        reason = f"model.file: expected {MODEL_FILE}, found {manifest.model.file!r}"
        raise ModelRejectedError(MANIFEST_FILE, reason)
    sha = hashlib.sha256((directory / MODEL_FILE).read_bytes()).hexdigest()
    if sha != manifest.model.sha256:
        reason = f"sha256 mismatch: manifest says {manifest.model.sha256}, found {sha}"
        raise ModelRejectedError(MODEL_FILE, reason)
    return sha


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
