"""A hierarchy on one machine, each controller and broker in its own network namespace (made here,
joined by a bridge), simulated packs behind each worker: the failure rules of docs/hierarchy.md."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from tests.hierarchy.netns import Network
from tests.hierarchy.support import (
    WORKER_TIMEOUT_S,
    Controller,
    NetBroker,
    cluster,
    head_config,
    running,
    served_w,
    start_fleet_in,
    wait_until,
    worker_config,
)

pytestmark = pytest.mark.wire

REQUEST_W = 3000.0
HEAD_CYCLE_S = 0.1
KEEPALIVE_S = 5  # the smallest an edge node takes: a cut-off worker's NDEATH within 7.5 s
STATUS_POLL_SLACK_S = 0.3  # the test's own status polling and process wake-ups on a shared machine
SPEED = 20.0  # simulated seconds per second: SOCs move enough in a test to see the spread shrink


def near(value: float, target: float, tolerance: float = 0.05) -> bool:
    return abs(value - target) <= tolerance * abs(target) + 20.0


def share_w(head: Controller, worker: str) -> float:
    """The share the head gives the worker's cluster now (its setpoint in the head's status)."""
    return float(cluster(head.status(), worker).get("setpoint_w") or 0.0)


def spread(worker: Controller) -> float:
    """The worker's own SOC spread (max − min over its packs), from its status."""
    return float(((worker.status() or {}).get("fleet") or {}).get("soc_spread_pct") or 0.0)


class Site:
    """Workers `names` each with 3 simulated packs in its namespace, a head in its own, over `brokers`."""

    def __init__(
        self, tmp_path: Path, network: Network, library: ProfileLibrary, brokers: list[NetBroker],
        names: tuple[str, ...] = ("north", "south"),
    ) -> None:  # fmt: skip
        addresses = [(broker.address, broker.port) for broker in brokers]
        self.fleets: dict[str, FleetThread] = {}
        self.workers: dict[str, Controller] = {}
        for name in names:
            network.add(name)
            self.fleets[name] = start_fleet_in(network, name, library, 3, SPEED)
            config = worker_config(tmp_path, name, self.fleets[name], addresses, keepalive_s=KEEPALIVE_S)
            self.workers[name] = Controller(config, wrap=network.wrapper(name))
        network.add("head")
        config = head_config(tmp_path, names, addresses, REQUEST_W, keepalive_s=KEEPALIVE_S)
        self.head = Controller(config, wrap=network.wrapper("head"))

    def controllers(self) -> list[Controller]:
        return [*self.workers.values(), self.head]

    def served(self) -> float:
        return sum(served_w(fleet) for fleet in self.fleets.values())

    def settled(self) -> bool:
        """Every cluster in the head's dispatch, and its packs serving the share the head gives it."""
        status = self.head.status()
        shares = {name: float(cluster(status, name).get("setpoint_w") or 0.0) for name in self.fleets}
        return all(
            share > 300.0 and near(served_w(self.fleets[name]), share) for name, share in shares.items()
        )

    def close(self) -> None:
        for fleet in self.fleets.values():
            fleet.stop()


def test_a_killed_or_cut_off_worker_s_share_moves_it_rejoins_and_workers_outlive_the_head(
    tmp_path: Path, network: Network, profile_library: ProfileLibrary
) -> None:
    broker = NetBroker(network, "broker", tmp_path)
    site = Site(tmp_path, network, profile_library, [broker])
    north, south, head = site.workers["north"], site.workers["south"], site.head
    try:
        with running(site.controllers()):
            wait_until(site.settled, 60, "both clusters serving their shares")
            assert near(site.served(), REQUEST_W)

            # killed: the broker sends its NDEATH at once
            north.kill()
            killed_s = wait_until(lambda: near(share_w(head, "south"), REQUEST_W), 5, "north's share moved")
            assert cluster(head.status(), "north")["quality"] == "failed"
            wait_until(lambda: near(served_w(site.fleets["south"]), REQUEST_W), 5, "south serving it all")
            north.start()  # its packs still hold the setpoints of before: the head's share says it is back
            wait_until(lambda: share_w(head, "north") > 300.0, 60, "north back after its restart")
            wait_until(lambda: near(served_w(site.fleets["north"]), share_w(head, "north")), 10,
                       "north's packs at its share")  # fmt: skip

            # cut off: the broker sends its NDEATH when its keepalive expires
            network.link("north", up=False)
            cut_s = wait_until(
                lambda: near(share_w(head, "south"), REQUEST_W), 15, "cut-off north's share moved"
            )
            network.link("north", up=True)
            rejoin_s = wait_until(lambda: share_w(head, "north") > 300.0, 60, "north back after the cut")
            wait_until(lambda: near(share_w(head, "north") + share_w(head, "south"), REQUEST_W), 10,
                       "the request split over both again")  # fmt: skip

            # the head dies: each worker keeps the last request for command.timeout_s, then its default
            last_share = share_w(head, "south")
            wait_until(
                lambda: near(served_w(site.fleets["south"]), last_share), 5, "south's packs at its share"
            )
            spread_before = spread(south)
            head.kill()
            time.sleep(WORKER_TIMEOUT_S * 0.8)
            kept, spread_after = served_w(site.fleets["south"]), spread(south)
            reverted_s = wait_until(lambda: abs(served_w(site.fleets["south"])) < 50.0, WORKER_TIMEOUT_S + 5,
                                    "south back to its default request")  # fmt: skip
    finally:
        site.close()
        broker.stop()
    print(f"\nkilled worker: share moved in {killed_s:.3f} s; cut-off worker (keepalive {KEEPALIVE_S} s): "
          f"{cut_s:.2f} s, back {rejoin_s:.1f} s after the link; head killed: south kept {kept:.0f} W "
          f"(of {last_share:.0f}), its SOC spread {spread_before:.2f} -> {spread_after:.2f} %, and reverted "
          f"{WORKER_TIMEOUT_S * 0.8 + reverted_s:.1f} s after")  # fmt: skip
    assert killed_s <= 2 * HEAD_CYCLE_S + STATUS_POLL_SLACK_S
    assert cut_s <= KEEPALIVE_S * 1.5 + 2 * HEAD_CYCLE_S + STATUS_POLL_SLACK_S
    assert near(kept, last_share, 0.1)
    assert spread_after < spread_before  # still balancing its own packs on the last request
