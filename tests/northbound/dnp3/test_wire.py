"""The outstation's frames as Wireshark's DNP3 dissector sees them: a captured session with polls,
controls and unsolicited responses has no malformed frame."""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import uvloop
from dnp3.master import CommandBuilder

from tests.conftest import StartFleet
from tests.northbound.dnp3.support import (
    LATCH_OFF,
    LATCH_ON,
    OUT_OF_RANGE,
    SUCCESS,
    analog_output_block,
    connected_master,
    crob_block,
    dnp3_site_config,
    running_gateway,
)

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

CAPTURE_START_S = 30.0
BLOCK_TIMEOUT_S = 1.5
BANK1_SOC = 955 + 6
# Application function codes the session must show: READ, SELECT, OPERATE, DIRECT_OPERATE,
# ENABLE_UNSOLICITED, RESPONSE, UNSOLICITED_RESPONSE.
EXPECTED_FUNCTIONS = {1, 3, 4, 5, 20, 129, 130}


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)


def start_capture(port: int, path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", str(path), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stderr, lines), daemon=True).start()
    deadline = time.monotonic() + CAPTURE_START_S
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if "Capturing on" in line:
            return process
    process.kill()
    process.wait()
    raise AssertionError(f"tshark did not start capturing: {seen}")


def tshark_read(path: Path, port: int, *args: str) -> str:
    result = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"tcp.port=={port},dnp3", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_a_captured_session_has_no_malformed_dnp3_frames(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port, "unsolicited": True})
    capture = tmp_path / "session.pcapng"

    async def session() -> list[int]:
        statuses = []
        async with running_gateway(config), connected_master(free_tcp_port) as master:
            await master.integrity_poll()
            await master.runner.request(  # dnp3py's own control encoding (one-byte indices)
                master.master.build_direct_operate(
                    CommandBuilder().add_analog(93, 100).build_direct_operate()
                )
            )
            statuses.append(await master.direct_operate(analog_output_block(93, 5000)))
            statuses.append(await master.select(crob_block(1000, LATCH_OFF)))
            statuses.append(await master.operate(crob_block(1000, LATCH_OFF)))
            statuses.append(await master.direct_operate(crob_block(1000, LATCH_ON)))
            await master.runner.enable_unsolicited()
            fleet.update_state("pack-01", soc_pct=fleet.snapshot("pack-01").state.soc_pct + 5.0)
            for _ in range(20):  # bounded: until the unsolicited SOC event arrives
                await master.runner.listen_unsolicited(timeout=0.5)
                if any(
                    index == BANK1_SOC and unsolicited for index, _, unsolicited in master.handler.analog_log
                ):
                    break
            await master.class_poll()
        return statuses

    tshark = start_capture(free_tcp_port, capture)
    try:
        statuses = uvloop.run(asyncio.wait_for(session(), timeout=60))
    finally:
        # The kernel hands captured packets over in blocks, a partly filled one only after its timeout
        # (dumpcap sets up to 1 s); a capture stopped sooner loses the end of the session.
        time.sleep(BLOCK_TIMEOUT_S)
        tshark.send_signal(signal.SIGINT)  # as Ctrl-C: tshark stops capturing and writes out what it has
        tshark.wait(timeout=30)
    assert statuses == [OUT_OF_RANGE, SUCCESS, SUCCESS, SUCCESS]
    assert tshark_read(capture, free_tcp_port, "-Y", "_ws.malformed") == ""
    functions = tshark_read(
        capture, free_tcp_port, "-Y", "dnp3.al.func", "-T", "fields", "-e", "dnp3.al.func"
    )
    seen = {int(value) for line in functions.split() for value in line.split(",")}
    assert seen >= EXPECTED_FUNCTIONS, sorted(seen)
