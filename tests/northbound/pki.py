"""A test PKI for the northbound TLS tests: a CA issuing good, expired and encrypted certificates, and a
stranger's certificate from another CA (made with `cryptography`, so any validity dates are possible)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> None:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


class Authority:
    """A test CA that issues certificates into a directory."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert_path = directory / f"{name}.pem"
        certificate = (
            self._builder(self.name, self.key.public_key(), NOW - DAY, NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def _builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        start: datetime.datetime,
        end: datetime.datetime,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    def issue(self, name: str, *, expired: bool = False, password: bytes | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = (NOW - 30 * DAY, NOW - DAY) if expired else (NOW - DAY, NOW + 30 * DAY)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = self._builder(subject, key.public_key(), start, end).sign(self.key, hashes.SHA256())
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(issued.key, key, password)
        return issued


@dataclass(frozen=True)
class Pki:
    ca: Authority
    outstation: Issued  # the gateway's own certificate
    master: Issued
    stranger: Issued  # a master certificate from another CA
    expired: Issued
    encrypted: Issued


def make_pki(directory: Path) -> Pki:
    ca = Authority(directory, "utility-ca")
    other = Authority(directory, "other-ca")
    return Pki(
        ca=ca,
        outstation=ca.issue("outstation"),
        master=ca.issue("master"),
        stranger=other.issue("stranger"),
        expired=ca.issue("expired", expired=True),
        encrypted=ca.issue("encrypted", password=b"secret"),
    )
