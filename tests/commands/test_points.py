"""`socgw points --dnp3` (the device profile) and `socgw demo` serving DNP3, as a user runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import time
from pathlib import Path

import pytest
import uvloop

from gateway.commands.points import COLUMNS
from gateway.mapping.dnp3 import load_dnp3_map
from gateway.sim.fleet import Endpoint
from tests.conftest import REPO, free_port, socgw_command
from tests.northbound.dnp3.support import connected_master, dnp3_site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

DEMO_START_S = 60.0


def three_node_config(tmp_path: Path, dnp3: dict[str, object]) -> Path:
    nodes = [
        Endpoint(f"pack-0{n}", "microstore/mp2000", "1.4.0", "127.0.0.1", 15020 + n, 1) for n in (1, 2, 3)
    ]
    return Path(dnp3_site_config(tmp_path, nodes, dnp3).path)


def points(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        socgw_command("points", *args), capture_output=True, text=True, timeout=60, check=False
    )


def test_points_prints_the_device_profile_as_markdown_and_csv(tmp_path: Path) -> None:
    config = three_node_config(tmp_path, {"port": 20001, "rated_power_w": 3600})
    expected = len(load_dnp3_map(REPO / "mappings/dnp3/default.yaml").expand(["a", "b", "c"]))

    markdown = points("--dnp3", "-c", str(config))
    assert markdown.returncode == 0, markdown.stderr
    rows = [line for line in markdown.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| " + " | ".join(COLUMNS) + " |"
    assert len(rows) - 1 == expected
    assert "| 93 | AO | CDPowerTarget |" in markdown.stdout
    assert "| 1015 | AI | bank3.Soc | pack-03: state of charge | 0.1 | % | 1 | 5 |" in markdown.stdout
    assert "3600 W (configured)" in markdown.stdout

    table = points("--dnp3", "--format", "csv", "-c", str(config))
    assert table.returncode == 0, table.stderr
    parsed = list(csv.reader(io.StringIO(table.stdout)))
    assert tuple(parsed[0]) == COLUMNS and len(parsed) - 1 == expected
    by_key = {(row[1], int(row[0])): row for row in parsed[1:]}
    assert by_key[("AI", 961)][4:8] == ["0.1", "%", "1", "5"]
    assert by_key[("AI", 44)][4] == "-1"  # AN2018: charging power is negative
    assert by_key[("AO", 93)][4] == "0.1 % of rated power" and by_key[("AO", 93)][8].startswith("-1000..1000")
    assert by_key[("AO", 100)][8] == "0..1000, reserve + hysteresis < ceiling"
    assert by_key[("AI", 537)][8] == ""  # inputs are not written
    assert by_key[("BO", 1102)][2] == "control2.Maintenance"


def test_points_reports_a_broken_map_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        'map_version: "1.0.0"\nmax_nodes: 4\nanalog_inputs:\n'
        '  - { index: 47, name: Soc, source: fleet.mean_soc, scale: 0.1, unit: "%", class: 1, deadband: 5 }\n'
    )
    result = points("--dnp3", "-c", str(three_node_config(tmp_path, {"map": str(broken)})))
    assert result.returncode == 2
    assert f"{broken}:4:" in result.stderr and "fleet.mean_soc_pct" in result.stderr


def test_points_without_a_dnp3_section_says_what_to_add(tmp_path: Path) -> None:
    config = three_node_config(tmp_path, {"enabled": False})
    result = points("--dnp3", "-c", str(config))
    assert result.returncode == 2 and "northbound" in result.stderr


def test_demo_serves_dnp3_to_a_master(tmp_path: Path) -> None:
    dnp3_port = free_port()
    command = socgw_command(
        "demo", "--no-ui", "--duration", "20", "--packs", "2", "--base-port", str(free_port()),
        "--dnp3-port", str(dnp3_port), "--mms-port", str(free_port()),
    )  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + DEMO_START_S
        while time.monotonic() < deadline:  # the first status line: the gateway is cycling
            line = process.stdout.readline()
            assert line, f"the demo exited with {process.wait()}"
            if line.startswith("{") and all(n["quality"] == "good" for n in json.loads(line)["nodes"]):
                break

        async def poll() -> tuple[float, int]:
            async with connected_master(dnp3_port) as master:  # outstation 10, master 1
                await master.integrity_poll()
                soc = master.handler.analog_inputs[47]
                return master.handler.analog_inputs[27].value, soc.quality

        batteries, soc_quality = uvloop.run(asyncio.wait_for(poll(), 30))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert batteries == 2.0
    assert soc_quality & 0x01
