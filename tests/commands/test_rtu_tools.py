"""`socgw read`, `write` and `discover` on RTU lines: through a converter (RTU over TCP) and on a serial
port (the simulator's pseudo-terminal); what discover prints is a site config that loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.sim.rtu import RtuLine
from tests.conftest import REPO

pytestmark = pytest.mark.wire

MP2000 = "microstore/mp2000"


def test_read_and_write_through_an_rtu_over_tcp_converter(start_sim_fleet: Any, capsys: Any) -> None:
    fleet = start_sim_fleet(packs=3, speed=0)
    line: RtuLine = fleet.run(fleet.fleet.open_line(host="127.0.0.1"))
    target = f"127.0.0.1:{line.port}/2"

    assert main(["read", target, "soc_pct", "--profile", MP2000, "--transport", "rtu-over-tcp"]) == 0
    assert "soc_pct = 55 %" in capsys.readouterr().out

    assert (
        main(["write", target, "setpoint_w", "-250", "--profile", MP2000, "--transport", "rtu-over-tcp"]) == 0
    )
    assert "setpoint_w = -250 W" in capsys.readouterr().out
    assert fleet.snapshot("pack-02").state.setpoint_w == pytest.approx(-250.0)
    assert fleet.snapshot("pack-01").state.setpoint_w == pytest.approx(0.0)

    # The same port spoken to as Modbus TCP: RTU answers are no MBAP frames, and the tool says so.
    assert main(["read", target, "soc_pct", "--profile", MP2000, "--timeout-ms", "300"]) == 1
    assert "E_MB_TIMEOUT" in capsys.readouterr().err


def test_read_and_discover_on_a_serial_line(start_sim_fleet: Any, capsys: Any, tmp_path: Path) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)
    line: RtuLine = fleet.run(fleet.fleet.open_line(baud=19200))
    serial = ["--serial", line.device, "--baud", "19200"]

    assert main(["read", "1", "soc_pct", "--profile", MP2000, *serial]) == 0
    assert "soc_pct = 85 %" in capsys.readouterr().out

    assert main(["discover", "--units", "1-4", "--timeout-ms", "100", *serial]) == 0
    nodes = capsys.readouterr().out
    assert nodes.count('transport: "serial"') == 2, nodes
    config = tmp_path / "gateway.yaml"
    config.write_text(nodes)
    loaded = load_config(config, [REPO / "profiles"]).nodes
    assert [(n.host, n.unit, n.baud, n.profile.key) for n in loaded] == [
        (line.device, 1, 19200, MP2000),
        (line.device, 2, 19200, MP2000),
    ]


def test_transport_options_that_contradict_each_other_are_refused(capsys: Any) -> None:
    argv = [
        "read",
        "1",
        "soc_pct",
        "--profile",
        MP2000,
        "--serial",
        "/dev/null",
        "--transport",
        "rtu-over-tcp",
    ]
    assert main(argv) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["read", "x1", "soc_pct", "--profile", MP2000, "--serial", "/dev/ttyS0"]) == 2
    assert "TARGET is the unit id" in capsys.readouterr().err


def test_profile_check_through_a_converter_and_on_a_serial_line(start_sim_fleet: Any, capsys: Any) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)
    converter: RtuLine = fleet.run(fleet.fleet.open_line(host="127.0.0.1"))
    check = ["profile", "check", MP2000, "--unit", "2"]
    assert (
        main([*check, "--host", "127.0.0.1", "--port", str(converter.port), "--transport", "rtu-over-tcp"])
        == 0
    )
    assert "0 problem(s)" in capsys.readouterr().out

    serial: RtuLine = fleet.run(fleet.fleet.open_line(baud=19200))
    assert main([*check, "--serial", serial.device, "--baud", "19200"]) == 0
    out = capsys.readouterr().out
    assert f"against {serial.device}" in out and "0 problem(s)" in out

    assert main([*check, "--serial", serial.device, "--host", "127.0.0.1"]) == 2  # one way to reach it
    assert "--host HOST" in capsys.readouterr().err
