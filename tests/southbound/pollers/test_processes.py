"""`socgw run` with `site.pollers: 2`: two supervised polling processes feeding one balancer.

Twelve frozen simulated packs, pack-01..06 polled by poller 1 and pack-07..12 by poller 2. A poller
killed with SIGKILL is logged once and polling again within 2 s; a poller stopped with SIGSTOP (hung)
makes its nodes stale, then failed, with E_POLLER_DOWN while the cycles keep their time, and is killed
and restarted. The other poller's nodes stay good in every cycle throughout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import DEFAULT_PROFILE, uniform_fleet
from gateway.southbound.pollers.fieldbus import HUNG_AFTER_S, STALE_LIMIT_S
from tests.conftest import PROFILES, ephemeral_ports, socgw_command
from tests.northbound.iec61850.helpers import GatewayProcess
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # child processes, sockets on loopback

PACKS = 12
CYCLE_S = 0.1
RESTART_LIMIT_S = 2.0
WAIT_S = 30.0
DOWN = "E_POLLER_DOWN"


class Site:
    def __init__(self, fleet: FleetThread, gateway: GatewayProcess) -> None:
        self.fleet = fleet
        self.gateway = gateway

    def status(self) -> dict[str, Any]:
        return self.gateway.status()

    def poller(self, number: int) -> dict[str, Any]:
        pollers: list[dict[str, Any]] = self.status()["pollers"]
        return pollers[number - 1]

    def nodes_of(self, number: int, document: dict[str, Any]) -> list[dict[str, Any]]:
        """Poller `number`'s nodes in a status document (the shares are cut in config order)."""
        nodes: list[dict[str, Any]] = document["nodes"]
        return nodes[:6] if number == 1 else nodes[6:]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    profile = ProfileLibrary([PROFILES]).get(DEFAULT_PROFILE)
    fleet = FleetThread(ephemeral_ports(uniform_fleet(PACKS, profile, base_port=0, speed=0.0)))
    fleet.start()
    folder = tmp_path_factory.mktemp("pollers")
    extra = "site:\n  pollers: 2\ncommand:\n  default_request_w: 3000\n"
    config = site_config(folder, fleet.endpoints, extra)
    # As systemd starts the service: a notify socket and a watchdog, which only the core may use.
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(folder / "notify.sock"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NOTIFY_SOCKET", str(folder / "notify.sock"))
            patch.setenv("WATCHDOG_USEC", "10000000")
            gateway = GatewayProcess(Path(config.path), config.status_socket, PACKS)
            gateway.__enter__()  # the core starts (and with it the pollers) in that environment
        try:
            yield Site(fleet, gateway)
        finally:
            assert gateway.stop() == 0, gateway.output
    finally:
        systemd.close()
        fleet.stop()


def watch(
    site: Site, done: Callable[[dict[str, Any]], bool], limit_s: float = WAIT_S
) -> list[dict[str, Any]]:
    """Every status document, read each 20 ms, until `done` holds for one (AssertionError past limit_s)."""
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        seen.append(site.status())
        if done(seen[-1]):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"not within {limit_s} s: {seen[-1] if seen else None}")


def all_good(nodes: list[dict[str, Any]]) -> bool:
    return all(node["quality"] == "good" for node in nodes)


def all_balanced(nodes: list[dict[str, Any]]) -> bool:
    """Each node took part in the cycle's dispatch: good, or stale within the telemetry age (a poll the
    machine's load delayed past the budget arrives in the next cycle with its true age)."""
    return all(node["mode"] == "active" and node["quality"] in ("good", "stale") for node in nodes)


def test_each_poller_is_its_own_process_with_its_share_of_the_nodes(site: Site) -> None:
    assert site.gateway.process is not None
    document = site.status()
    pollers = document["pollers"]
    assert [(p["poller"], p["state"], p["nodes"]) for p in pollers] == [(1, "running", 6), (2, "running", 6)]
    pids = {p["pid"] for p in pollers}
    assert len(pids) == 2 and site.gateway.process.pid not in pids
    for pid in pids:  # children of the core, running the poller's module, not speaking to systemd
        assert (
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[2] == b"gateway.southbound.pollers.child"
        )
        assert (
            int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            == site.gateway.process.pid
        )
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [entry for entry in environment if entry.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_"))]
    core_environment = Path(f"/proc/{site.gateway.process.pid}/environ").read_bytes()
    assert b"NOTIFY_SOCKET=" in core_environment  # the core has it: the check above could fail
    assert all_good(document["nodes"])
    # The setpoints reach the packs, and each node's writes come back from its poller.
    written = watch(site, lambda doc: all(node["writes"] > 0 for node in doc["nodes"]))[-1]
    for node in written["nodes"]:
        held = site.fleet.snapshot(node["id"]).state.setpoint_w
        assert held == pytest.approx(node["setpoint_w"], abs=10.0) and held > 0, node
    shown = subprocess.run(
        socgw_command("status", "--socket", str(site.gateway.status_socket)),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=True,
    ).stdout
    # (a first poll may miss its budget on a busy machine: the count is the status's own)
    assert re.search(
        rf"poller 1 running \(pid {pollers[0]['pid']}, 6 nodes, 0 restarts, \d+ missed cycles?\)", shown
    )


def test_a_killed_poller_is_back_within_2_s_and_the_others_were_balanced_in_every_cycle(site: Site) -> None:
    before, other = site.poller(1), site.poller(2)
    start = site.status()
    killed_at = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)
    seen = watch(
        site,
        lambda doc: doc["pollers"][0]["state"] == "running" and doc["pollers"][0]["pid"] != before["pid"],
    )
    restart_s = time.monotonic() - killed_at
    seen += watch(site, lambda doc: all_good(doc["nodes"]))  # its nodes come back
    elapsed_s = time.monotonic() - killed_at
    print(f"poller SIGKILL: polling again {restart_s:.2f} s after the signal")
    assert restart_s < RESTART_LIMIT_S
    # Meanwhile its nodes were failed (or stale) for the poller, never silently good.
    assert any(all(node["error"] == DOWN for node in site.nodes_of(1, doc)) for doc in seen)
    # The other poller's nodes were balanced in every cycle read, by the same process.
    assert all(all_balanced(site.nodes_of(2, doc)) for doc in seen)
    after = site.poller(2)
    assert (after["pid"], after["restarts"]) == (other["pid"], other["restarts"])
    print(f"the other poller missed {after['missed_cycles'] - other['missed_cycles']} cycle(s) meanwhile")
    final = site.status()
    assert final["timing"]["overruns"] == start["timing"]["overruns"]
    assert final["timing"]["cycles"] - start["timing"]["cycles"] >= int(elapsed_s / CYCLE_S) - 2
    now = site.poller(1)
    assert (now["restarts"], now["last_exit"]) == (before["restarts"] + 1, "killed by SIGKILL")
    lines = [
        line for line in site.gateway.output if f"(pid {before['pid']}, 6 nodes) killed by SIGKILL" in line
    ]
    assert len(lines) == 1, site.gateway.output[-20:]
    assert "E_POLLER_DOWN" in lines[0] and "restarting it in 0.1 s" in lines[0]


def test_a_hung_poller_makes_its_nodes_stale_then_failed_while_cycles_keep_time(site: Site) -> None:
    before, other = site.poller(2), site.poller(1)
    start = site.status()
    stopped_at = time.monotonic()
    os.kill(before["pid"], signal.SIGSTOP)
    try:
        seen = watch(site, lambda doc: all(node["quality"] == "failed" for node in site.nodes_of(2, doc)))
        failed_s = time.monotonic() - stopped_at
        hung = site.status()
        # Silent for HUNG_AFTER_S, it is killed and started again.
        seen += watch(site, lambda doc: doc["pollers"][1]["pid"] != before["pid"])
        replaced_s = time.monotonic() - stopped_at
    finally:
        with contextlib.suppress(ProcessLookupError):  # never leave a poller stopped
            os.kill(before["pid"], signal.SIGCONT)
    stale = [doc for doc in seen if all(node["quality"] == "stale" for node in site.nodes_of(2, doc))]
    assert stale, "its nodes were never stale"  # last values carried first
    assert all(node["error"] == DOWN for doc in stale for node in site.nodes_of(2, doc))
    assert all(node["error"] == DOWN for node in site.nodes_of(2, hung))
    # (counted from its last answer, up to a cycle before the signal)
    assert STALE_LIMIT_S - 2 * CYCLE_S <= failed_s < HUNG_AFTER_S, failed_s
    assert HUNG_AFTER_S - 2 * CYCLE_S <= replaced_s < HUNG_AFTER_S + RESTART_LIMIT_S, replaced_s
    # The cycles kept their time: none overran, as many ran as the time allowed.
    assert hung["timing"]["overruns"] == start["timing"]["overruns"], (start["timing"], hung["timing"])
    assert hung["timing"]["cycles"] - start["timing"]["cycles"] >= int(failed_s / CYCLE_S) - 3
    assert all(all_balanced(site.nodes_of(1, doc)) for doc in seen)
    watch(site, lambda doc: all_good(doc["nodes"]))  # its nodes come back
    now, mate = site.poller(2), site.poller(1)
    assert now["last_exit"] == "killed by SIGKILL" and now["missed_cycles"] > before["missed_cycles"]
    assert (mate["pid"], mate["restarts"]) == (other["pid"], other["restarts"])
    print(f"the other poller missed {mate['missed_cycles'] - other['missed_cycles']} cycle(s) meanwhile")
    late = [
        line for line in site.gateway.output if "poller 2: E_POLLER_DOWN: did not finish its poll" in line
    ]
    assert len(late) == 1, late
    assert any(f"poller 2 (pid {before['pid']}) answered nothing for" in line for line in site.gateway.output)
