"""`socgw discover` against simulated packs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.commands.discover import parse_units
from gateway.commands.fieldtool import UsageError
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Version
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import Scenario, make_pack

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"


def test_unit_ranges_parse() -> None:
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
