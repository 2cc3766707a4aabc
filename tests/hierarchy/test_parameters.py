"""The head sets its parameters in force (reserve, ceiling, balancing on/off) on every worker: the order
of one NCMD's metrics (pure), and a real head with two workers over Mosquitto on loopback."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest

from gateway.balancer import BalancerParams, SiteCommand
from gateway.hierarchy.head import BALANCING, CEILING, RESERVE, SiteParameters
from gateway.hierarchy.host import command_payload
from gateway.northbound.mqtt.metrics import DataType
from gateway.site_command import CommandUpdate, SiteCommandState
from tests.conftest import StartFleet, free_port
from tests.hierarchy.support import Controller, cluster, head_config, running, wait_until, worker_config
from tests.northbound.mqtt.support import Broker

HEAD_CYCLE_S = 0.1
STATUS_POLL_SLACK_S = 0.3  # reading three status sockets in turn, and process wake-ups on a shared machine


def test_each_step_of_the_parameters_command_is_accepted_by_a_worker() -> None:
    """Any valid (reserve, ceiling) to any other, one metric at a time, through a worker's own checks."""
    chooser = random.Random(16)
    for _ in range(500):
        old_reserve, new_reserve = chooser.uniform(0, 80), chooser.uniform(0, 80)
        old_ceiling, new_ceiling = (
            chooser.uniform(old_reserve + 3, 100),
            chooser.uniform(new_reserve + 3, 100),
        )
        worker = SiteCommandState(SiteCommand(request_w=0.0), 10.0, BalancerParams(old_reserve, old_ceiling))
        metrics = SiteParameters(new_reserve, new_ceiling, False).command(old_ceiling)
        assert {name for name, _, _ in metrics} == {RESERVE, CEILING, BALANCING}
        for name, _, value in metrics:
            if name == RESERVE:
                update = CommandUpdate("head", reserve_pct=float(value))
            elif name == CEILING:
                update = CommandUpdate("head", ceiling_pct=float(value))
            else:
                update = CommandUpdate("head", balancing_enabled=bool(value))
            worker.apply(update, 0.0)  # raises on a refused step
        assert (worker.params.reserve_pct, worker.params.ceiling_pct) == (new_reserve, new_ceiling)
        assert worker.current(0.0).balancing_enabled is False


@pytest.mark.wire
def test_workers_take_the_head_s_reserve_when_it_changes_and_when_they_rejoin(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    broker = Broker(tmp_path, free_port())
    address = [("127.0.0.1", broker.port)]
    workers: dict[str, Controller] = {}
    for name in ("north", "south"):
        config = worker_config(tmp_path, name, start_sim_fleet(packs=2), address)
        workers[name] = Controller(config)
    # south's own hysteresis is wider than the head's: it refuses a reserve the head takes
    south = workers["south"].config
    south.write_text(south.read_text() + "balancer: {reserve_hysteresis_pct: 10}\n")
    head = Controller(head_config(tmp_path, list(workers), address, 1000.0))
    head.config.write_text(  # SCADA commands the head through its own edge node
        head.config.read_text()
        + f"northbound:\n  mqtt: {{brokers: [{{host: 127.0.0.1, port: {broker.port}}}], "
        "group_id: scada, edge_node_id: site}\n"
    )

    def reserve(controller: Controller) -> float | None:
        value = (controller.status() or {}).get("reserve_pct")
        return None if value is None else float(value)

    def balancing() -> list[object]:
        return [(worker.status() or {}).get("balancing_enabled") for worker in workers.values()]

    def scada_sets(name: str, value: float | bool) -> None:
        payload = tmp_path / "ncmd.bin"
        datatype = DataType.BOOLEAN if isinstance(value, bool) else DataType.DOUBLE
        payload.write_bytes(command_payload(((name, datatype, value),)))
        subprocess.run(
            ["mosquitto_pub", "-p", str(broker.port), "-t", "spBv1.0/scada/NCMD/site", "-f", str(payload)],
            check=True, timeout=10,
        )  # fmt: skip

    try:
        with running([*workers.values(), head]):
            wait_until(lambda: all(cluster(head.status(), w).get("quality") == "good" for w in workers), 60,
                       "both clusters in the head's dispatch")  # fmt: skip
            assert reserve(workers["north"]) == reserve(workers["south"]) == 10.0

            scada_sets(RESERVE, 30.0)
            wait_until(lambda: reserve(head) == 30.0, 10, "the head's reserve at 30 %", step_s=0.005)
            followed_s = wait_until(
                lambda: reserve(workers["north"]) == reserve(workers["south"]) == 30.0, 5,
                "both workers at the head's reserve", step_s=0.005,
            )  # fmt: skip

            scada_sets(BALANCING, False)
            wait_until(lambda: balancing() == [False, False], 5, "balancing off on both workers")

            workers["north"].kill()  # its config says 10 %: back, it must take the head's 30 % again
            wait_until(lambda: cluster(head.status(), "north").get("quality") == "failed", 5, "north out")
            workers["north"].start()
            wait_until(lambda: reserve(workers["north"]) == 30.0, 60, "rejoined north at the head's reserve")
            assert balancing()[0] is False

            scada_sets(RESERVE, 88.0)  # 88 + 2 < 95 on the head; 88 + 10 is not below 95 on south
            wait_until(lambda: reserve(workers["north"]) == 88.0, 10, "north at the head's 88 %")
            time.sleep(2 * HEAD_CYCLE_S + STATUS_POLL_SLACK_S)
            assert reserve(workers["south"]) == 30.0  # refused: it keeps its own
    finally:
        broker.stop()
    print(f"\nboth workers at the head's new reserve {followed_s:.3f} s after the head took it")
    assert followed_s <= 2 * HEAD_CYCLE_S + STATUS_POLL_SLACK_S
    south_log = workers["south"].log.read_text()
    assert "mqtt socgw-south (primary host head): command on spBv1.0/plant/NCMD/south refused" in south_log
    assert "`reserve_pct` = 88.0" in south_log
    assert "(primary host head) on spBv1.0/plant/NCMD/north: reserve_pct = 30.0 accepted" in (
        workers["north"].log.read_text()
    )
