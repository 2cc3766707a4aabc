"""The `northbound.iec61850` section: defaults, and every mistake reported at its file:line:column
(through `socgw validate` as an integrator meets it), and `socgw icd` for a config without a server."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from gateway.config import ConfigError, SiteConfig, load_config
from gateway.northbound.iec61850 import create
from gateway.northbound.iec61850.settings import BUFFERED_REPORT_PACKS, DEFAULT_PORT
from tests.conftest import PROFILES, free_port, socgw_command

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

NODES = """nodes:
  - { id: pack-01, host: 127.0.0.1, port: 15020, unit: 1, profile: microstore/mp2000 }
  - { id: pack-02, host: 127.0.0.1, port: 15021, unit: 1, profile: microstore/mp2000 }
"""


def config_with(tmp_path: Path, northbound: str, nodes: str = NODES) -> SiteConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"{nodes}status:\n  socket: {tmp_path / 'status.sock'}\n{northbound}", encoding="utf-8")
    return load_config(path, [PROFILES])


def problems(config: SiteConfig) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        create(config, lambda update, apply=True: None)
    return [str(problem) for problem in caught.value.problems]


def test_defaults_and_absent_or_disabled_sections(tmp_path: Path) -> None:
    assert create(config_with(tmp_path, ""), lambda update, apply=True: None) is None
    disabled = config_with(tmp_path, "northbound:\n  iec61850: {enabled: false}\n")
    assert create(disabled, lambda update, apply=True: None) is None
    adapter = create(config_with(tmp_path, "northbound:\n  iec61850: {}\n"), lambda update, apply=True: None)
    assert adapter is not None
    assert (adapter.settings.host, adapter.settings.port, adapter.plan.ied_name) == (
        "127.0.0.1",
        DEFAULT_PORT,
        "SOCGW",
    )
    assert adapter.settings.tls is None
    assert [device.domain for device in adapter.plan.devices] == [
        "SOCGWFLEET",
        "SOCGWPACK_01",
        "SOCGWPACK_02",
    ]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{prot: 102}", "unknown key `prot`"),
        ("{port: 70000}", "`port` must be a whole number 1..65535"),
        ("{host: gateway.local}", "`host` must be an IP address"),
        ("{ied_name: SOC-GW}", "`ied_name` must be letters, digits and '_'"),
        ("{map: nowhere}", "no IEC 61850 map named `nowhere`"),
        ("{tls: {ca: ca.pem}}", "`tls` needs `cert`"),
    ],
)
def test_mistakes_name_their_line(tmp_path: Path, section: str, expected: str) -> None:
    config = config_with(tmp_path, f"northbound:\n  iec61850: {section}\n")
    found = problems(config)
    assert any(expected in problem for problem in found), found
    assert all(problem.startswith(f"{config.path}:7:") for problem in found), found


def test_node_ids_that_make_the_same_logical_device_are_refused(tmp_path: Path) -> None:
    nodes = NODES + "  - { id: pack_01, host: 127.0.0.1, port: 15022, unit: 1, profile: microstore/mp2000 }\n"
    config = config_with(tmp_path, "northbound:\n  iec61850: {}\n", nodes)
    found = problems(config)
    assert len(found) == 1
    assert found[0].startswith(f"{config.path}:4:")
    assert "node `pack_01` would be IEC 61850 logical device PACK_01" in found[0]


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    section = "northbound:\n  iec61850:\n    tls: {ca: ca.pem, cert: gw.pem, key: gw.key}\n"
    found = problems(config_with(tmp_path, section))
    assert sorted(found) == sorted(
        [
            f"{tmp_path / 'gateway.yaml'}:8:29: TLS `cert` file {tmp_path / 'gw.pem'} does not exist",
            f"{tmp_path / 'gateway.yaml'}:8:42: TLS `key` file {tmp_path / 'gw.key'} does not exist",
        ]
    )


def test_socgw_validate_reports_the_section(tmp_path: Path) -> None:
    config = config_with(tmp_path, "northbound:\n  iec61850:\n    port: 0\n")
    result = subprocess.run(
        socgw_command("validate", "-c", config.path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert f"{config.path}:8:11: `port` must be a whole number 1..65535, not 0" in result.stderr


def test_socgw_icd_without_a_server_says_so(tmp_path: Path) -> None:
    config = config_with(tmp_path, "")
    result = subprocess.run(
        socgw_command("icd", "-c", config.path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "no enabled `northbound.iec61850` section" in result.stderr


@pytest.mark.parametrize(("map_name", "warned"), [("default", True), ("large", False)])
def test_a_large_fleet_with_a_buffered_report_per_pack_is_told_to_use_the_large_map(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, map_name: str, warned: bool
) -> None:
    packs = BUFFERED_REPORT_PACKS + 1
    nodes = "nodes:\n" + "".join(
        f"  - {{id: pack-{i:03d}, host: 127.0.0.1, port: {20000 + i}, unit: 1, profile: microstore/mp2000}}\n"
        for i in range(1, packs + 1)
    )
    section = f"northbound:\n  iec61850: {{port: {free_port()}, map: {map_name}}}\n"
    adapter = create(config_with(tmp_path, section, nodes), lambda update, apply=True: None)
    assert adapter is not None
    with caplog.at_level(logging.WARNING, logger="gateway.northbound.iec61850"):
        adapter.start()
        adapter.stop()
    advice = [r.getMessage() for r in caplog.records if "map: large" in r.getMessage()]
    assert bool(advice) is warned
    if warned:
        assert f"{packs} packs each have a buffered report" in advice[0]
