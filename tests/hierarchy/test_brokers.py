"""Brokers and identities in a hierarchy (each controller and broker in its own network namespace):
failover between two Mosquitto brokers, a pack id claimed by two workers, and the ACL that lets only
the head command a worker (client certificates)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from gateway.hierarchy.host import command_payload
from gateway.northbound.mqtt.metrics import DataType
from gateway.profiles.loader import ProfileLibrary
from tests.conftest import REPO
from tests.hierarchy.netns import Network
from tests.hierarchy.support import (
    GROUP,
    Controller,
    NetBroker,
    cluster,
    head_config,
    running,
    start_fleet_in,
    wait_until,
    worker_config,
)
from tests.hierarchy.test_failures import REQUEST_W, Site, near, share_w
from tests.northbound.mqtt.support import broker_certificate
from tests.northbound.pki import Authority

pytestmark = pytest.mark.wire
ACL = REPO / "examples" / "hierarchy" / "mosquitto.acl"


def errors(head: Controller) -> str:
    status = head.status()
    return " ".join(cluster(status, w).get("error") or "" for w in ("north", "south"))


def born_at(log: Path, worker: str, broker: int) -> datetime:
    """When the head's log says the worker was born on broker #`broker`."""
    for line in log.read_text().splitlines():
        if f"worker {worker} born on broker #{broker}" in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"{worker} never born on broker #{broker}: {log.read_text()[-2000:]}")


def test_workers_fail_over_to_the_second_broker_and_stay_in_the_dispatch(
    tmp_path: Path, network: Network, profile_library: ProfileLibrary
) -> None:
    first, second = NetBroker(network, "broker-a", tmp_path), NetBroker(network, "broker-b", tmp_path)
    site = Site(tmp_path, network, profile_library, [first, second])
    head = site.head
    try:
        with running(site.controllers()):
            wait_until(site.settled, 60, "both clusters serving their shares")
            stopped = datetime.now()
            first.stop(signal.SIGKILL)  # it dies: no Wills, every client finds its connection gone
            out_of_dispatch, served = 0, []
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:  # sampled every 50 ms through the failover
                status = head.status()
                out_of_dispatch += sum(
                    cluster(status, w).get("quality") != "good" for w in ("north", "south")
                )
                served.append(site.served())
                time.sleep(0.05)
            failover_s = {w: (born_at(head.log, w, 2) - stopped).total_seconds() for w in ("north", "south")}
    finally:
        site.close()
        first.stop()
        second.stop()
    print(f"\nbroker stopped: reborn on the second broker after {failover_s} s; served power during the "
          f"failover {min(served):.0f}..{max(served):.0f} W")  # fmt: skip
    assert out_of_dispatch == 0  # reborn within keepalive × 1.5, each cluster kept its share throughout
    assert all(seconds < 5.0 for seconds in failover_s.values())
    assert all(near(value, REQUEST_W, 0.1) for value in served)  # the workers served their last request


def test_a_pack_id_two_workers_claim_refuses_the_second_cluster(
    tmp_path: Path, network: Network, profile_library: ProfileLibrary
) -> None:
    broker = NetBroker(network, "broker", tmp_path)
    brokers = [(broker.address, broker.port)]
    controllers = []
    fleets = []
    for name in ("north", "south"):
        network.add(name)
        fleets.append(start_fleet_in(network, name, profile_library, 3))
        config = worker_config(tmp_path, name, fleets[-1], brokers, prefix="pack")  # the same ids in both
        controllers.append(Controller(config, wrap=network.wrapper(name)))
    network.add("head")
    head = Controller(
        head_config(tmp_path, ["north", "south"], brokers, REQUEST_W), wrap=network.wrapper("head")
    )
    try:
        with running([*controllers, head]):
            wait_until(lambda: "E_DUPLICATE_NODE" in errors(head), 60, "one cluster refused")
            time.sleep(1.0)
            rows = {w: cluster(head.status(), w) for w in ("north", "south")}
    finally:
        for fleet in fleets:
            fleet.stop()
        broker.stop()
    refused = [w for w, row in rows.items() if row["error"] == "E_DUPLICATE_NODE"]
    assert len(refused) == 1, rows
    owner = "south" if refused == ["north"] else "north"
    assert rows[owner]["quality"] == "good" and near(rows[owner]["setpoint_w"], REQUEST_W)
    assert re.search(rf"worker {refused[0]} claims pack `pack-pack-0[123]`, which worker {owner} owns",
                     head.log.read_text())  # fmt: skip


def test_only_the_head_s_certificate_may_command_a_worker(
    tmp_path: Path, network: Network, profile_library: ProfileLibrary
) -> None:
    ca = Authority(tmp_path, "site-ca")
    network_address = "10.99.0.2"  # the broker's: the first namespace added
    server = broker_certificate(ca, tmp_path, network_address)
    broker = NetBroker(network, "broker", tmp_path, port=8883, tls=(ca.cert_path, server.cert, server.key),
                       acl=ACL.read_text())  # fmt: skip
    assert broker.address == network_address
    brokers = [(broker.address, broker.port)]

    def tls(name: str, indent: str) -> str:
        issued = ca.issue(name)
        return f"{indent}tls: {{ca: {ca.cert_path}, cert: {issued.cert}, key: {issued.key}}}\n"

    network.add("north")
    fleet = start_fleet_in(network, "north", profile_library, 2)
    north = Controller(worker_config(tmp_path, "north", fleet, brokers, tls=tls("north", "    ")),
                       wrap=network.wrapper("north"))  # fmt: skip
    network.add("head")
    head = Controller(head_config(tmp_path, ["north"], brokers, 1000.0, tls=tls("head", "  ")),
                      wrap=network.wrapper("head"))  # fmt: skip
    intruder = ca.issue("south")  # a genuine worker's certificate of the same site
    network.add("intruder")

    def command(cert: Path, key: Path, request_w: float) -> None:
        payload = command_payload((("request_w", DataType.DOUBLE, request_w),))
        subprocess.run(
            network.argv("intruder", [
                "mosquitto_pub", "-h", broker.address, "-p", str(broker.port), "--cafile", str(ca.cert_path),
                "--cert", str(cert), "--key", str(key), "-t", f"spBv1.0/{GROUP}/NCMD/north", "-s", "-q", "1",
            ]), input=payload, check=True, timeout=10,
        )  # fmt: skip

    try:
        with running([north, head]):
            wait_until(lambda: near(share_w(head, "north"), 1000.0), 60, "north commanded by the head")
            command(intruder.cert, intruder.key, 777.0)
            time.sleep(2.0)
            forged = "request_w = 777.0 accepted" in north.log.read_text()
            head_cert = tmp_path / "head.pem", tmp_path / "head.key"
            command(*head_cert, 1234.5)  # the same message with the head's certificate goes through
            wait_until(
                lambda: "request_w = 1234.5 accepted" in north.log.read_text(), 5, "the head's command"
            )
    finally:
        fleet.stop()
        broker.stop()
    assert not forged
    denied = [line for line in broker.log.read_text().splitlines() if "Denied PUBLISH" in line]
    assert any(f"'spBv1.0/{GROUP}/NCMD/north'" in line for line in denied), denied
