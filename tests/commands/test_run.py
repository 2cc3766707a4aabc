"""`socgw run`, `socgw status` and `socgw demo` as a user runs them: separate processes, real signals."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import SiteConfig
from gateway.status import read_status
from tests.conftest import StartFleet, socgw_command
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

STATUS_WAIT_S = 30.0


def wait_for_status(socket_path: Path, nodes: int) -> dict[str, object]:
    deadline = time.monotonic() + STATUS_WAIT_S
    last: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            last = read_status(socket_path)
        except OSError:
            last = {}
        node_list = last.get("nodes")
        if isinstance(node_list, list) and sum(n["quality"] == "good" for n in node_list) == nodes:
            return last
        time.sleep(0.2)
    raise AssertionError(f"the gateway never reported {nodes} good nodes: {last}")


@dataclass
class GatewayProcess:
    process: subprocess.Popen[str]
    output: str = ""  # stdout and stderr, once it stopped


@contextlib.contextmanager
def gateway_process(config: SiteConfig, nodes: int) -> Iterator[GatewayProcess]:
    """`socgw run` on `config` as its own process, once it reports `nodes` good nodes; stopped with SIGTERM
    when the block ends (then `output` holds what it wrote), killed if the block fails."""
    process = subprocess.Popen(
        socgw_command("run", "-c", str(config.path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    gateway = GatewayProcess(process)
    try:
        wait_for_status(config.status_socket, nodes)
        yield gateway
        process.send_signal(signal.SIGTERM)
        gateway.output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_run_serves_status_and_stops_cleanly_on_sigterm(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=3, speed=1.0)
    config = site_config(tmp_path, fleet.endpoints, "command:\n  default_request_w: 900\n")
    with gateway_process(config, 3) as gateway:
        document = read_status(config.status_socket)
        assert document["request_w"] == 900.0
        time.sleep(0.5)  # a few cycles: the setpoints reach the packs
        assert abs(sum(fleet.snapshot(e.pack_id).state.setpoint_w for e in fleet.endpoints) - 900.0) < 1.0
        shown = subprocess.run(
            socgw_command("status", "--socket", str(config.status_socket)),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert "pack-01" in shown.stdout and "fleet SOC" in shown.stdout
    assert gateway.process.returncode == 0, gateway.output
    assert "stopped cleanly" in gateway.output
    assert [fleet.snapshot(e.pack_id).state.setpoint_w for e in fleet.endpoints] == [0.0, 0.0, 0.0]
    assert not config.status_socket.exists()


def test_status_without_a_gateway_says_what_to_check(tmp_path: Path) -> None:
    result = subprocess.run(
        socgw_command("status", "--socket", str(tmp_path / "none.sock")),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "none.sock" in result.stderr and "socgw run" in result.stderr


def test_run_refuses_a_bad_config_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "nodes:\n  - { id: 1bad, host: 127.0.0.1, port: 502, unit: 1, profile: microstore/mp2000 }\n"
    )
    result = subprocess.run(
        socgw_command("run", "-c", str(path)), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert f"{path}:2:" in result.stderr


def test_demo_without_ui_balances_the_default_fleet(free_tcp_ports: Callable[[int], list[int]]) -> None:
    dnp3_port, mms_port, base_port = free_tcp_ports(3)
    result = subprocess.run(
        socgw_command(
            *("demo", "--no-ui", "--duration", "6", "--packs", "4", "--base-port", str(base_port)),
            *("--dnp3-port", str(dnp3_port), "--mms-port", str(mms_port)),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(documents) >= 3
    last = documents[-1]
    assert len(last["nodes"]) == 4
    assert all(node["quality"] == "good" for node in last["nodes"])
    assert last["request_w"] > 0 and abs(last["served_w"] - last["request_w"]) < 1.0
