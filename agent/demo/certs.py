"""Security of the simulated PLC's OPC UA endpoint: its certificate, its policies, its users.

Owns: creating (on first use) and reusing the self-signed server certificate (DER) and RSA
key (PEM) in a directory the caller chooses; the choice of endpoints (None + anonymous for
the plain demo; SignAndEncrypt only + username/password when security is asked for); the
password check.
Must not: trust, validate or store client certificates (the simulated PLC accepts any client
certificate; trusting servers is the driver's business); generate the agent's own client
certificate; log passwords.
Invariants: the certificate's SubjectAltName carries the server's application URI and every
host name / IP it is reached by; an existing pair is reused while it is valid for another day
and names the same URI, else both files are replaced; the key file is created with mode 0600;
with security on, no None endpoint and no anonymous login exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from asyncua import ua
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key
from asyncua.crypto.cert_gen import generate_self_signed_app_certificate as _self_signed
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

log = structlog.get_logger(__name__)

CERT_FILE = "server_cert.der"
KEY_FILE = "server_key.pem"
SECURE_POLICIES = (
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
)


@dataclass(frozen=True)
class OpcUaSecurity:
    """SignAndEncrypt endpoints only (no None endpoint); username/password logins only."""

    cert_dir: Path
    users: Mapping[str, str] = field(repr=False)  # username -> password
    policies: tuple[ua.SecurityPolicyType, ...] = SECURE_POLICIES


@dataclass(frozen=True)
class CertificatePaths:
    certificate: Path
    private_key: Path


class _PasswordUsers(UserManager):
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        expected = self._users.get(username or "")
        if expected is None or not hmac.compare_digest(expected, password or ""):
            log.warning("opcua_login_refused", username=username)
            return None
        return User(role=UserRole.User, name=username)


def user_manager(security: OpcUaSecurity | None) -> UserManager | None:
    """The password checker for `Server(user_manager=...)`; None keeps asyncua's default."""
    return None if security is None else _PasswordUsers(security.users)


async def configure_security(
    server: Server, security: OpcUaSecurity | None, application_uri: str, host: str
) -> None:
    """Set endpoints and identity tokens on an initialised, not yet started server."""
    if security is None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        return
    hosts = (host, "localhost", socket.gethostname())
    paths = await asyncio.to_thread(
        ensure_server_certificate, security.cert_dir, application_uri=application_uri, hosts=hosts
    )
    await server.load_certificate(str(paths.certificate))
    await server.load_private_key(str(paths.private_key))
    server.set_security_policy(list(security.policies))
    server.set_identity_tokens([ua.UserNameIdentityToken])


def _still_good(cert_path: Path, application_uri: str) -> bool:
    try:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    return application_uri in uris and cert.not_valid_after_utc > soon


def _alt_names(application_uri: str, hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def ensure_server_certificate(
    directory: Path, *, application_uri: str, hosts: tuple[str, ...]
) -> CertificatePaths:
    """Return the certificate and key paths in `directory`, generating them if needed.

    Blocking (RSA key generation takes ~0.05-0.5 s): call it with `asyncio.to_thread`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertificatePaths(directory / CERT_FILE, directory / KEY_FILE)
    reusable = paths.private_key.is_file() and paths.certificate.is_file()
    if reusable and _still_good(paths.certificate, application_uri):
        log.debug("server_certificate_reused", path=str(paths.certificate))
        return paths
    key = generate_private_key()
    cert = _self_signed(
        key,
        "edge-agent simulated PLC",
        {"organizationName": "edge-agent demo"},
        _alt_names(application_uri, hosts),
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=365,
    )
    fd = os.open(paths.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(dump_private_key_as_pem(key))
    paths.certificate.write_bytes(cert.public_bytes(Encoding.DER))
    log.info("server_certificate_generated", path=str(paths.certificate), uri=application_uri)
    return paths
