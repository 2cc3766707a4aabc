"""A fault that comes and goes writes a bounded number of lines, and `socgw status` counts the rest."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from gateway.logbook import LINES_PER_WINDOW
from gateway.sim.faults import ExceptionCode, ExceptionRule
from tests.commands.test_run import gateway_process
from tests.conftest import StartFleet, socgw_command
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

FLAPPING_S = 8.0
FLIP_EVERY_S = 0.25  # slower than a cycle, so every flip is polled: ~32 changes of state


def test_a_flapping_fault_writes_a_bounded_number_of_lines(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=2, speed=1.0)
    config = site_config(tmp_path, fleet.endpoints)
    with gateway_process(config, 2) as gateway:
        failing = (ExceptionRule(ExceptionCode.SERVER_DEVICE_FAILURE),)
        flips = 0
        end = time.monotonic() + FLAPPING_S
        while time.monotonic() < end:
            fleet.set_faults("pack-01", exceptions=failing if flips % 2 == 0 else ())
            flips += 1
            time.sleep(FLIP_EVERY_S)
        fleet.clear_faults()
        shown = subprocess.run(
            socgw_command("status", "--json", "--socket", str(config.status_socket)),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        table = subprocess.run(
            socgw_command("status", "--socket", str(config.status_socket)),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    assert gateway.process.returncode == 0, gateway.output
    output = gateway.output
    pack_lines = [line for line in output.splitlines() if "pack-01" in line]
    assert any("E_MB_DEVICE_FAILURE" in line for line in pack_lines), output
    # Within one window (60 s): at most LINES_PER_WINDOW lines for the node, whatever the number of flips.
    assert len(pack_lines) <= LINES_PER_WINDOW, "\n".join(pack_lines)
    suppressed = json.loads(shown.stdout)["logging"]["suppressed_by_key"]["node pack-01"]
    assert suppressed >= flips // 2, (suppressed, flips)
    assert "log lines suppressed" in table.stdout
    assert not any("pack-02" in line for line in output.splitlines())  # the healthy pack: not a word
