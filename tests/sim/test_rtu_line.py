"""The simulator's RTU line: mbpoll in RTU mode on its pseudo-terminal (an independent client proves the
framing and CRC), line timing at the baud rate, and `socgw simulate --transport rtu-over-tcp`."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from typing import Any

import pytest

from gateway.cli import main
from gateway.profiles.model import Table
from gateway.sim.rtu import RtuLine
from gateway.southbound.errors import Target
from gateway.southbound.link import ModbusLink
from gateway.southbound.transport import SerialSettings, Transport, TransportKind
from tests.conftest import StartProcess
from tests.southbound.helpers import run

pytestmark = pytest.mark.wire

MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"


def mbpoll_rtu(device: str, unit: int, baud: int) -> subprocess.CompletedProcess[str]:
    """Input register 0 (SOC x 10 on the mp2000) of `unit`, one poll, no parity."""
    command = [MBPOLL, "-m", "rtu", "-b", str(baud), "-P", "none", "-a", str(unit), "-0", "-r", "0"]
    command += ["-c", "1", "-t", "3", "-1", "-o", "2", device]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_mbpoll_in_rtu_mode_reads_every_unit_on_the_pty(start_sim_fleet: Any) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)
    line: RtuLine = fleet.run(fleet.fleet.open_line(baud=9600))
    for unit, soc in ((1, 850), (2, 250)):
        result = mbpoll_rtu(line.device, unit, 9600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(rf"^\[0\]:\s+{soc}$", result.stdout, re.MULTILINE), result.stdout
    # A unit nobody has stays silent, as on RS-485: mbpoll times out.
    assert mbpoll_rtu(line.device, 7, 9600).returncode != 0


def test_answers_take_the_time_their_frames_need_at_the_baud_rate(start_sim_fleet: Any) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    line: RtuLine = fleet.run(fleet.fleet.open_line(baud=9600))
    transport = Transport(TransportKind.SERIAL, SerialSettings(9600))

    async def timed_reads() -> float:
        link = ModbusLink(Target(line.device, 0, 1, transport), timeout_s=1.0, connect_timeout_s=1.0)
        await link.open()
        try:
            started = time.monotonic()
            for _ in range(3):
                assert len(await link.read(Table.INPUT, 0, 20, 1)) == 20
            return (time.monotonic() - started) / 3
        finally:
            link.close()

    # Request 8 bytes, answer 5 + 40: 53 characters of 10 bits at 9600 baud = 55 ms on the wire.
    per_read_s = run(timed_reads())
    assert per_read_s >= 0.055


def test_simulate_serves_rtu_over_tcp_and_read_reaches_each_unit(
    start_sim_process: StartProcess, capsys: Any
) -> None:
    sim = start_sim_process(
        "--packs", "3", "--base-port", "0", "--transport", "rtu-over-tcp", "--speed", "0.001"
    )
    lines = [
        m
        for line in sim.output
        if (m := re.fullmatch(r"(\S+) .* 127\.0\.0\.1:(\d+) unit (\d) \(RTU over TCP\)", line))
    ]
    assert [(m[1], m[3]) for m in lines] == [("pack-01", "1"), ("pack-02", "2"), ("pack-03", "3")]
    port = lines[0][2]
    assert {m[2] for m in lines} == {port}
    argv = [
        "read",
        f"127.0.0.1:{port}/3",
        "soc_pct",
        "--profile",
        "microstore/mp2000",
        "--transport",
        "rtu-over-tcp",
    ]
    assert main(argv) == 0
    assert re.search(r"soc_pct = 2[45](\.\d+)? %", capsys.readouterr().out)
    assert sim.stop() == 0
