"""`socgw profile check` against simulated packs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.conftest import PROFILES

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"


def profile_check(*args: str) -> int:
    """`socgw profile check ARGS`, through the real command line."""
    return main(["profile", "check", *args])


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
