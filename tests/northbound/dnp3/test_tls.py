"""Mutual TLS on the DNP3 outstation: only a master with a certificate of the configured CA gets in,
and unusable TLS files stop the gateway before it starts, naming the file."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import ConfigError
from gateway.northbound.dnp3 import create
from gateway.sim.fleet import Endpoint
from tests.conftest import StartFleet, socgw_command
from tests.northbound.dnp3.support import connected_master, dnp3_site_config, running_gateway

T = TypeVar("T")
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(asyncio.wait_for(scenario(), timeout=60))


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
    outstation: Issued
    master: Issued
    stranger: Issued  # a master certificate from another CA
    expired: Issued
    encrypted: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
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


def client_context(pki: Pki, identity: Issued | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the outstation is addressed by IP
    context.load_verify_locations(pki.ca.cert_path)
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    return context


def tls_section(pki: Pki, port: int, **files: Path) -> dict[str, object]:
    tls = {"ca": str(pki.ca.cert_path), "cert": str(pki.outstation.cert), "key": str(pki.outstation.key)}
    tls.update({name: str(path) for name, path in files.items()})
    return {"port": port, "tls": tls}


def test_only_a_master_with_a_certificate_of_the_ca_gets_in(
    tmp_path: Path, pki: Pki, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, tls_section(pki, free_tcp_port))

    async def refused(context: ssl.SSLContext | None) -> bool:
        try:
            async with connected_master(free_tcp_port, tls=context, timeout_s=2.0) as master:
                await master.integrity_poll()
        except (OSError, ssl.SSLError, Exception):
            return True
        return False

    async def scenario() -> tuple[float, list[bool], float]:
        async with running_gateway(config):
            async with connected_master(free_tcp_port, tls=client_context(pki, pki.master)) as master:
                await master.integrity_poll()
                before = master.handler.analog_inputs[27].value
            outcomes = [
                await refused(client_context(pki, None)),  # no client certificate
                await refused(client_context(pki, pki.stranger)),  # certificate of another CA
                await refused(None),  # plain TCP on the TLS port
            ]
            async with connected_master(free_tcp_port, tls=client_context(pki, pki.master)) as master:
                await master.integrity_poll()
                after = master.handler.analog_inputs[27].value
            return before, outcomes, after

    before, outcomes, after = run(scenario)
    assert before == after == 1.0  # AI27: number of batteries
    assert outcomes == [True, True, True]


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("missing", "does not exist"),
        ("unreadable", "cannot be read"),
        ("expired", "expired on"),
        ("mismatched", "does not belong to the key"),
        ("encrypted", "is encrypted"),
        ("not-pem", "holds no PEM certificate"),
    ],
)
def test_unusable_tls_files_stop_start_up_naming_the_file(
    tmp_path: Path, pki: Pki, free_tcp_port: int, problem: str, expected: str
) -> None:
    node = Endpoint("pack-01", "microstore/mp2000", "1.4.0", "127.0.0.1", free_tcp_port, 1)
    files: dict[str, Path] = {
        "missing": {"ca": tmp_path / "nowhere.pem"},
        "unreadable": {"cert": tmp_path},  # a directory: reading it fails (chmod does not stop root)
        "expired": {"cert": pki.expired.cert, "key": pki.expired.key},
        "mismatched": {"key": pki.master.key},
        "encrypted": {"cert": pki.encrypted.cert, "key": pki.encrypted.key},
        "not-pem": {"ca": pki.outstation.key},
    }[problem]
    config = dnp3_site_config(tmp_path, [node], tls_section(pki, free_tcp_port, **files))
    with pytest.raises(ConfigError) as raised:
        create(config, lambda update, apply=True: None)
    message = str(raised.value)
    assert expected in message
    assert any(str(path) in message for path in files.values())
    assert f"{config.path}:" in message  # and where the tls section is written


def test_socgw_run_refuses_an_expired_certificate(tmp_path: Path, pki: Pki, free_tcp_port: int) -> None:
    node = Endpoint("pack-01", "microstore/mp2000", "1.4.0", "127.0.0.1", free_tcp_port, 1)
    files = {"cert": pki.expired.cert, "key": pki.expired.key}
    config = dnp3_site_config(tmp_path, [node], tls_section(pki, free_tcp_port, **files))
    result = subprocess.run(
        socgw_command("run", "-c", config.path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert str(pki.expired.cert) in result.stderr and "expired" in result.stderr
