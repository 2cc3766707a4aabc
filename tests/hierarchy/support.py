"""A real hierarchy on one machine: Mosquitto broker(s), workers and a head, each `socgw run` in its own
process (its own session, so SIGKILL takes its adapter children too), simulated packs behind the workers."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import DEFAULT_PROFILE, uniform_fleet
from gateway.status import read_status
from tests.conftest import REPO, ephemeral_ports, socgw_command
from tests.hierarchy.netns import Network

GROUP, HOST_ID = "plant", "head"
KEEPALIVE_S = 5
WORKER_TIMEOUT_S = 3.0  # the workers' command.timeout_s: how long they keep the head's last request


def worker_config(
    directory: Path,
    name: str,
    fleet: FleetThread,
    brokers: Sequence[tuple[str, int]],
    *,
    prefix: str = "",
    keepalive_s: int = KEEPALIVE_S,
    tls: str = "",
) -> Path:
    nodes = "\n".join(
        f"  - {{id: {prefix or name}-{e.pack_id}, host: {e.host}, port: {e.port}, unit: {e.unit_id}, "
        f"profile: {e.profile_key}}}"
        for e in fleet.endpoints
    )
    broker_list = ", ".join(f"{{host: {host}, port: {port}}}" for host, port in brokers)
    path = directory / f"{name}.yaml"
    path.write_text(
        f"site: {{name: {name}, role: worker, cycle_ms: 100}}\nnodes:\n{nodes}\n"
        f"command: {{timeout_s: {WORKER_TIMEOUT_S}}}\nstatus: {{socket: {directory / name}.sock}}\n"
        f"northbound:\n  mqtt:\n    brokers: [{broker_list}]\n    group_id: {GROUP}\n"
        f"    edge_node_id: {name}\n    client_id: socgw-{name}\n    keepalive_s: {keepalive_s}\n"
        f"    primary_host_id: {HOST_ID}\n{tls}"
    )
    return path


def head_config(
    directory: Path,
    workers: Sequence[str],
    brokers: Sequence[tuple[str, int]],
    request_w: float,
    *,
    keepalive_s: int = KEEPALIVE_S,
    tls: str = "",
    packs: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """The head's config; with `packs` (each worker's pack ids) it serves them upstream."""
    broker_list = ", ".join(f"{{host: {host}, port: {port}}}" for host, port in brokers)
    if packs is not None:
        workers = [f"{{id: {w}, packs: [{', '.join(packs[w])}]}}" for w in workers]
    path = directory / "head.yaml"
    path.write_text(
        f"site: {{name: plant, role: head, cycle_ms: 100}}\nnodes: []\n"
        f"command: {{default_request_w: {request_w}}}\nstatus: {{socket: {directory}/head.sock}}\n"
        f"hierarchy:\n  brokers: [{broker_list}]\n  group_id: {GROUP}\n  host_id: {HOST_ID}\n"
        f"  keepalive_s: {keepalive_s}\n  workers: [{', '.join(workers)}]\n{tls}"
    )
    return path


@dataclass
class Controller:
    """One `socgw run`, its config and log."""

    config: Path
    wrap: Callable[[list[str]], list[str]] = field(default=lambda argv: argv)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.config.with_suffix(".log")

    @property
    def socket(self) -> Path:
        return self.config.with_suffix(".sock")

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.wrap(socgw_command("run", "-c", str(self.config))), cwd=REPO, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL of the whole process group: the core and its adapter children, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def status(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            return read_status(self.socket, timeout_s=1.0)
        return None


def served_w(fleet: FleetThread) -> float:
    """The power the simulated packs deliver now (+ = discharge), measured at the simulator."""
    return sum(fleet.snapshot(e.pack_id).operating.power_w for e in fleet.endpoints)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.02) -> float:
    """Seconds until `condition` held; AssertionError naming `what` after `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def cluster(status: dict[str, Any] | None, worker: str) -> dict[str, Any]:
    """A cluster's row in the head's status (its node), {} while the head does not answer."""
    for node in (status or {}).get("nodes", []):
        if node["id"] == worker:
            return dict(node)
    return {}


@contextlib.contextmanager
def running(controllers: Sequence[Controller]) -> Iterator[None]:
    for controller in controllers:
        controller.start()
    try:
        yield
    finally:
        for controller in controllers:
            controller.stop()


class NetBroker:
    """Mosquitto in its own namespace on its address; with `tls`, mutual TLS only, each client named by
    its certificate's common name (`use_identity_as_username`) and held to `acl` (docs/hierarchy.md)."""

    def __init__(
        self, network: Network, name: str, directory: Path, *, port: int = 1883,
        tls: tuple[Path, Path, Path] | None = None, acl: str | None = None,
    ) -> None:  # fmt: skip
        self.network, self.name, self.port = network, name, port
        self.address = network.add(name)
        user = pwd.getpwuid(
            os.getuid()
        ).pw_name  # as root mosquitto would drop to a user who cannot read here
        lines = [f"user {user}", f"listener {port} {self.address}", "persistence false"]
        if tls is None:
            lines.append("allow_anonymous true")
        else:
            ca, cert, key = tls
            lines += [
                f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "require_certificate true",
                "use_identity_as_username true", "tls_version tlsv1.2",
            ]  # fmt: skip
        if acl is not None:
            (directory / f"{name}.acl").write_text(acl)
            lines += [f"acl_file {directory / name}.acl", "log_type all"]  # denials are logged at debug
        self.config = directory / f"{name}.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.network.argv(self.name, ["mosquitto", "-c", str(self.config)]),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.network.wait_for_port(self.name, self.address, self.port)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: a clean stop (Mosquitto then delivers its clients' Wills); SIGKILL: the broker dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None


def start_fleet_in(
    network: Network, name: str, library: ProfileLibrary, packs: int, speed: float = 1.0
) -> FleetThread:
    """Simulated packs on the namespace's own loopback (where its worker polls them)."""
    scenario = uniform_fleet(packs, library.get(DEFAULT_PROFILE), base_port=0, speed=speed)
    fleet = FleetThread(ephemeral_ports(scenario))
    network.run_in(name, fleet.start)
    return fleet
