"""Shared test fixtures: free loopback ports, the shipped profiles, and simulated battery fleets.

Fleets (the real simulator, no mocks), all on 127.0.0.1 with ephemeral ports so tests can run
concurrently, and all stopped at the end of the test that started them:

- `sim_fleet`: four `microstore/mp2000` packs (SOCs 85, 65, 45, 25 %) in a background thread.
  It is a `gateway.sim.fleet.FleetThread`: `.endpoints`, `.endpoint(id)`, `.snapshot(id)`,
  `.update_state(id, **fields)`, `.set_faults(id, **knobs)`, `.clear_faults()`.
- `start_sim_fleet(scenario=None, *, packs=4, profile="microstore/mp2000", firmware=None, speed=1.0)`:
  the same for
  any scenario (e.g. `load_scenario(SCENARIOS / "default.yaml", profile_library.get)` with ports moved
  to ephemeral ones by `ephemeral_ports(scenario)`), as many as a test needs.
- `start_sim_process(*args)`: `socgw simulate *args` as a subprocess (add `--base-port 0` for ephemeral
  ports); returns a `SimProcess` with the `Endpoint`s it printed. Terminated with SIGTERM at teardown.

    def test_reads_soc(sim_fleet: FleetThread) -> None:
        host, port = sim_fleet.endpoint("pack-01").address
        ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Version
from gateway.sim.fleet import Endpoint, FleetThread
from gateway.sim.scenario import DEFAULT_PROFILE, Scenario, relocate, uniform_fleet

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
SCENARIOS = REPO / "scenarios"
LOOPBACK = "127.0.0.1"
PROCESS_START_TIMEOUT_S = 30.0
PROCESS_STOP_TIMEOUT_S = 10.0


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now. Prefer servers binding port 0 when they can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_tcp_port() -> int:
    """One free TCP port on 127.0.0.1."""
    return free_port()


@pytest.fixture
def free_tcp_ports() -> Callable[[int], list[int]]:
    """`free_tcp_ports(n)`: n distinct free TCP ports on 127.0.0.1."""

    def ports(count: int) -> list[int]:
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
        try:
            for sock in sockets:
                sock.bind((LOOPBACK, 0))
            return [sock.getsockname()[1] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()

    return ports


@pytest.fixture(scope="session")
def profile_library() -> ProfileLibrary:
    """The profiles shipped in the repository's profiles/ (nothing from /etc or $SOCGW_PROFILE_PATH)."""
    return ProfileLibrary([PROFILES])


def ephemeral_ports(scenario: Scenario) -> Scenario:
    """The scenario with every pack on an ephemeral port of 127.0.0.1 (safe for concurrent tests)."""
    return relocate(scenario, host=LOOPBACK, base_port=0)


StartFleet = Callable[..., FleetThread]


@pytest.fixture
def start_sim_fleet(profile_library: ProfileLibrary) -> Iterator[StartFleet]:
    """Start simulated fleets in background threads; every one is stopped when the test ends.

    `start_sim_fleet(scenario=None, *, packs=4, profile="microstore/mp2000", firmware=None, speed=1.0)`:
    without a scenario, `packs` packs of `profile` (at `firmware`, default the product's usual one)
    with SOCs spread from 85 to 25 %. `speed=0` freezes the physics, for exact register values.
    Ports are always ephemeral.
    """
    started: list[FleetThread] = []

    def start(
        scenario: Scenario | None = None,
        *,
        packs: int = 4,
        profile: str = DEFAULT_PROFILE,
        firmware: str | None = None,
        speed: float = 1.0,
    ) -> FleetThread:
        if scenario is None:
            version = Version.parse(firmware) if firmware is not None else None
            scenario = uniform_fleet(
                packs, profile_library.get(profile), base_port=0, speed=speed, firmware=version
            )
        fleet = FleetThread(ephemeral_ports(scenario))
        fleet.start()
        started.append(fleet)
        return fleet

    yield start
    for fleet in reversed(started):
        fleet.stop()


@pytest.fixture
def sim_fleet(start_sim_fleet: StartFleet) -> FleetThread:
    """Four simulated microstore/mp2000 packs (pack-01..pack-04, SOC 85/65/45/25 %) at real-time speed."""
    return start_sim_fleet()


@dataclasses.dataclass
class SimProcess:
    """A running `socgw simulate` (stderr merged into stdout) and the packs it announced."""

    process: subprocess.Popen[str]
    endpoints: list[Endpoint]
    output: list[str]  # output lines read so far (`read_rest` collects the others after `stop`)
    lines: queue.Queue[str | None]  # filled by a reader thread; None marks the end of the output

    def endpoint(self, pack_id: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.pack_id == pack_id:
                return endpoint
        raise KeyError(f"no pack {pack_id!r} (packs: {', '.join(e.pack_id for e in self.endpoints)})")

    def next_line(self, timeout_s: float) -> str | None:
        """The next output line, or None at the end of the output or after `timeout_s`."""
        try:
            line = self.lines.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None
        if line is not None:
            self.output.append(line)
        return line

    def stop(self) -> int:
        """SIGTERM, then wait (SIGKILL after PROCESS_STOP_TIMEOUT_S); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(PROCESS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(PROCESS_STOP_TIMEOUT_S)
        return self.process.returncode

    def read_rest(self) -> list[str]:
        """After `stop`: the remaining output lines."""
        rest: list[str] = []
        while (line := self.next_line(PROCESS_STOP_TIMEOUT_S)) is not None:
            rest.append(line)
        return rest


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line.rstrip("\n"))
    lines.put(None)


def socgw_command(*args: str) -> list[str]:
    """The argv that runs `socgw *args` with this interpreter (no dependency on PATH)."""
    return [sys.executable, "-m", "gateway.cli", *args]


StartProcess = Callable[..., SimProcess]


@pytest.fixture
def start_sim_process() -> Iterator[StartProcess]:
    """`start_sim_process(*args)` runs `socgw simulate *args` and waits until it serves every pack."""
    running: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        process = subprocess.Popen(
            socgw_command("simulate", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        sim = SimProcess(process, [], [], queue.Queue())
        running.append(sim)
        threading.Thread(target=_pump_lines, args=(process.stdout, sim.lines), daemon=True).start()
        deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
        while (line := sim.next_line(deadline - time.monotonic())) is not None:
            if line.startswith("serving "):
                return sim
            with contextlib.suppress(ValueError):
                sim.endpoints.append(Endpoint.parse(line))
        sim.stop()
        raise AssertionError(f"socgw simulate {' '.join(args)} did not start; output: {sim.output}")

    yield start
    for sim in reversed(running):
        sim.stop()
