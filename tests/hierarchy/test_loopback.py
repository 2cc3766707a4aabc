"""A head and two workers on loopback over one Mosquitto: the site request served by both clusters, a
killed worker's share moved to the other, its return, and the head's death (workers keep the last
request for command.timeout_s, then their default)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import StartFleet, free_port
from tests.hierarchy.support import (
    WORKER_TIMEOUT_S,
    Controller,
    cluster,
    head_config,
    running,
    served_w,
    wait_until,
    worker_config,
)
from tests.northbound.mqtt.support import Broker

pytestmark = pytest.mark.wire

REQUEST_W = 3000.0
HEAD_CYCLE_S = 0.1


def near(value: float, target: float, tolerance: float = 0.05) -> bool:
    return abs(value - target) <= tolerance * abs(target) + 20.0


def share_w(head: Controller, worker: str) -> float:
    """The share the head gives the worker's cluster now (its setpoint in the head's status)."""
    return float(cluster(head.status(), worker).get("setpoint_w") or 0.0)


def test_a_killed_worker_s_share_moves_it_comes_back_and_workers_outlive_the_head(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    north_packs, south_packs = start_sim_fleet(packs=3), start_sim_fleet(packs=3)
    broker = Broker(tmp_path, free_port())
    brokers = [("127.0.0.1", broker.port)]
    north = Controller(worker_config(tmp_path, "north", north_packs, brokers))
    south = Controller(worker_config(tmp_path, "south", south_packs, brokers))
    head = Controller(head_config(tmp_path, ["north", "south"], brokers, REQUEST_W))
    try:
        with running([north, south, head]):
            # both clusters serve the site request, each its energy-proportional share
            wait_until(lambda: near(served_w(north_packs) + served_w(south_packs), REQUEST_W), 60,
                       "the site request served by the two clusters")  # fmt: skip
            assert served_w(north_packs) > 300.0 and served_w(south_packs) > 300.0

            north.kill()  # its packs keep their last setpoints: the head must move its share
            killed = time.monotonic()
            moved_s = wait_until(lambda: near(share_w(head, "south"), REQUEST_W), 5,
                                 "the head moving north's share to south")  # fmt: skip
            assert cluster(head.status(), "north")["quality"] == "failed"
            wait_until(lambda: near(served_w(south_packs), REQUEST_W), 5, "south's packs serving it all")
            served_s = time.monotonic() - killed
            print(f"worker killed: head moved its share in {moved_s:.3f} s, south's packs served in "
                  f"{served_s:.3f} s")  # fmt: skip
            assert moved_s <= 2 * HEAD_CYCLE_S + 0.3  # two head cycles, and the test's own status polling

            north.start()  # back: it rebirths and rejoins the dispatch
            wait_until(lambda: served_w(north_packs) > 300.0, 60, "north back in the dispatch")
            wait_until(lambda: near(served_w(north_packs) + served_w(south_packs), REQUEST_W), 10,
                       "the request served by both again")  # fmt: skip

            share = served_w(south_packs)
            head.kill()  # the workers keep balancing on the last request, then their default (0 W)
            time.sleep(WORKER_TIMEOUT_S / 2)
            assert near(served_w(south_packs), share, 0.1)
            wait_until(lambda: abs(served_w(south_packs)) < 50.0, WORKER_TIMEOUT_S + 5,
                       "south back to its default request after command.timeout_s")  # fmt: skip
    finally:
        broker.stop()
