"""The secured local broker's TLS material: a CA made here on first start, and the broker's certificate.

Generated with the ``cryptography`` package, never downloaded. Clients need only ``ca.pem``; the
broker reads PEM directly (``ssl.keystore.type=PEM``), so no keystore tool or password is involved.
Private keys are written mode 0600. The broker certificate covers what clients dial (IP 127.0.0.1,
DNS localhost); it is also the broker's client certificate on its own controller listener (mutual
TLS), which is how the controller listener stays closed to anyone without the broker's key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BROKER_CN = "kstream-lab-broker"  # mapped to the admin principal on the controller listener
VALID_DAYS = 3650


@dataclass(frozen=True)
class TlsFiles:
    """Where the generated material lives (all under the broker's ``secure`` dir)."""

    home: Path

    @property
    def ca_cert(self) -> Path:
        return self.home / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.home / "ca.key"

    @property
    def broker_keystore(self) -> Path:
        """The broker's private key followed by its certificate chain (Kafka's PEM keystore file)."""
        return self.home / "broker-keystore.pem"

    def exists(self) -> bool:
        return self.ca_cert.exists() and self.ca_key.exists() and self.broker_keystore.exists()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created with mode 0600 (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kstream-lab"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def make_ca(cn: str = "kstream-lab local CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(cn), _name(cn), key.public_key(), VALID_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str = BROKER_CN
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server+client certificate for 127.0.0.1 and localhost, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    cert = (
        _builder(_name(cn), ca_cert.subject, key.public_key(), VALID_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(usage, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure_tls(home: Path) -> TlsFiles:
    """Generate the CA and the broker certificate under ``home`` unless they are there (idempotent)."""
    files = TlsFiles(home)
    if files.exists():
        return files
    ca_cert, ca_key = make_ca()
    cert, key = make_leaf(ca_cert, ca_key)
    pem = serialization.Encoding.PEM
    write_private(files.ca_key, _pem_key(ca_key))
    write_private(files.broker_keystore, _pem_key(key) + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))  # public: what clients trust
    return files
