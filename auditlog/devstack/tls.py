"""The local stack's private certificate authority, for its SASL_SSL Kafka listener.

One CA under ``<home>/kafka/tls`` signs the broker's certificate (for 127.0.0.1 and localhost,
so clients verify the host name as in production) and one client certificate (mutual TLS). The
files are made once and kept: clients configured with them stay valid across restarts. Keys are
EC P-256, unencrypted, readable by the current user only: this is a loopback development CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=825)
# Certificates are made again this long before they expire, on the next `stack start`.
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA certificate clients trust, the broker's key and chain in one file
    (Kafka's PEM keystore), and the client's certificate and key."""

    ca_cert: Path
    ca_key: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path


def tls_files(directory: Path) -> TlsFiles:
    return TlsFiles(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        broker_keystore=directory / "broker.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


def ensure_certificates(directory: Path) -> TlsFiles:
    """Make the CA, broker and client certificates unless all exist and are not near expiry."""
    files = tls_files(directory)
    if _current(files):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auditlog local stack CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    broker_key, broker_cert = _leaf(
        "auditlog local broker",
        ExtendedKeyUsageOID.SERVER_AUTH,
        ca_cert,
        ca_key,
        now,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key, client_cert = _leaf(
        "auditlog", ExtendedKeyUsageOID.CLIENT_AUTH, ca_cert, ca_key, now, []
    )
    _write(files.ca_key, _key_pem(ca_key))
    _write(files.ca_cert, _cert_pem(ca_cert))
    _write(files.broker_keystore, _key_pem(broker_key) + _cert_pem(broker_cert, ca_cert))
    _write(files.client_key, _key_pem(client_key))
    _write(files.client_cert, _cert_pem(client_cert))
    return files


def _current(files: TlsFiles) -> bool:
    paths = (files.ca_cert, files.ca_key, files.broker_keystore, files.client_cert)
    if not all(p.is_file() for p in (*paths, files.client_key)):
        return False
    deadline = datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
    for path in (files.ca_cert, files.broker_keystore, files.client_cert):
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            if cert.not_valid_after_utc < deadline:
                return False
    return True


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        # A minute back: a client whose clock is slightly behind still accepts a new cert.
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + VALID_FOR)
    )


def _leaf(
    common_name: str,
    usage: x509.ObjectIdentifier,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: the form Kafka's PEM keystore reads.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _write(path: Path, data: bytes) -> None:
    # Written whole under a temporary name, so a crash never leaves half a key in place.
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    partial.replace(path)
