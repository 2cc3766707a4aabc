"""A head serves every pack behind its workers upstream, from their DDATA: a real head and two workers over
Mosquitto on loopback, read by dnp3py (DNP3), libiec61850's client (IEC 61850) and Eclipse Tahu's decoder
(MQTT), each against the simulator's own values; a killed worker's packs go COMM_LOST / invalid / DDEATH."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from gateway.config import load_config
from gateway.mapping.dnp3 import PointType
from gateway.northbound.dnp3.settings import parse_settings
from gateway.northbound.iec61850.plan import device_name_for
from gateway.sim.fleet import FleetThread
from tests.conftest import PROFILES, StartFleet, free_port
from tests.hierarchy.support import Controller, cluster, head_config, running, wait_until, worker_config
from tests.northbound.dnp3.support import connected_master
from tests.northbound.iec61850.helpers import iec_section, run_client
from tests.northbound.mqtt.support import Broker, Decoder, kind, metrics

pytestmark = pytest.mark.wire

ONLINE, COMM_LOST = 0x01, 0x04  # DNP3 analog input flags
IEC_VALIDITY_MASK, IEC_INVALID = 0b11, 0b10  # IEC 61850 quality: its validity bits, and invalid
SOC_SLACK_PCT = 0.6  # the simulator's SOC moves while the value travels; deadbands 0.1-0.5 %


def soc_indexes(config: Path, packs: list[str]) -> dict[str, tuple[int, float]]:
    """Each pack's DNP3 analog input carrying its SOC: (index, scale), from the head's own map."""
    parsed = parse_settings(load_config(config, [PROFILES]))
    assert parsed is not None
    points = parsed[1].expand(packs)
    return {
        point.node_id: (point.index, point.spec.scale)
        for point in points
        if point.type is PointType.ANALOG_INPUT and point.spec.source == "node.soc_pct" and point.node_id
    }


def simulated_soc(fleets: dict[str, FleetThread], pack: str) -> float:
    worker, pack_id = pack.split("-", 1)
    return float(fleets[worker].snapshot(pack_id).state.soc_pct)


async def dnp3_socs(port: int, indexes: dict[str, tuple[int, float]]) -> dict[str, tuple[float, int]]:
    async with connected_master(port) as master:
        await master.integrity_poll()
        analog = master.handler.analog_inputs
        return {
            pack: (analog[index].value * scale, analog[index].quality)
            for pack, (index, scale) in indexes.items()
        }


def is_death_of(pack: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: kind(message) == "DDEATH" and message["topic"].endswith(f"/{pack}")


def iec_soc(port: int, pack: str) -> dict[str, Any]:
    device = f"SOCGW{device_name_for(pack)}"
    return run_client(port, "read", f"{device}/ZBAT1.Soc.mag.f", "MX", f"{device}/ZBAT1.Soc.q", "MX")


def test_the_head_serves_every_pack_behind_its_workers_on_dnp3_iec61850_and_mqtt(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    broker = Broker(tmp_path, free_port())
    address = [("127.0.0.1", broker.port)]
    fleets = {name: start_sim_fleet(packs=2) for name in ("north", "south")}
    workers = {
        name: Controller(worker_config(tmp_path, name, fleet, address)) for name, fleet in fleets.items()
    }
    packs = {name: [f"{name}-{e.pack_id}" for e in fleet.endpoints] for name, fleet in fleets.items()}
    every_pack = [pack for names in packs.values() for pack in names]
    dnp3_port, mms_port = free_port(), free_port()
    head = Controller(head_config(tmp_path, list(workers), address, 2000.0, packs=packs))
    head.config.write_text(
        head.config.read_text()
        + f"northbound:\n  dnp3: {{host: 127.0.0.1, port: {dnp3_port}}}\n"
        + iec_section(mms_port).removeprefix("northbound:\n")
        + f"  mqtt: {{brokers: [{{host: 127.0.0.1, port: {broker.port}}}], group_id: scada, "
        "edge_node_id: site}\n"
    )
    indexes = soc_indexes(head.config, every_pack)
    assert set(indexes) == set(every_pack)
    scada = Decoder(broker.port, "spBv1.0/scada/#")
    try:
        with running([*workers.values(), head]):
            wait_until(
                lambda: all(cluster(head.status(), w).get("quality") == "good" for w in workers)
                and all(row["quality"] == "good" for row in (head.status() or {}).get("packs", [{}])),
                60, "both clusters and all four packs good at the head",
            )  # fmt: skip
            rows = {row["id"]: row for row in (head.status() or {})["packs"]}
            assert {pack: row["worker"] for pack, row in rows.items()} == {
                pack: worker for worker, names in packs.items() for pack in names
            }

            # DNP3: every pack's SOC, good, as the simulator has it
            served = uvloop.run(asyncio.wait_for(dnp3_socs(dnp3_port, indexes), 30))
            for pack, (soc, quality) in served.items():
                assert quality & (ONLINE | COMM_LOST) == ONLINE, (pack, hex(quality))
                assert soc == pytest.approx(simulated_soc(fleets, pack), abs=SOC_SLACK_PCT), pack
            # IEC 61850: a pack of each worker, in its own logical device
            for pack in (packs["north"][0], packs["south"][1]):
                read = iec_soc(mms_port, pack)
                assert read["values"][0] == pytest.approx(simulated_soc(fleets, pack), abs=SOC_SLACK_PCT), (
                    read
                )
                assert read["values"][1] == 0, read  # good
            # MQTT: each pack is a device of the head's edge node
            born = {}
            for _ in range(len(every_pack)):
                message = scada.next(lambda m: "payload" in m and kind(m) == "DBIRTH", timeout_s=30)
                born[message["topic"].rsplit("/", 1)[1]] = metrics(message)
            assert set(born) == set(every_pack)
            assert born[packs["south"][0]]["soc_pct"]["value"] == pytest.approx(
                simulated_soc(fleets, packs["south"][0]), abs=SOC_SLACK_PCT
            )

            workers["south"].kill()
            wait_until(lambda: cluster(head.status(), "south").get("quality") == "failed", 10, "south out")
            for pack in packs["south"]:  # its packs: DDEATH upstream
                scada.next(is_death_of(pack), 10)
            served = uvloop.run(asyncio.wait_for(dnp3_socs(dnp3_port, indexes), 30))
            for pack, (_, quality) in served.items():
                lost = pack in packs["south"]
                assert quality & (ONLINE | COMM_LOST) == (COMM_LOST if lost else ONLINE), (pack, hex(quality))
            read = iec_soc(mms_port, packs["south"][1])
            assert read["values"][1] & IEC_VALIDITY_MASK == IEC_INVALID, read
            status_rows = {row["id"]: row for row in (head.status() or {})["packs"]}
            assert status_rows[packs["south"][0]]["error"] == "E_NDEATH"
            assert status_rows[packs["north"][0]]["quality"] == "good"
    finally:
        scada.close()
        broker.stop()
