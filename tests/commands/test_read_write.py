"""`socgw read` and `socgw write` against simulated packs."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cli import main

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"


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
