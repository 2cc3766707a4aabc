"""What the field tools share: TARGET parsing, and node ids resolved through the site config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.commands.fieldtool import parse_target

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"


def test_targets_parse() -> None:
    target = parse_target("10.0.0.7:1502/3")
    assert target is not None and (target.host, target.port, target.unit) == ("10.0.0.7", 1502, 3)
    default = parse_target("10.0.0.7")
    assert default is not None and (default.port, default.unit) == (502, 1)
    v6 = parse_target("[::1]:502/2")
    assert v6 is not None and v6.host == "::1"
    assert parse_target("pack-01") is None  # a node id


def test_node_ids_need_the_site_config_and_work_with_it(sim_fleet: Any, tmp_path: Path, capsys: Any) -> None:
    assert main(["read", "pack-01", "soc_pct"]) == 2
    assert "-c gateway.yaml" in capsys.readouterr().err
    endpoint = sim_fleet.endpoint("pack-01")
    config = tmp_path / "gateway.yaml"
    node = f"{{id: pack-01, host: {endpoint.host}, port: {endpoint.port}, unit: 1, profile: {MP2000}}}"
    config.write_text(f"site: {{name: test}}\nnodes:\n  - {node}\n")
    assert main(["read", "pack-01", "soc_pct", "-c", str(config)]) == 0
    assert "soc_pct = 85 %" in capsys.readouterr().out
