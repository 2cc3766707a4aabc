"""`socgw balance`: the dry-run calculator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.commands import balance


def socgw_balance(*argv: str) -> int:
    """Parse and run `socgw balance ARGV` with the command's own parser, as `socgw` does."""
    parser = argparse.ArgumentParser(prog="socgw")
    balance.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["balance", *argv])
    status: int = args.handler(args)
    return status


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert socgw_balance(*argv, "--json") == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def setpoints(document: dict[str, Any]) -> dict[str, float]:
    return {node["node_id"]: node["setpoint_w"] for node in document["nodes"]}


def test_textbook_example_without_reserve_gives_600_and_300(capsys: pytest.CaptureFixture[str]) -> None:
    document = as_json(
        capsys, "--soc", "80,40", "--capacity-wh", "1000,1000", "--request-w", "900", "--reserve-pct", "0"
    )
    assert setpoints(document) == {"pack1": 600.0, "pack2": 300.0}
    assert (document["served_w"], document["unserved_w"], document["alarms"]) == (900.0, 0.0, [])
    assert document["nodes"][0] == {
        "node_id": "pack1",
        "soc_pct": 80.0,
        "usable_energy_wh": 1000.0,
        "setpoint_w": 600.0,
        "mode": "active",
        "alarms": [],
    }


def test_defaults_are_the_gateways_reserve_and_ceiling(capsys: pytest.CaptureFixture[str]) -> None:
    document = as_json(capsys, "--soc", "80,40", "--capacity-wh", "1000,1000", "--request-w", "900")
    assert document["params"] == {"reserve_pct": 10.0, "ceiling_pct": 95.0, "charge_source": "pv"}
    assert setpoints(document) == {"pack1": 630.0, "pack2": 270.0}


def test_table_shows_setpoints_modes_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    status = socgw_balance(
        "--soc",
        "80,40,12",
        "--capacity-wh",
        "1000",
        "--request-w",
        "900",
        "--reserve-pct",
        "0",
        "--temp-c",
        "25,25,40",
        "--ids",
        "north,south,hot",
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "reserve 0 %" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "600" in lines["north"] and "active" in lines["north"]
    assert "300" in lines["south"]
    assert "bypassed_thermal" in lines["hot"]
    assert "served 900 W, unserved 0 W, alarms: E_THERMAL_EXCURSION" in out


def test_limits_and_charging(capsys: pytest.CaptureFixture[str]) -> None:
    document = as_json(
        capsys,
        "--soc",
        "80,40",
        "--capacity-wh",
        "1000",
        "--soh",
        "100,50",
        "--charge-limit-w",
        "100,1000",
        "--request-w=-900",
        "--charge-source",
        "ac",
    )
    assert setpoints(document) == {"pack1": -100.0, "pack2": -800.0}
    assert document["nodes"][1]["usable_energy_wh"] == 500.0


def test_unserved_power_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    document = as_json(
        capsys, "--soc", "80,40", "--capacity-wh", "1000", "--discharge-limit-w", "200", "--request-w", "900"
    )
    assert (document["served_w"], document["unserved_w"]) == (400.0, 500.0)
    assert document["alarms"] == ["E_UNSERVED_POWER"]


def test_fleet_from_a_yaml_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "request_w: 900\n"
        "reserve_pct: 0\n"
        "nodes:\n"
        "  - {id: a, soc_pct: 80, capacity_wh: 1000}\n"
        "  - {id: b, soc_pct: 40, capacity_wh: 1000, discharge_limit_w: 5000}\n",
        encoding="utf-8",
    )
    assert setpoints(as_json(capsys, "--file", str(fleet))) == {"a": 600.0, "b": 300.0}
    # Flags win over the file's settings.
    assert setpoints(as_json(capsys, "--file", str(fleet), "--request-w", "300")) == {"a": 200.0, "b": 100.0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--soc", "80,40", "--capacity-wh", "1000,1000,1000", "--request-w", "9"],
            "--capacity-wh has 3 values",
        ),
        (["--soc", "80,40", "--request-w", "9"], "--capacity-wh is required"),
        (["--soc", "80,40", "--capacity-wh", "1000"], "give the site request with --request-w"),
        (["--soc", "80", "--capacity-wh", "1000", "--request-w", "9", "--reserve-pct", "99"], "reserve_pct"),
        (["--soc", "80,40", "--capacity-wh", "1000", "--request-w", "9", "--ids", "a"], "--ids has 1 names"),
        (
            ["--soc", "80,40", "--capacity-wh", "1000", "--request-w", "9", "--ids", "a,a"],
            "'a' appears twice",
        ),
    ],
)
def test_inconsistent_input_says_what_to_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert socgw_balance(*argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: []\n", "expected a mapping with a non-empty list 'nodes'"),
        ("nodes: [{soc_pct: 50}]\nrequest_w: 1\n", "nodes[0]: missing capacity_wh"),
        ("nodes: [{soc_pct: 50, capacity_wh: x}]\n", "nodes[0].capacity_wh: expected a finite number"),
        ("nodes: [{soc_pct: 50, capacity: 1}]\n", "nodes[0]: unknown keys ['capacity']"),
        ("nodes: [{soc_pct: 50, capacity_wh: 1}]\nreserve: 1\n", "unknown keys ['reserve']"),
        ("nodes: [{soc_pct: 50, capacity_wh: 1}]\ncharge_source: wind\n", "charge_source: expected one of"),
        ("nodes: [{soc_pct: 50, capacity_wh: 1}]\nrequest_w: lots\n", "request_w: expected a finite number"),
        ("nodes: [\n", "not valid YAML"),
    ],
)
def test_bad_fleet_files_name_the_problem(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(text, encoding="utf-8")
    assert socgw_balance("--file", str(fleet), "--request-w", "1") == 2
    err = capsys.readouterr().err
    assert str(fleet) in err
    assert message in err


def test_missing_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert socgw_balance("--file", str(tmp_path / "nope.yaml"), "--request-w", "1") == 2
    assert "cannot read" in capsys.readouterr().err


def test_per_node_flags_do_not_mix_with_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert socgw_balance("--file", str(tmp_path / "f.yaml"), "--capacity-wh", "1", "--request-w", "1") == 2
    assert "--capacity-wh cannot be combined with --file" in capsys.readouterr().err


def test_non_numbers_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        socgw_balance("--soc", "80,abc", "--capacity-wh", "1", "--request-w", "1")
    assert stopped.value.code == 2
    assert "'abc' is not a number" in capsys.readouterr().err
