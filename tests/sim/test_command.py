"""`socgw simulate` as a subprocess, and wire checks of the simulator with mbpoll (an independent client)."""

from __future__ import annotations

import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.profiles import codec
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Point, Version
from tests.conftest import SCENARIOS, StartFleet, StartProcess, socgw_command

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"
MBPOLL_TIMEOUT_S = 20.0
CAPTURE_START_TIMEOUT_S = 30.0
_MBPOLL_VALUE = re.compile(r"^\[(\d+)\]:\s+(-?[\d.]+)")


def mbpoll(port: int, *options: str, write: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """mbpoll against unit 1 on 127.0.0.1:port: one poll, zero-based addresses; `write` values if any."""
    command = [MBPOLL, "-m", "tcp", "-a", "1", "-0", "-1", "-p", str(port), *options, "127.0.0.1"]
    if write:
        command += ["--", *write]
    return subprocess.run(command, capture_output=True, text=True, timeout=MBPOLL_TIMEOUT_S, check=False)


def mbpoll_read(port: int, *options: str) -> dict[int, float]:
    """Values mbpoll printed, by address."""
    result = mbpoll(port, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    found = {}
    for line in result.stdout.splitlines():
        match = _MBPOLL_VALUE.match(line.strip())
        if match:
            found[int(match[1])] = float(match[2])
    return found


def test_simulate_packs_prints_where_each_pack_listens_and_stops_on_sigterm(
    start_sim_process: StartProcess,
) -> None:
    sim = start_sim_process("--packs", "3", "--base-port", "0", "--speed", "5")
    assert [e.pack_id for e in sim.endpoints] == ["pack-01", "pack-02", "pack-03"]
    for endpoint, line in zip(sim.endpoints, sim.output, strict=False):
        assert re.fullmatch(r"pack-0\d microstore/mp2000 fw 1\.4\.0 127\.0\.0\.1:\d+ unit 1", line), line
        assert endpoint.port > 0
    assert len({e.port for e in sim.endpoints}) == 3
    assert sim.stop() == 0
    assert "simulator stopped" in sim.read_rest()


def test_simulate_stops_cleanly_on_sigint(start_sim_process: StartProcess) -> None:
    sim = start_sim_process("--packs", "1", "--base-port", "0")
    sim.process.send_signal(signal.SIGINT)
    assert sim.process.wait(10) == 0


def test_simulate_serves_a_scenario_file(start_sim_process: StartProcess, tmp_path: Path) -> None:
    scenario = tmp_path / "fleet.yaml"
    text = (
        (SCENARIOS / "default.yaml").read_text(encoding="utf-8").replace("base_port: 15020", "base_port: 0")
    )
    scenario.write_text(text, encoding="utf-8")
    sim = start_sim_process("--scenario", str(scenario))
    described = [(e.pack_id, e.profile_key, e.firmware) for e in sim.endpoints]
    assert described[0] == ("pack-01", "microstore/mp2000", "1.4.0")
    assert ("rack-06", "rackcell/rbms-x", "1.5.0") in described
    assert ("ss-08", "sunspec/battery-802", "2.4.1") in described
    assert len(described) == 8
    assert sim.stop() == 0


def test_a_bad_scenario_is_reported_with_file_and_line(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("packs:\n  - id: a\n    profile: nosuch/thing\n", encoding="utf-8")
    result = subprocess.run(
        socgw_command("simulate", "--scenario", str(scenario)),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"{scenario}:3:14:" in result.stderr
    assert "nosuch/thing" in result.stderr


def test_a_taken_port_is_reported(start_sim_process: StartProcess) -> None:
    first = start_sim_process("--packs", "1", "--base-port", "0")
    port = first.endpoints[0].port
    result = subprocess.run(
        socgw_command("simulate", "--packs", "1", "--base-port", str(port)),
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr


# ---- mbpoll ----------------------------------------------------------------------------------------


def microstore_points(profile_library: ProfileLibrary) -> dict[str, Point]:
    profile = profile_library.get("microstore/mp2000")
    variant = profile.variant_for(Version(1, 4))
    assert variant is not None
    return {**profile.identify.points, **variant.points}


def test_mbpoll_reads_what_the_profile_encodes(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=4, speed=0)
    points = microstore_points(profile_library)
    port = fleet.endpoint("pack-02").port
    soc = points["soc_pct"]
    words = mbpoll_read(port, "-t", "3", "-r", str(soc.address), "-c", "24")  # -t 3: input registers
    # SOC 65 % at scale 0.1 is raw 650; capacity 2048 Wh as u32 high word first.
    assert words[soc.address] == 650 == round(65.0 / soc.scale)
    assert codec.encode(soc, 65.0) == [650]
    capacity = points["capacity_wh"]
    assert (
        [words[capacity.address], words[capacity.address + 1]] == codec.encode(capacity, 2048.0) == [0, 2048]
    )
    temp = points["temp_c"]
    assert words[temp.address] == round(fleet.snapshot("pack-02").state.temp_c / temp.scale)
    device_code = points["x_device_code"]
    assert mbpoll_read(port, "-t", "3", "-r", str(device_code.address), "-c", "1") == {
        device_code.address: 2000
    }


def test_mbpoll_writes_the_setpoint_and_reads_the_power(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    points = microstore_points(profile_library)
    port = fleet.endpoint("pack-01").port
    setpoint, power = points["setpoint_w"], points["power_w"]
    # i32, high word first (mbpoll -B); negative = charge.
    written = mbpoll(port, "-t", "4:int", "-B", "-r", str(setpoint.address), write=["-700"])
    assert written.returncode == 0, written.stdout + written.stderr
    assert fleet.snapshot("pack-01").state.setpoint_w == -700.0
    # f32 with the low word first: mbpoll's default word order.
    assert mbpoll_read(port, "-t", "3:float", "-r", str(power.address), "-c", "1") == {power.address: -700.0}


def test_mbpoll_sees_the_exceptions(start_sim_fleet: StartFleet, profile_library: ProfileLibrary) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    port = fleet.endpoint("pack-01").port
    setpoint = microstore_points(profile_library)["setpoint_w"]
    too_much = mbpoll(port, "-t", "4:int", "-B", "-r", str(setpoint.address), write=["9000"])
    assert too_much.returncode != 0
    assert "Illegal data value" in too_much.stdout + too_much.stderr
    unmapped = mbpoll(port, "-t", "3", "-r", "50", "-c", "1")
    assert unmapped.returncode != 0
    assert "Illegal data address" in unmapped.stdout + unmapped.stderr


def test_the_simulator_survives_mbpoll_disconnects(start_sim_process: StartProcess) -> None:
    sim = start_sim_process("--packs", "1", "--base-port", "0")
    port = sim.endpoints[0].port
    for _ in range(3):
        assert mbpoll_read(port, "-t", "3", "-r", "0", "-c", "1")
    assert sim.stop() == 0


# ---- tshark ----------------------------------------------------------------------------------------


class Capture:
    """tshark on lo for one port, writing `path` and printing a summary line per packet."""

    def __init__(self, port: int, path: Path) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [
                "tshark",
                "-i",
                "lo",
                "-f",
                f"tcp port {port}",
                "-a",
                "duration:120",
                "-P",
                "-l",
                "-w",
                str(path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def mark(self, timeout_s: float = CAPTURE_START_TIMEOUT_S) -> None:
        """Connect from a fresh port until tshark shows that connection's SYN: every packet before it
        is then in the capture. (dumpcap starts capturing a second or two after "Capture started".)"""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                source = probe.getsockname()[1]
                probe.connect(("127.0.0.1", self.port))
            wanted = f" {source} → {self.port} [SYN]"
            line_deadline = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < line_deadline:
                try:
                    if wanted in self.lines.get(timeout=0.1):
                        return
                except queue.Empty:
                    continue
        raise AssertionError(f"tshark showed no probe connection to port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(MBPOLL_TIMEOUT_S)


def test_tshark_decodes_the_simulator_traffic_without_malformed_frames(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, tmp_path: Path
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    port = fleet.endpoint("pack-01").port
    capture = tmp_path / "sim.pcapng"
    tshark = Capture(port, capture)
    try:
        tshark.mark()
        setpoint = microstore_points(profile_library)["setpoint_w"]
        assert mbpoll_read(port, "-t", "3", "-r", "0", "-c", "24")
        assert mbpoll(port, "-t", "4:int", "-B", "-r", str(setpoint.address), write=["300"]).returncode == 0
        assert mbpoll(port, "-t", "3", "-r", "99", "-c", "1").returncode != 0  # an exception response
        assert mbpoll_read(port, "-t", "1", "-r", "0", "-c", "1")  # a discrete input (function 2)
        tshark.mark()
    finally:
        tshark.stop()

    def show(*options: str) -> str:
        command = ["tshark", "-r", str(capture), "-o", f"mbtcp.tcp.port:{port}", *options]
        result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=MBPOLL_TIMEOUT_S)
        return result.stdout

    assert show("-Y", "_ws.malformed") == ""
    functions = show("-Y", "mbtcp", "-T", "fields", "-e", "modbus.func_code", "-e", "modbus.exception_code")
    rows = [line.split("\t") for line in functions.splitlines()]
    assert ["4", ""] in rows  # read input registers, answered
    assert ["16", ""] in rows  # write multiple registers, answered
    assert ["4", "2"] in rows  # illegal data address
    assert ["2", ""] in rows
