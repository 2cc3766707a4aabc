"""One `socgw run` per config: a second one refuses to start and leaves the first one's socket alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.status import read_status
from tests.commands.test_run import gateway_process
from tests.conftest import StartProcess, socgw_command
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes


def test_second_run_on_the_same_config_refuses_and_names_the_first(
    tmp_path: Path, start_sim_process: StartProcess
) -> None:
    sim = start_sim_process("--packs", "2", "--base-port", "0")
    config = site_config(tmp_path, sim.endpoints)  # no northbound section: nothing else would stop it
    with gateway_process(config, 2) as first:
        socket_before = config.status_socket.stat().st_ino
        second = subprocess.run(
            socgw_command("run", "-c", str(config.path)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"another `socgw run` (PID {first.process.pid}) is already running" in second.stdout
        assert str(config.status_socket) in second.stdout
        assert "Traceback" not in second.stdout + second.stderr
        assert config.status_socket.stat().st_ino == socket_before  # neither removed nor replaced
        assert len(read_status(config.status_socket)["nodes"]) == 2
    assert first.process.returncode == 0, first.output
    assert not config.status_socket.exists()
