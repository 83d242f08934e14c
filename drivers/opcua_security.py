"""The agent's OPC UA identity and its trust in servers: certificates on disk, under state_dir.

Owns: the PKI folders (`pki/own/` the agent's certificate and key, `pki/trusted/` server
certificates plant IT trusts, `pki/rejected/` server certificates the agent refused); making
the application certificate once (RSA 2048, SHA-256, 5 years, SubjectAltName = application
URI + DNS host name, client and server auth) and reusing it; the verdict on a server
certificate (`check_server_certificate`, pure); saving a refused one; `trust_certificate`
for `edge-agent opcua trust FILE`.
Must not: trust a server nobody put in trusted/ (there is no auto-accept switch), log or
print key material, or print anything (the CLI prints).
Invariants: the key file is created with mode 0600 and never rewritten while its
certificate is reusable; a certificate is reused only while it names the configured
application URI and stays valid for another 30 days (else both are replaced, logged as a
WARNING: servers must then trust the new one); a server certificate is accepted only if it
parses, is inside its validity period (ten minutes of clock skew allowed on its start),
names the endpoint's application URI, allows digital signature and key encipherment, and
is in trusted/ (byte-identical, or issued by a CA certificate in trusted/); otherwise the
DER bytes land in rejected/ under a stable name and `UntrustedServerError` says which file
to move where and every reason found. Being in trusted/ never excuses the other checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key
from asyncua.crypto.cert_gen import generate_self_signed_app_certificate as _self_signed
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.domain.errors import ConnectionLostError, RejectedError
from agent.domain.logger import get_logger

__all__ = [
    "CERT_DAYS",
    "Pki",
    "UntrustedServerError",
    "check_server_certificate",
    "default_application_uri",
    "ensure_own_certificate",
    "load_certificate_file",
    "load_trusted",
    "own_application_uri",
    "save_rejected",
    "trust_certificate",
    "trust_command",
    "untrusted_error",
]

_log = get_logger(__name__)

CERT_DAYS = 5 * 365
_RENEW_BEFORE = dt.timedelta(days=30)
_CLOCK_SKEW = dt.timedelta(minutes=10)  # a PLC clock ahead of ours: a new cert is not refused


@dataclass(frozen=True)
class Pki:
    """Where the agent keeps its certificate and its trust decisions."""

    own_dir: Path
    trusted_dir: Path
    rejected_dir: Path

    @classmethod
    def under(
        cls, state_dir: Path, *, trusted_dir: Path | None = None, rejected_dir: Path | None = None
    ) -> Pki:
        root = state_dir / "pki"
        return cls(root / "own", trusted_dir or root / "trusted", rejected_dir or root / "rejected")

    @property
    def certificate(self) -> Path:
        return self.own_dir / "cert.der"

    @property
    def private_key(self) -> Path:
        return self.own_dir / "key.pem"


class UntrustedServerError(ConnectionLostError):
    """The server's certificate was refused; `rejected_file` holds it, `reasons` say why.

    Retryable on purpose: once plant IT trusts the certificate (or fixes the server), the
    next attempt of the supervisor succeeds without a restart.
    """

    def __init__(self, message: str, *, rejected_file: Path, reasons: Sequence[str]) -> None:
        super().__init__(message)
        self.rejected_file = rejected_file
        self.reasons = tuple(reasons)


def default_application_uri(hostname: str, agent_id: str) -> str:
    """The agent's application URI unless the source overrides it."""
    return f"urn:{hostname}:edge-agent:{agent_id}"


def _reusable(cert_path: Path, application_uri: str, hostname: str, now: dt.datetime) -> bool:
    try:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return (
        application_uri in sans.get_values_for_type(x509.UniformResourceIdentifier)
        and hostname in sans.get_values_for_type(x509.DNSName)
        and cert.not_valid_after_utc - now > _RENEW_BEFORE
    )


def ensure_own_certificate(
    pki: Pki, *, application_uri: str, hostname: str, now: dt.datetime | None = None
) -> tuple[Path, Path]:
    """(certificate, key) paths, generated on first use and reused after. Blocking (RSA):
    call it with `asyncio.to_thread`."""
    # a certificate's validity is the wall clock's (tests pass `now`); no Clock reaches here
    moment = now or dt.datetime.now(dt.UTC)  # noqa: TID251
    cert_path, key_path = pki.certificate, pki.private_key
    if key_path.is_file() and _reusable(cert_path, application_uri, hostname, moment):
        return cert_path, key_path
    replacing = cert_path.exists()
    pki.own_dir.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    cert = _self_signed(
        key,
        f"edge-agent@{hostname}",
        {"organizationName": "edge-agent"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        days=CERT_DAYS,
    )
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(dump_private_key_as_pem(key))
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(Encoding.DER))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)
    emit = _log.warning if replacing else _log.info
    emit(
        "opcua_certificate_replaced" if replacing else "opcua_certificate_created",
        certificate_path=str(cert_path),
        application_uri=application_uri,
        valid_days=CERT_DAYS,
        hint="servers must trust this certificate (copy it into their trusted folder)",
    )
    return cert_path, key_path


def own_application_uri(pki: Pki) -> str | None:
    """The application URI of the agent's existing certificate, if there is one."""
    try:
        cert = x509.load_der_x509_certificate(pki.certificate.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def load_certificate_file(path: Path) -> x509.Certificate:
    """A DER or PEM certificate file; ValueError when it is something else."""
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_trusted(trusted_dir: Path) -> list[x509.Certificate]:
    """Every certificate in trusted/ (files that are not certificates are skipped, logged)."""
    certificates: list[x509.Certificate] = []
    if not trusted_dir.is_dir():
        return certificates
    for path in sorted(trusted_dir.iterdir()):
        if not path.is_file():
            continue
        try:
            certificates.append(load_certificate_file(path))
        except (OSError, ValueError):
            _log.warning("opcua_trusted_file_skipped", path=str(path), reason="not a certificate")
    return certificates


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_server_certificate(
    der: bytes,
    *,
    application_uri: str,
    trusted: Sequence[x509.Certificate],
    now: dt.datetime,
) -> list[str]:
    """Every reason to refuse this server certificate (empty: accept). Pure."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ["it is not a valid X.509 certificate"]
    reasons: list[str] = []
    if now + _CLOCK_SKEW < cert.not_valid_before_utc or now > cert.not_valid_after_utc:
        reasons.append(
            f"it is expired or not yet valid (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; check the clocks or renew the server "
            "certificate)"
        )
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if application_uri not in uris:
        reasons.append(
            f"its application URI {uris or 'none'} does not match the endpoint's "
            f"'{application_uri}' (the server certificate must be made for this server)"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        usable = usage.digital_signature and usage.key_encipherment
    except x509.ExtensionNotFound:
        usable = True  # no KeyUsage extension: every usage is allowed
    if not usable:
        reasons.append("its key usage does not allow digital signature and key encipherment")
    known = any(cert == other or _issued_by(cert, other) for other in trusted)
    if not known:
        reasons.append("it is unknown: not in the trusted folder, nor issued by a CA in it")
    return reasons


def _file_name(der: bytes) -> str:
    try:
        names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
        common = str(names[0].value) if names else "server"
    except ValueError:
        common = "unparsable"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", common).strip("_")[:48] or "server"
    return f"{safe}_{hashlib.sha256(der).hexdigest()[:16]}.der"


def save_rejected(der: bytes, rejected_dir: Path) -> Path:
    """Store a refused server certificate (DER) under a stable name; return its path."""
    rejected_dir.mkdir(parents=True, exist_ok=True)
    path = rejected_dir / _file_name(der)
    if not path.exists():
        path.write_bytes(der)
    return path


def trust_command(rejected: Path, config_file: Path | None, source: str | None) -> str:
    """The exact `edge-agent opcua trust` command for a refused certificate, to paste into a
    shell from any folder: absolute paths, quoted; the configuration file the agent was
    started with (without it the command would read the default one) and the source."""
    words = ["edge-agent", "opcua", "trust", str(rejected.absolute())]
    if config_file is None:  # `browse` has no configuration: name what to add
        return shlex.join(words) + " --config FILE (FILE: the agent's configuration)"
    words += ["--config", str(config_file.absolute())]
    if source is not None:
        words += ["--source", source]
    return shlex.join(words)


def untrusted_error(
    der: bytes,
    reasons: Sequence[str],
    pki: Pki,
    endpoint: str,
    *,
    config_file: Path | None = None,
    source: str | None = None,
) -> UntrustedServerError:
    """Save the certificate in rejected/ and build the error that says what to do (the
    command names `config_file`, the configuration in use, and the `source`)."""
    path = save_rejected(der, pki.rejected_dir)
    only_unknown = len(reasons) == 1 and reasons[0].startswith("it is unknown")
    action = (
        f"if this is your server, trust it: {trust_command(path, config_file, source)} "
        f"(moves it into {pki.trusted_dir}/)"
        if only_unknown
        else "trusting it will not help until the server's certificate is fixed"
    )
    message = (
        f"refused the certificate of {endpoint}: "
        + "; ".join(reasons)
        + f". Saved to {path}; "
        + action
    )
    return UntrustedServerError(message, rejected_file=path, reasons=reasons)


def trust_certificate(
    rejected_file: Path, state_dir: Path, *, trusted_dir: Path | None = None
) -> Path:
    """Move a (rejected) server certificate into trusted/ as DER; return its new path.

    Raises RejectedError when the file is missing or is not a certificate.
    """
    try:
        cert = load_certificate_file(rejected_file)
    except FileNotFoundError:
        raise RejectedError(f"{rejected_file}: no such file") from None
    except (OSError, ValueError) as exc:
        raise RejectedError(
            f"{rejected_file}: not an X.509 certificate (DER or PEM) ({exc})"
        ) from exc
    target_dir = trusted_dir or Pki.under(state_dir).trusted_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    der = cert.public_bytes(Encoding.DER)
    target = target_dir / (
        rejected_file.name if rejected_file.suffix == ".der" else rejected_file.stem + ".der"
    )
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(der)
    os.replace(tmp, target)
    if rejected_file.resolve() != target.resolve():
        rejected_file.unlink()
    _log.info("opcua_certificate_trusted", path=str(target))
    return target
