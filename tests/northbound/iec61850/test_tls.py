"""Mutual TLS: `socgw run` serves MMS over TLS to a client with a certificate the configured CA signed,
and refuses every other client; a TLS file it cannot use is a config error naming the file and its line.
Certificates are made with the openssl CLI for each test (and with tests/northbound/pki.py for dates)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.northbound.iec61850 import check
from tests.conftest import PROFILES, StartFleet, free_port, socgw_command
from tests.northbound.iec61850.helpers import GatewayProcess, iec_section, make_certificates, run_client
from tests.northbound.pki import Pki
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

SOC = ("SOCGWPACK_01/ZBAT1.Soc.mag.f", "MX")


def test_mutual_tls_accepts_the_right_certificate_and_refuses_others(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    certs = make_certificates(tmp_path / "tls")
    port = free_port()
    tls = {"ca": certs.ca, "cert": certs.server_cert, "key": certs.server_key}
    config = site_config(tmp_path, fleet.endpoints, iec_section(port, tls=tls))
    with GatewayProcess(Path(config.path), config.status_socket, 1) as gateway:
        trusted = run_client(port, "read", *SOC, tls=(certs.ca, certs.client_cert, certs.client_key))
        no_certificate = run_client(port, "read", *SOC, tls=(certs.ca, None, None))
        rogue = run_client(port, "read", *SOC, tls=(certs.ca, certs.rogue_cert, certs.rogue_key))
        plain = run_client(port, "read", *SOC)
        # a client that did connect still works (refusals do not disturb the server)
        again = run_client(port, "read", *SOC, tls=(certs.ca, certs.client_cert, certs.client_key))
    assert gateway.stop() == 0
    assert trusted["values"] == [pytest.approx(fleet.snapshot("pack-01").state.soc_pct, abs=0.051)]
    assert again["values"] == trusted["values"]
    for refused in (no_certificate, rogue, plain):
        assert "connect_error" in refused, refused
    output = "\n".join(gateway.output)
    assert "mutual TLS" in output
    assert "Verify cert" not in output  # libiec61850's certificate dumps go to the debug log, not the output


def test_a_tls_file_that_is_not_pem_is_a_config_error_naming_it(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    certs = make_certificates(tmp_path / "tls")
    broken = tmp_path / "tls" / "broken.pem"
    broken.write_text("not a certificate\n")
    tls = {"ca": certs.ca, "cert": broken, "key": certs.server_key}
    config = site_config(tmp_path, fleet.endpoints, iec_section(free_port(), tls=tls))
    result = subprocess.run(
        socgw_command("run", "-c", config.path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2  # a config error now, found before the server starts
    assert f"{config.path}:" in result.stderr
    assert f"TLS `cert` file {broken} holds no PEM certificate" in result.stderr


def test_a_missing_tls_file_is_a_config_error_with_its_line(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    certs = make_certificates(tmp_path / "tls")
    missing = tmp_path / "tls" / "nowhere.key"
    tls = {"ca": certs.ca, "cert": certs.server_cert, "key": missing}
    config = site_config(tmp_path, fleet.endpoints, iec_section(free_port(), tls=tls))
    result = subprocess.run(
        socgw_command("run", "-c", config.path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert f"{config.path}:" in result.stderr and str(missing) in result.stderr


@pytest.mark.parametrize(
    ("files", "expected", "key"),
    [
        ("expired", "expired on", "cert"),
        ("mismatched", "does not belong to the key", "key"),
    ],
)
def test_an_expired_certificate_or_a_mismatched_key_is_refused_at_its_line(
    tmp_path: Path, pki: Pki, files: str, expected: str, key: str
) -> None:
    """The same file checks as DNP3 (northbound/tls.py), each at the line of its key."""
    cert, private_key = {
        "expired": (pki.expired.cert, pki.expired.key),
        "mismatched": (pki.outstation.cert, pki.master.key),
    }[files]
    tls = {"ca": pki.ca.cert_path, "cert": cert, "key": private_key}
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(
        "nodes: []\nnorthbound:\n  iec61850:\n    tls:\n"
        + "".join(f"      {name}: {path}\n" for name, path in tls.items()),
        encoding="utf-8",
    )
    config = load_config(config_path, [PROFILES])
    with pytest.raises(ConfigError) as raised:
        check(config)
    [problem] = raised.value.problems
    line = 5 + list(tls).index(key)  # the line of the offending key
    assert str(problem).startswith(f"{config_path}:{line}:"), str(problem)
    assert expected in problem.message and str(tls[key]) in problem.message
