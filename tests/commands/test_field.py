"""`socgw discover`, `socgw read`, `socgw write` and `socgw profile check` against simulated packs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.commands.field import UsageError, parse_target, parse_units
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Version
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import Scenario, make_pack
from tests.conftest import PROFILES

MP2000 = "microstore/mp2000"


def profile_check(*args: str) -> int:
    """`socgw profile check ARGS`, through the real command line."""
    return main(["profile", "check", *args])


def test_targets_and_unit_ranges_parse() -> None:
    target = parse_target("10.0.0.7:1502/3")
    assert target is not None and (target.host, target.port, target.unit) == ("10.0.0.7", 1502, 3)
    default = parse_target("10.0.0.7")
    assert default is not None and (default.port, default.unit) == (502, 1)
    v6 = parse_target("[::1]:502/2")
    assert v6 is not None and v6.host == "::1"
    assert parse_target("pack-01") is None  # a node id
    assert parse_units("1-3,7,2") == [1, 2, 3, 7]
    with pytest.raises(UsageError, match="ranges"):
        parse_units("5-1")


def test_discover_finds_and_identifies_packs_on_loopback(
    profile_library: ProfileLibrary, free_tcp_port: int, capsys: Any
) -> None:
    profiles = [MP2000, MP2000, "rackcell/rbms-x", "sunspec/battery-802"]
    packs = tuple(
        make_pack(
            f"pack-{i}",
            profile_library.get(key),
            index=i,
            host=f"127.0.0.{i + 2}",
            port=free_tcp_port,
            firmware=Version(1, 2) if key == "rackcell/rbms-x" else None,
        )
        for i, key in enumerate(profiles)
    )
    # Not `start_sim_fleet`: that moves every pack to 127.0.0.1 on its own port; here they share one port
    # on 127.0.0.2..5. The context manager stops the fleet.
    with FleetThread(Scenario(packs)):
        port = str(free_tcp_port)
        status = main(["discover", "127.0.0.0/29", "--port", port, "--units", "1-3", "--timeout-ms", "1000"])

    out = capsys.readouterr().out
    assert status == 0, out
    nodes = yaml.safe_load(out)["nodes"]
    assert [(n["host"], n["port"], n["unit"], n["profile"]) for n in nodes] == [
        (f"127.0.0.{i + 2}", free_tcp_port, 1, key) for i, key in enumerate(profiles)
    ]
    assert nodes[0]["id"] == "mp2000-127-0-0-2"
    assert "# firmware 1.4.0, serial SIM00001" in out
    assert "# firmware 1.2.0, serial SIM00003" in out


def test_discover_refuses_huge_ranges(capsys: Any) -> None:
    assert main(["discover", "10.0.0.0/8"]) == 2
    assert "--force" in capsys.readouterr().err


def test_read_and_write_round_trip_through_a_simulated_pack(sim_fleet: Any, capsys: Any) -> None:
    endpoint = sim_fleet.endpoint("pack-02")
    target = f"{endpoint.host}:{endpoint.port}/{endpoint.unit_id}"

    assert main(["read", target, "soc_pct", "state", "--profile", MP2000, "--raw"]) == 0
    out = capsys.readouterr().out
    assert "soc_pct = 65 %" in out and "raw input register 0" in out and "[650]" in out
    assert "state = 4 (idle)" in out

    assert main(["write", target, "setpoint_w", "-250", "--profile", MP2000]) == 0
    assert "setpoint_w = -250 W" in capsys.readouterr().out
    assert sim_fleet.snapshot("pack-02").state.setpoint_w == pytest.approx(-250.0)

    assert main(["write", target, "setpoint_w", "-250", "--profile", MP2000]) == 0
    assert "nothing written" in capsys.readouterr().out

    assert main(["write", target, "setpoint_w", "9999", "--profile", MP2000]) == 1
    assert "outside its write bounds" in capsys.readouterr().err
    assert sim_fleet.snapshot("pack-02").state.setpoint_w == pytest.approx(-250.0)


def test_node_ids_need_the_site_config_and_work_with_it(sim_fleet: Any, tmp_path: Path, capsys: Any) -> None:
    assert main(["read", "pack-01", "soc_pct"]) == 2
    assert "-c gateway.yaml" in capsys.readouterr().err
    endpoint = sim_fleet.endpoint("pack-01")
    config = tmp_path / "gateway.yaml"
    node = f"{{id: pack-01, host: {endpoint.host}, port: {endpoint.port}, unit: 1, profile: {MP2000}}}"
    config.write_text(f"site: {{name: test}}\nnodes:\n  - {node}\n")
    assert main(["read", "pack-01", "soc_pct", "-c", str(config)]) == 0
    assert "soc_pct = 85 %" in capsys.readouterr().out


def test_profile_check_passes_the_right_profile(sim_fleet: Any, capsys: Any) -> None:
    endpoint = sim_fleet.endpoint("pack-01")
    status = profile_check("--host", endpoint.host, "--port", str(endpoint.port), MP2000)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "0 problem(s)" in out and "soc_pct" in out


def test_profile_check_flags_a_profile_of_another_device(sim_fleet: Any, capsys: Any) -> None:
    endpoint = sim_fleet.endpoint("pack-01")
    assert profile_check("--host", endpoint.host, "--port", str(endpoint.port), "rackcell/rbms-x") == 1
    assert "PROBLEM: " in capsys.readouterr().out


def test_profile_check_flags_a_wrong_scale(sim_fleet: Any, tmp_path: Path, capsys: Any) -> None:
    shipped = (PROFILES / "microstore" / "mp2000.yaml").read_text()
    soc_line = "soc_pct: { table: input, address: 30001, type: u16, scale: 0.1,"
    assert soc_line in shipped
    wrong = tmp_path / "mp2000.yaml"
    wrong.write_text(shipped.replace(soc_line, soc_line.replace("scale: 0.1", "scale: 1")))
    endpoint = sim_fleet.endpoint("pack-01")

    assert profile_check("--host", endpoint.host, "--port", str(endpoint.port), str(wrong)) == 1
    out = capsys.readouterr().out
    soc_row = next(line for line in out.splitlines() if line.startswith("soc_pct "))
    assert "PROBLEM: 850 % is outside the plausible 0..100" in soc_row
