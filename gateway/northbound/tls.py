"""Checks of the DNP3 outstation's TLS files before the stack sees them.

The stack (yadnp3's bundled OpenSSL) reports a missing CA file as "Unable to bind server to the
specified port" and accepts an expired certificate, which every master then refuses. So the files are
checked here first, with messages that name the file and say what to do: missing, unreadable, not PEM,
expired or not yet valid, an encrypted key (the stack cannot ask for a passphrase), and a certificate
that does not belong to the key.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class TlsFileError(Exception):
    """A TLS file is unusable; the message names it."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsFileError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise TlsFileError(f"{what} {path} is not readable by this user: fix its permissions") from None
    except OSError as error:
        raise TlsFileError(f"{what} {path} cannot be read: {error.strerror or error}") from None


def _certificates(path: Path, what: str, now: datetime) -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsFileError(f"{what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string() or "(no subject)"
        if certificate.not_valid_after_utc < now:
            raise TlsFileError(
                f"{what} {path}: certificate {subject} expired on "
                f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it"
            )
        if certificate.not_valid_before_utc > now:
            raise TlsFileError(
                f"{what} {path}: certificate {subject} is not valid before "
                f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock or the certificate)"
            )
    return certificates


def _private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "TLS key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsFileError(
            f"TLS key {path} is encrypted: the outstation cannot ask for a passphrase; store it "
            "unencrypted (e.g. openssl pkey -in KEY -out KEY.plain) with permissions 0600"
        ) from None
    except ValueError:
        raise TlsFileError(f"TLS key {path} holds no PEM private key") from None


def _public_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_tls_files(ca: Path, cert: Path, key: Path, now: datetime) -> None:
    """Raise TlsFileError naming the first unusable file; `now` must be timezone-aware (UTC)."""
    _certificates(ca, "TLS CA file", now)
    certificate = _certificates(cert, "TLS certificate", now)[0]
    private_key = _private_key(key)
    if _public_der(certificate) != _public_der(private_key):
        raise TlsFileError(
            f"TLS certificate {cert} does not belong to the key {key}: they have different public keys"
        )
