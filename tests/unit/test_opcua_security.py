"""drivers.opcua_security: the agent's certificate, the verdict on server certificates, and
the trust folder (files in tmp_path; no sockets)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.domain.errors import RejectedError
from drivers.opcua_security import (
    Pki,
    check_server_certificate,
    ensure_own_certificate,
    save_rejected,
    trust_certificate,
    untrusted_error,
)

SERVER_URI = "urn:plc-17:s7"


def now() -> dt.datetime:
    """The time of the check (not of collection: a long suite must not age it)."""
    return dt.datetime.now(dt.UTC)


def server_certificate(uri: str = SERVER_URI, days: int = 365) -> x509.Certificate:
    return generate_self_signed_app_certificate(
        generate_private_key(), "plc-17", {}, [x509.UniformResourceIdentifier(uri)],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH], days=days,
    )  # fmt: skip


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def test_own_certificate_is_made_once_with_uri_and_host(tmp_path: Path) -> None:
    pki = Pki.under(tmp_path)
    cert_path, key_path = ensure_own_certificate(pki, application_uri="urn:h:edge-agent:a",
                                                 hostname="h")  # fmt: skip
    assert (cert_path, key_path) == (tmp_path / "pki/own/cert.der", tmp_path / "pki/own/key.pem")
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = x509.load_der_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:h:edge-agent:a"]
    assert sans.get_values_for_type(x509.DNSName) == ["h"]
    assert cert.not_valid_after_utc - now() > dt.timedelta(days=4 * 365)
    first = cert_path.read_bytes(), key_path.read_bytes()
    ensure_own_certificate(pki, application_uri="urn:h:edge-agent:a", hostname="h")
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first  # reused
    ensure_own_certificate(pki, application_uri="urn:h:edge-agent:b", hostname="h")
    assert cert_path.read_bytes() != first[0]  # a new URI needs a new certificate
    late = now() + dt.timedelta(days=5 * 365 - 10)  # 10 days before it expires: renewed
    renewed = cert_path.read_bytes()
    ensure_own_certificate(pki, application_uri="urn:h:edge-agent:b", hostname="h", now=late)
    assert cert_path.read_bytes() != renewed


def test_a_trusted_valid_certificate_is_accepted() -> None:
    cert = server_certificate()
    assert check_server_certificate(der(cert), application_uri=SERVER_URI, trusted=[cert],
                                    now=now()) == []  # fmt: skip


def test_every_reason_to_refuse_is_given() -> None:
    cert = server_certificate(uri="urn:somebody-else")
    reasons = check_server_certificate(der(cert), application_uri=SERVER_URI, trusted=[],
                                       now=now() + dt.timedelta(days=400))  # fmt: skip
    assert len(reasons) == 3
    assert "expired" in reasons[0] and "urn:somebody-else" in reasons[1]
    assert "unknown" in reasons[2]
    assert check_server_certificate(b"junk", application_uri=SERVER_URI, trusted=[],
                                    now=now()) == ["it is not a valid X.509 certificate"]  # fmt: skip


def test_key_usage_is_checked() -> None:
    key = generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now() - dt.timedelta(days=1)).not_valid_after(now() + dt.timedelta(days=9))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SERVER_URI)]),
                       critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    reasons = check_server_certificate(der(cert), application_uri=SERVER_URI, trusted=[cert],
                                       now=now())  # fmt: skip
    assert reasons == ["its key usage does not allow digital signature and key encipherment"]


def test_a_certificate_issued_by_a_trusted_ca_is_accepted() -> None:
    ca_key, leaf_key = generate_private_key(), generate_private_key()
    ca = generate_self_signed_app_certificate(ca_key, "plant CA", {}, [], extended=[])
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc")]))
        .issuer_name(ca.subject).public_key(leaf_key.public_key()).serial_number(2)
        .not_valid_before(now() - dt.timedelta(days=1)).not_valid_after(now() + dt.timedelta(days=9))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SERVER_URI)]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    assert check_server_certificate(der(leaf), application_uri=SERVER_URI, trusted=[ca],
                                    now=now()) == []  # fmt: skip
    other_ca = generate_self_signed_app_certificate(generate_private_key(), "x", {}, [], [])
    assert check_server_certificate(der(leaf), application_uri=SERVER_URI, trusted=[other_ca],
                                    now=now())  # fmt: skip


def test_rejected_then_trusted(tmp_path: Path) -> None:
    pki = Pki.under(tmp_path)
    data = der(server_certificate())
    error = untrusted_error(data, ["it is unknown: not in the trusted folder"], pki, "opc.tcp://x")
    rejected = error.rejected_file
    assert rejected.parent == pki.rejected_dir and rejected.read_bytes() == data
    assert rejected.name.startswith("plc-17_") and save_rejected(data, pki.rejected_dir) == rejected
    assert f"edge-agent opcua trust {rejected}" in str(error)
    mismatch = untrusted_error(data, ["its application URI ... does not match"], pki, "x")
    assert "will not help" in str(mismatch)
    trusted = trust_certificate(rejected, tmp_path)
    assert trusted == pki.trusted_dir / rejected.name and trusted.read_bytes() == data
    assert not rejected.exists()


def test_trust_takes_pem_and_refuses_what_is_not_a_certificate(tmp_path: Path) -> None:
    pem = tmp_path / "plc.pem"
    cert = server_certificate()
    pem.write_bytes(cert.public_bytes(Encoding.PEM))
    trusted = trust_certificate(pem, tmp_path)
    assert trusted.name == "plc.der" and trusted.read_bytes() == der(cert)
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(RejectedError, match=r"not an X\.509 certificate"):
        trust_certificate(junk, tmp_path)
    with pytest.raises(RejectedError, match="no such file"):
        trust_certificate(tmp_path / "gone.der", tmp_path)
    assert junk.exists()
