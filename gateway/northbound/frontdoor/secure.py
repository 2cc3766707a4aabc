"""TLS for the front door, on Python's `ssl` (the system's OpenSSL 3): TLS 1.3, and TLS 1.2 with
forward-secret AEAD suites only; the client must present a certificate of the configured CA (expired or
untrusted: the handshake fails), and, when `clients` is set, one of those subjects or fingerprints."""

from __future__ import annotations

import hashlib
import ssl

from cryptography import x509

from gateway.northbound.tls import TlsFiles

TLS12_SUITES = "ECDHE+AESGCM:ECDHE+CHACHA20"  # AEAD with ECDHE; TLS 1.3 suites are all AEAD


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """Mutual TLS with `files`; ssl.SSLError or OSError when a file does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_SUITES)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # No TLS 1.3 session tickets: a client on mbedtls 3.6 (libiec61850's) gets an error from its read
    # when one arrives after the handshake and drops the association; no stack resumes sessions anyway.
    context.num_tickets = 0
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(files.ca)
    context.load_cert_chain(files.cert, files.key)
    return context


def identity(certificate_der: bytes) -> tuple[str, str]:
    """The client certificate's subject (RFC 4514) and its SHA-256 fingerprint ("sha256:<hex>")."""
    subject = x509.load_der_x509_certificate(certificate_der).subject.rfc4514_string()
    return subject, "sha256:" + hashlib.sha256(certificate_der).hexdigest()


def listed(clients: tuple[str, ...], subject: str, fingerprint: str) -> bool:
    """Whether the certificate may enter: any when `clients` is empty, else its subject or fingerprint."""
    return not clients or subject in clients or fingerprint in clients
