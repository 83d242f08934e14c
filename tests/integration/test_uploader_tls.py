"""The uploader over HTTPS to the reference receiver: a private CA, verification, mTLS.

The PKI (a CA, a server certificate for 127.0.0.1, a client certificate) is generated with
``cryptography`` per test module. A verification failure must be a retry, never a crash.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer
from agent.demo.cloud import CloudReceiver
from agent.domain.clock import FakeClock
from agent.domain.errors import ConfigError
from agent.domain.samples import Sample
from agent.sync.uploader import Uploader
from tests.support.uploading import AGENT, drive, running, uploader

CATALOG = Catalog((CatalogEntry("Mill.Power", "kW", "plc"),))


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("edge-agent test CA", ca_key, None, ca=True)
    issuer = (ca_cert.subject, ca_key)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    server = _issue("127.0.0.1", server_key, issuer, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue(AGENT, client_key, issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path, _ = _write(folder, "ca", ca_cert, ca_key)
    server_paths = _write(folder, "server", server, server_key)
    client_paths = _write(folder, "client", client, client_key)
    return Pki(ca_path, *server_paths, *client_paths)


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = await Buffer.open(
        tmp_path / "buffer.db", agent_id=AGENT, max_bytes=10_000_000, clock=FakeClock()
    )
    await buf.put_samples([Sample("Mill.Power", 1_700_000_000.0, 412.5)], CATALOG)
    yield buf
    await buf.close()


async def upload(buffer: Buffer, url: str, tmp_path: Path, **tls: Any) -> Uploader:
    """Run an uploader until the buffer is empty or three attempts failed; return it."""
    clock = FakeClock()
    up = uploader(buffer, url, clock, tmp_path, **tls)
    async with running(up) as task:
        await drive(clock, lambda: task.done() or buffer.budget().blocks_pending == 0
                    or up.stats().consecutive_failures >= 3)  # fmt: skip
        assert not task.done(), "run() must not end on a TLS failure"
    return up


async def test_verification_with_the_private_ca_works(
    tmp_path: Path, pki: Pki, buffer: Buffer
) -> None:
    async with CloudReceiver(
        tmp_path / "cloud", ssl_certfile=pki.server_cert, ssl_keyfile=pki.server_key
    ) as cloud:
        assert cloud.url.startswith("https://")
        await upload(buffer, cloud.url, tmp_path, ca_file=pki.ca)
        assert cloud.store.counts(AGENT)["samples"] == 1
    assert buffer.budget().blocks_pending == 0


async def test_without_the_ca_verification_fails_clearly_and_is_retried(
    tmp_path: Path, pki: Pki, buffer: Buffer
) -> None:
    async with CloudReceiver(
        tmp_path / "cloud", ssl_certfile=pki.server_cert, ssl_keyfile=pki.server_key
    ) as cloud:
        up = await upload(buffer, cloud.url, tmp_path)
        assert cloud.store.blocks(AGENT) == []
    assert "CERTIFICATE_VERIFY_FAILED" in (up.stats().last_error or "")
    assert up.stats().consecutive_failures >= 3
    assert buffer.budget().blocks_pending == 2  # catalog + telemetry kept


async def test_mutual_tls_needs_the_client_certificate(
    tmp_path: Path, pki: Pki, buffer: Buffer
) -> None:
    async with CloudReceiver(
        tmp_path / "cloud",
        ssl_certfile=pki.server_cert,
        ssl_keyfile=pki.server_key,
        ssl_ca_certs=pki.ca,
    ) as cloud:
        refused = await upload(buffer, cloud.url, tmp_path, ca_file=pki.ca)
        assert refused.stats().acks == 0 and refused.stats().consecutive_failures >= 3
        assert cloud.store.blocks(AGENT) == []
        # relative paths are taken from base_dir (the config file's folder)
        (tmp_path / "client.pem").write_bytes(pki.client_cert.read_bytes())
        await upload(
            buffer,
            cloud.url,
            tmp_path,
            ca_file=pki.ca,
            client_cert_file=Path("client.pem"),
            client_key_file=pki.client_key,
        )
        assert cloud.store.counts(AGENT)["samples"] == 1


async def test_an_unreadable_ca_bundle_is_a_config_error(tmp_path: Path, buffer: Buffer) -> None:
    up = uploader(buffer, "https://127.0.0.1:9", FakeClock(), tmp_path,
                  ca_file=Path("missing-ca.pem"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"sync\.ca_file"):
        await up.run()
