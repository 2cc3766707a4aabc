"""What a new user meets in the first hour: the setup, the README's commands, the demo and the field tools."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from gateway.cli import main
from gateway.commands.discover import parse_ports
from gateway.commands.view import rounded, status_renderable
from tests.conftest import REPO, StartProcess, free_port, socgw_command

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

DEMO_TIMEOUT_S = 120.0


def _makefile_debian_packages() -> list[str]:
    match = re.search(r"^DEBIAN_PACKAGES\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match is not None
    return match[1].split()


def test_readme_names_the_debian_packages_the_setup_installs() -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"install the Debian packages the project uses\s*\(([^)]*)\)", readme)
    assert match is not None, "README no longer says which Debian packages the setup installs"
    assert re.findall(r"`([^`]+)`", match[1]) == _makefile_debian_packages()


def test_deb_build_dependencies_are_named_in_the_packaging() -> None:
    control = (REPO / "packaging/debian/control").read_text()
    build_depends = re.search(r"^Build-Depends:\n((?: .*\n)+)", control, re.MULTILINE)
    assert build_depends is not None
    named = {entry.strip().split()[0] for entry in build_depends[1].split(",") if entry.strip()}
    # What packaging/debian/rules runs: dh, Debian's python3.11 with venv, pip and wheel building.
    assert {"debhelper-compat", "python3.11", "python3.11-venv", "python3-pip", "python3-wheel"} <= named
    build = (REPO / "packaging/build").read_text()
    # The build installs what the control file names (build-essential comes with apt-get build-dep),
    # so the two cannot drift apart.
    assert "dpkg-checkbuilddeps packaging/debian/control" in build
    assert "build-dep -y -qq --no-install-recommends ./packaging" in build


def test_the_demo_view_at_80_columns_shows_every_node_id_whole() -> None:
    ids = ["pack-01", "rack-05", "ss-08", "mp2000-127-0-0-1-15023", "rbms-x-192-168-10-201-u3"]
    document = {
        "site": "demo",
        "cycle": 1234,
        "request_w": 9000.0,
        "served_w": 8999.99,
        "unserved_w": 0.0,
        "alarms": ["E_THERMAL_EXCURSION"],
        "fleet": {"mean_soc_pct": 51.2, "soc_spread_pct": 40.1},
        "timing": {"overruns": 0, "steps_ms": {"total": {"p50": 3.2, "p99": 9.9}}},
        "nodes": [
            {
                "id": node_id,
                "quality": "good",
                "error": "E_MB_CONN_REFUSED" if index == 2 else None,
                "soc_pct": 10.0 + index * 20,
                "power_w": -12345.0,
                "setpoint_w": -12345.0,
                "temp_c": 31.5,
                "mode": "bypassed_thermal" if index == 1 else "active",
                "alarms": ["E_THERMAL_EXCURSION"] if index == 1 else [],
            }
            for index, node_id in enumerate(ids)
        ],
    }
    console = Console(width=80, record=True, color_system=None)
    with console.capture() as capture:
        console.print(status_renderable(document, console.width))
    screen = capture.get()
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= 80, screen
    for node_id in ids:  # whole, on one line
        assert any(node_id in line for line in lines), f"{node_id} cut:\n{screen}"
    assert "hot" in screen and "act" in screen and "E_MB_CONN_REFUSED" in screen.replace("\n", "")


def test_json_output_carries_no_float_noise() -> None:
    noisy = {"unserved_w": -3.6e-12, "nodes": [{"temp_c": 29.400000000000002}], "cycle": 7, "id": "p"}
    assert rounded(noisy) == {"unserved_w": 0.0, "nodes": [{"temp_c": 29.4}], "cycle": 7, "id": "p"}
    assert "-0.0" not in json.dumps(rounded(noisy))


def test_points_and_icd_without_a_config_say_how_to_get_one(tmp_path: Path, capsys: Any) -> None:
    missing = tmp_path / "gateway.yaml"
    for command in (["points", "--dnp3"], ["icd"], ["validate"]):
        assert main([*command, "-c", str(missing)]) == 2
        err = capsys.readouterr().err
        assert "-c packaging/gateway.yaml" in err, err
        assert ":1:1" not in err, err


def test_icd_counts_one_logical_device_in_the_singular(tmp_path: Path, capsys: Any) -> None:
    # The packaged config has no nodes: the model is the fleet's logical device alone.
    assert main(["icd", "-c", str(REPO / "packaging/gateway.yaml"), "-o", str(tmp_path / "x.icd")]) == 0
    assert "1 logical device," in capsys.readouterr().err


def test_read_on_a_closed_port_does_not_promise_a_retry(capsys: Any) -> None:
    target = f"127.0.0.1:{free_port()}/1"
    assert main(["read", target, "soc_pct", "--profile", "microstore/mp2000"]) == 1
    err = capsys.readouterr().err
    assert "E_MB_CONN_REFUSED" in err
    assert "retrying" not in err and "backoff" not in err
    assert "gave up" in err


def test_discover_takes_a_port_range_and_proposes_unique_ids(
    start_sim_process: StartProcess, capsys: Any
) -> None:
    assert parse_ports("15020-15023") == [15020, 15021, 15022, 15023]
    assert parse_ports("502,1502") == [502, 1502]
    base = free_port()
    sim = start_sim_process("--packs", "3", "--base-port", str(base))
    assert [e.port for e in sim.endpoints] == [base, base + 1, base + 2]
    status = main(["discover", "127.0.0.1/32", "--port", f"{base}-{base + 2}", "--units", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    nodes = yaml.safe_load(out)["nodes"]
    assert [node["port"] for node in nodes] == [base, base + 1, base + 2]
    ids = [node["id"] for node in nodes]
    assert len(set(ids)) == 3, ids
    assert ids[0] == f"mp2000-127-0-0-1-{base}"


def _start_demo(*args: str, ports: list[int]) -> subprocess.Popen[str]:
    dnp3_port, mms_port = ports
    return subprocess.Popen(
        socgw_command(
            *("demo", "--no-ui", "--packs", "4", "--base-port", "0"),  # ephemeral: no clash with other tests
            *("--dnp3-port", str(dnp3_port), "--mms-port", str(mms_port), *args),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,  # its own process group, as a terminal gives it: Ctrl-C reaches the group
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_ctrl_c_in_the_demo_prints_no_shutdown_warnings(free_tcp_ports: Callable[[int], list[int]]) -> None:
    demo = _start_demo(ports=free_tcp_ports(2))
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        good = 0
        while good < 4 and time.monotonic() < deadline:  # until every pack reads good
            line = demo.stdout.readline()
            assert line, "the demo ended early"
            if line.startswith("{"):
                good = sum(node["quality"] == "good" for node in json.loads(line).get("nodes", []))
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        out, err = demo.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 0, err
    assert "E_MB_" not in out + err, err
    assert "WARNING" not in out + err, err


def test_a_demo_with_a_duration_does_not_say_ctrl_c_stops(free_tcp_ports: Callable[[int], list[int]]) -> None:
    demo = _start_demo("--duration", "2", ports=free_tcp_ports(2))
    out, err = demo.communicate(timeout=DEMO_TIMEOUT_S)
    assert demo.returncode == 0, err
    assert "Ctrl-C" not in err and "stops after 2 s" in err
    # JSON lines without float noise: no number carries more than 3 decimals.
    numbers = [number for line in out.splitlines() for number in _floats(json.loads(line))]
    assert numbers and all(number == round(number, 3) for number in numbers), numbers


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [number for item in value for number in _floats(item)] if isinstance(value, list) else []


def test_a_demo_with_a_bad_port_says_so_without_a_traceback(
    free_tcp_ports: Callable[[int], list[int]],
) -> None:
    demo = _start_demo("--duration", "2", "--web-port", "70000", ports=free_tcp_ports(2))
    _, err = demo.communicate(timeout=DEMO_TIMEOUT_S)
    assert demo.returncode == 1
    assert "generated config rejected" in err and "`port` must be a whole number 1..65535, not 70000" in err
    assert "Traceback" not in err
