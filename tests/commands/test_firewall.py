"""`socgw firewall`: the ruleset names each northbound port with its allow-list and each node's Modbus
port, and nothing else; a bad config is reported like `socgw validate` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.commands.firewall import ruleset
from gateway.config import load_config
from tests.conftest import PROFILES

CONFIG = """\
site: {name: firewall-test, cycle_ms: 100}
nodes:
  - {id: pack-01, host: 10.20.0.11, port: 502, profile: microstore/mp2000}
  - {id: pack-02, host: 10.20.0.12, port: 1502, profile: microstore/mp2000, transport: rtu-over-tcp}
  - {id: pack-03, host: bms-3.site.example, port: 502, profile: microstore/mp2000}
  - {id: pack-04, transport: serial, device: /dev/ttyUSB0, unit: 4, profile: microstore/mp2000}
northbound:
  dnp3: {host: 10.1.2.1, port: 20000, allow: [10.1.2.7/32, "fd00:1::/64"]}
  iec61850: {host: 10.1.2.1, port: 102, allow: [10.1.2.0/28]}
  web: {port: 8080}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_each_port_admits_its_allow_list_and_the_gateway_reaches_only_its_nodes(tmp_path: Path) -> None:
    text = ruleset(load_config(write(tmp_path, CONFIG), [PROFILES]), "socgw", "gateway.yaml")
    assert "set dnp3_allow_v4 { type ipv4_addr; flags interval; elements = { 10.1.2.7/32 }; }" in text
    assert "set dnp3_allow_v6 { type ipv6_addr; flags interval; elements = { fd00:1::/64 }; }" in text
    assert "set iec61850_allow_v4 { type ipv4_addr; flags interval; elements = { 10.1.2.0/28 }; }" in text
    assert "set web_allow_v4 { type ipv4_addr; flags interval; elements = { 127.0.0.0/8 }; }" in text
    for port, name in ((20000, "dnp3"), (102, "iec61850"), (8080, "web")):
        assert f"tcp dport {port} ip saddr @{name}_allow_v4 accept" in text
        assert f"tcp dport {port} counter drop" in text
    assert "ip daddr 10.20.0.11 tcp dport 502 accept  # node pack-01" in text
    assert "ip daddr 10.20.0.12 tcp dport 1502 accept  # node pack-02" in text
    assert "ip daddr bms-3.site.example tcp dport 502 accept" in text
    assert "udp dport 53 accept" in text  # a node given by name needs DNS
    assert "pack-04" not in text  # a serial node needs no network
    assert 'meta skuid != "socgw" accept' in text
    assert text.index("table inet socgw\ndelete table inet socgw") < text.index("table inet socgw {")


def test_a_bad_allow_list_is_reported_at_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CONFIG.replace("allow: [10.1.2.0/28]", "allow: [scada]"))
    assert main(["firewall", "-c", str(path)]) == 2
    printed = capsys.readouterr()
    assert f"{path}:9:" in printed.err and "'scada' is not an IP network" in printed.err
    assert printed.out == ""
