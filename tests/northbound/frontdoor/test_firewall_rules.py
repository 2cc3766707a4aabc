"""`socgw firewall`'s ruleset loaded with `nft` in a gateway namespace the test creates: a client inside
the allow-list reaches the DNP3 and MMS ports, one outside it does not (as at the front door), and the
gateway's user reaches a node's Modbus port but no other port of that host."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.commands.firewall import ruleset
from gateway.config import load_config
from tests.conftest import PROFILES, REPO
from tests.northbound.frontdoor.support import client_namespaces, gateway_namespace

pytestmark = pytest.mark.wire  # network namespaces, nft, processes

DNP3_PORT, MMS_PORT, NODE_PORT, OTHER_PORT = 20000, 102, 1502, 1503


@contextlib.contextmanager
def echo_server(namespace: str, *ports: int) -> Iterator[None]:
    """The peers' echo server on `ports` in `namespace`, until the block ends."""
    command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.northbound.frontdoor.peers"]
    process = subprocess.Popen(
        [*command, "echo", *map(str, ports)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"listening": list(ports)}
        yield
    finally:
        process.kill()
        process.wait(10)


def nft(namespace: str, rules: Path) -> str:
    """Load `rules` with nft in `namespace`: what it complained about ("" when loaded)."""
    command = ["ip", "netns", "exec", namespace, "nft", "-f", str(rules)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return result.stderr if result.returncode else ""


def reaches(namespace: str, host: str, port: int) -> bool:
    """Whether a TCP connection from `namespace` to host:port opens within a second."""
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1.0)"
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def test_the_ruleset_admits_and_drops_as_the_front_door_does(tmp_path: Path) -> None:
    with gateway_namespace() as gateway, client_namespaces(2, into=gateway) as (inside, outside):
        config = tmp_path / "gateway.yaml"
        config.write_text(
            "site: {name: firewall, cycle_ms: 100}\n"
            "nodes:\n"
            f"  - {{id: pack-01, host: {inside.address}, port: {NODE_PORT}, profile: microstore/mp2000}}\n"
            "northbound:\n"
            f"  dnp3: {{host: 0.0.0.0, port: {DNP3_PORT}, allow: [{inside.address}/32]}}\n"
            f"  iec61850: {{host: 0.0.0.0, port: {MMS_PORT}, allow: [{inside.address}/32]}}\n"
        )
        rules = tmp_path / "rules.nft"
        rules.write_text(ruleset(load_config(config, [PROFILES]), "root", str(config)))
        assert nft(gateway, rules) == ""
        assert nft(gateway, rules) == ""  # the table replaces itself: loading twice is fine
        with echo_server(gateway, DNP3_PORT, MMS_PORT), echo_server(inside.name, NODE_PORT, OTHER_PORT):
            probes = {
                (space.name, protocol): space.peer("probe", space.gateway, str(port), protocol)
                for space in (inside, outside)
                for protocol, port in (("dnp3", DNP3_PORT), ("iec61850", MMS_PORT))
            }
            to_node = reaches(gateway, inside.address, NODE_PORT)
            to_other = reaches(gateway, inside.address, OTHER_PORT)
    for protocol in ("dnp3", "iec61850"):
        assert probes[(inside.name, protocol)]["answer"] > 0
        assert probes[(outside.name, protocol)]["connected"] is False  # dropped: no answer at all
    assert to_node and not to_other
