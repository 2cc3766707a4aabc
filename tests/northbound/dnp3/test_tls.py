"""Mutual TLS on the DNP3 outstation: only a master with a certificate of the configured CA gets in,
and unusable TLS files stop the gateway before it starts, naming the file."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop

from gateway.config import ConfigError
from gateway.northbound.dnp3 import create
from gateway.sim.fleet import Endpoint
from tests.conftest import StartFleet, socgw_command
from tests.northbound.dnp3.support import connected_master, dnp3_site_config, running_gateway
from tests.northbound.pki import Issued, Pki

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(asyncio.wait_for(scenario(), timeout=60))


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
