"""One `socgw run` per config: a second one refuses to start and leaves the first one's socket alone."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from gateway.status import read_status
from tests.commands.test_run import wait_for_status
from tests.conftest import StartProcess, socgw_command
from tests.test_engine import site_config


def test_second_run_on_the_same_config_refuses_and_names_the_first(
    tmp_path: Path, start_sim_process: StartProcess
) -> None:
    sim = start_sim_process("--packs", "2", "--base-port", "0")
    config = site_config(tmp_path, sim.endpoints)  # no northbound section: nothing else would stop it
    first = subprocess.Popen(
        socgw_command("run", "-c", str(config.path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_status(config.status_socket, 2)
        socket_before = config.status_socket.stat().st_ino
        second = subprocess.run(
            socgw_command("run", "-c", str(config.path)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"another `socgw run` (PID {first.pid}) is already running" in second.stdout
        assert str(config.status_socket) in second.stdout
        assert "Traceback" not in second.stdout + second.stderr
        assert config.status_socket.stat().st_ino == socket_before  # neither removed nor replaced
        assert len(read_status(config.status_socket)["nodes"]) == 2
        first.send_signal(signal.SIGTERM)
        output, _ = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, output
    assert not config.status_socket.exists()
