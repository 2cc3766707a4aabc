"""The `tls:` section every northbound adapter takes, and the checks of its files before a stack sees them.

    tls: {ca: ca.pem, cert: gateway.pem, key: gateway.key}   # mutual TLS; paths relative to the config
    tls: {ca: ..., cert: ..., key: ..., clients: ["CN=scada-1,O=Utility", "sha256:AB12..."]}
                 # optional: only these client certificates (subject as RFC 4514, or SHA-256 fingerprint)

The stacks report unusable files badly (yadnp3's bundled OpenSSL says "Unable to bind server to the
specified port" for a missing CA file and accepts an expired certificate, which every master then
refuses; libiec61850 only fails at start-up). So the files are checked here, for every protocol alike,
and each problem is reported at the line of its key: missing, unreadable, not PEM, expired or not yet
valid, an encrypted key (no stack can ask for a passphrase), a certificate that does not belong to the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.diagnostics import Checker, MarkedMap
from gateway.diagnostics.fields import list_of, section, table, text

FINGERPRINT = re.compile(r"sha256:([0-9a-f]{2}:?){31}[0-9a-f]{2}", re.IGNORECASE)
FILE_FIELDS = table(
    {
        "ca": text("The CA that signs the peers' (masters', clients') certificates, PEM."),
        "cert": text("This gateway's certificate, PEM."),
        "key": text("This gateway's private key, PEM, unencrypted (permissions 0600)."),
    }
)
TLS_FIELDS = table(
    {
        **FILE_FIELDS,
        "clients": list_of(
            "Only these client certificates: a subject as RFC 4514 (openssl x509 -noout -subject "
            "-nameopt RFC2253), or sha256:<fingerprint>; default: any the CA signed.",
            text("", rule="a certificate subject such as CN=scada-1,O=Utility, or sha256:<64 hex digits>"),
        ),
    }
)
TLS_SECTION = section(
    "Mutual TLS: only peers with a certificate signed by `ca` get in; paths relative to the config.",
    TLS_FIELDS,
    required=tuple(FILE_FIELDS),
)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    clients: tuple[str, ...] = ()  # subjects (RFC 4514) or "sha256:<hex>" fingerprints; () any


class _Unusable(Exception):
    """A TLS file cannot be used; `key` is its key in the `tls:` section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def parse_tls(checker: Checker, settings: MarkedMap, config_dir: Path, now: datetime) -> TlsFiles | None:
    """The files of the `tls:` mapping in `settings` (None when absent), checked; problems go to `checker`
    at the line of the offending key. `now` must be timezone-aware (UTC)."""
    raw = settings.get("tls")
    if raw is None:
        return None
    if not isinstance(raw, MarkedMap):
        checker.problem(settings.value_mark("tls"), "`tls` must be a mapping with `ca`, `cert` and `key`")
        return None
    checker.known_keys(raw, TLS_FIELDS, "`tls`")
    paths: dict[str, Path] = {}
    for key, field in FILE_FIELDS.items():
        if key not in raw:
            checker.problem(
                raw.mark,
                f"`tls` needs `{key}`: give `ca` (the CA that signs the peers' certificates), `cert` and "
                "`key` (this gateway's certificate and private key, PEM)",
            )
            continue
        value = checker.value(raw, key, field)
        if value is not None:
            path = Path(value)
            paths[key] = path if path.is_absolute() else config_dir / path
    clients = _clients(checker, raw)
    if len(paths) != len(FILE_FIELDS):
        return None
    files = TlsFiles(paths["ca"], paths["cert"], paths["key"], clients)
    unreadable = [problem for problem in (_unreadable(key, path) for key, path in paths.items()) if problem]
    for problem in unreadable:  # every missing file at once; their contents after that
        checker.problem(raw.value_mark(problem.key), str(problem))
    if unreadable:
        return None
    try:
        _check_contents(files, now)
    except _Unusable as problem:
        checker.problem(raw.value_mark(problem.key), str(problem))
        return None
    return files


def _clients(checker: Checker, raw: MarkedMap) -> tuple[str, ...]:
    """The allowed client certificates; a fingerprint written wrong is reported (a subject is text)."""
    entries = checker.value(raw, "clients", TLS_FIELDS["clients"], [])
    clients: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry.strip():
            checker.problem(entries.item_mark(index), "a `clients` entry must be a subject or sha256:<hex>")
        elif entry.lower().startswith("sha256:") and not FINGERPRINT.fullmatch(entry):
            checker.problem(
                entries.item_mark(index),
                f"`clients` entry {entry!r} is not a SHA-256 fingerprint: write sha256: and 64 hex digits "
                "(openssl x509 -noout -fingerprint -sha256 -in CERT)",
            )
        else:
            clients.append(normal_client(entry))
    return tuple(clients)


def normal_client(entry: str) -> str:
    """A `clients` entry as the front door compares it: fingerprints in lower-case hex without colons."""
    if entry.lower().startswith("sha256:"):
        return "sha256:" + entry[7:].replace(":", "").lower()
    return entry.strip()


def _unreadable(key: str, path: Path) -> _Unusable | None:
    what = f"TLS `{key}` file {path}"
    try:
        path.read_bytes()
    except FileNotFoundError:
        return _Unusable(key, f"{what} does not exist")
    except PermissionError:
        return _Unusable(key, f"{what} is not readable by this user: fix its permissions")
    except OSError as error:
        return _Unusable(key, f"{what} cannot be read: {error.strerror or error}")
    return None


def _certificates(key: str, path: Path, now: datetime) -> list[x509.Certificate]:
    what = f"TLS `{key}` file {path}"
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        raise _Unusable(key, f"{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string() or "(no subject)"
        if certificate.not_valid_after_utc < now:
            raise _Unusable(
                key,
                f"{what}: certificate {subject} expired on "
                f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it",
            )
        if certificate.not_valid_before_utc > now:
            raise _Unusable(
                key,
                f"{what}: certificate {subject} is not valid before "
                f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock or the certificate)",
            )
    return certificates


def _private_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except TypeError:
        raise _Unusable(
            "key",
            f"TLS `key` file {path} is encrypted: the gateway cannot ask for a passphrase; store it "
            "unencrypted (e.g. openssl pkey -in KEY -out KEY.plain) with permissions 0600",
        ) from None
    except ValueError:
        raise _Unusable("key", f"TLS `key` file {path} holds no PEM private key") from None


def _public_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_contents(files: TlsFiles, now: datetime) -> None:
    _certificates("ca", files.ca, now)
    certificate = _certificates("cert", files.cert, now)[0]
    if _public_der(certificate) != _public_der(_private_key(files.key)):
        raise _Unusable(
            "key",
            f"TLS certificate {files.cert} does not belong to the key {files.key}: they have different "
            "public keys (give the key the certificate was issued for)",
        )
