"""The Sparkplug B edge node against a real Mosquitto, read by the independent Tahu decoder.

The engine runs on this test's uvloop and cycles when the test calls `cycles`; the MQTT adapter runs on
its own thread as in its child process; the simulated packs are frozen (speed 0) so values are exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from gateway.balancer import BalancerParams, SiteCommand, dispatch
from gateway.engine import Engine
from gateway.fleet import FleetState, NodeState, Quality
from gateway.mapping.sources import read_fleet, read_node
from gateway.northbound.mqtt import sparkplug_b_pb2 as pb
from gateway.northbound.mqtt.client import MqttAdapter
from gateway.northbound.mqtt.edge import EdgeNode, Topics
from gateway.northbound.mqtt.metrics import REBIRTH, DataType, metric_table, quantity_deadbands
from gateway.northbound.mqtt.payload import Reading, encode
from gateway.northbound.registry import create_adapters
from gateway.sim.fleet import FleetThread
from gateway.snapshot import CycleSnapshot
from tests.conftest import REPO, StartFleet, free_port
from tests.northbound.mqtt.support import Broker, Decoder, kind, metrics, publish
from tests.test_engine import site_config, until_online

pytestmark = pytest.mark.wire

T = TypeVar("T")
GROUP, EDGE = "plant", "gw1"
NODE_TOPIC = f"spBv1.0/{GROUP}/{{}}/{EDGE}"


@dataclasses.dataclass
class Gateway:
    engine: Engine
    adapter: MqttAdapter
    decoder: Decoder
    broker: Broker
    fleet: FleetThread

    async def cycles(self, count: int = 1) -> CycleSnapshot:
        for _ in range(count):
            snapshot = await self.engine.run_cycle()
            await asyncio.sleep(0.02)
        return snapshot

    async def next(self, match: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        """The next matching decoded message, cycling the engine meanwhile."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            await self.cycles()
            try:
                return self.decoder.next(match, timeout_s=0.08)
            except AssertionError:
                continue
        raise AssertionError(f"no matching Sparkplug message within {timeout_s} s")


def mqtt_section(port: int, more: str = "") -> str:
    return (
        f"northbound:\n  mqtt:\n    brokers: [{{host: 127.0.0.1, port: {port}}}]\n"
        f"    group_id: {GROUP}\n    edge_node_id: {EDGE}\n{more}"
    )


def with_gateway(
    tmp_path: Path,
    fleet: FleetThread,
    scenario: Callable[[Gateway], Awaitable[T]],
    *,
    broker: Broker | None = None,
    section: str | None = None,
) -> T:
    """Run `scenario` with an engine over `fleet`, the MQTT adapter of `section` (default: plain, to
    `broker`, default: a fresh one) and the decoder on the broker's plain listener."""
    broker = broker or Broker(tmp_path, free_port())
    decoder = Decoder(broker.port)
    config = site_config(tmp_path, fleet.endpoints, section or mqtt_section(broker.port))
    engine = Engine(config)

    async def run() -> T:
        (adapter,) = create_adapters(config, engine.submit)
        assert isinstance(adapter, MqttAdapter)
        await engine.start()
        try:
            adapter.start()
            engine.publishers.append(adapter)
            await until_online(engine, len(fleet.endpoints))
            return await scenario(Gateway(engine, adapter, decoder, broker, fleet))
        finally:
            adapter.stop()
            await engine.shutdown()

    try:
        return uvloop.run(asyncio.wait_for(run(), timeout=90))
    finally:
        decoder.close()
        broker.stop()


def is_(message_kind: str, device: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        if "payload" not in message or kind(message) != message_kind:
            return False
        return device is None or message["topic"].endswith(f"/{device}")

    return match


def value(metric: dict[str, Any]) -> Any:
    return None if metric.get("isNull") else metric["value"]


def test_births_decode_and_carry_the_fleet_state(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=3, speed=0)

    async def scenario(gw: Gateway) -> None:
        birth = await gw.next(is_("NBIRTH"))
        node = metrics(birth)
        table = gw.adapter._edge._table
        assert birth["payload"]["seq"] == 0
        assert value(node["bdSeq"]) == 0 and node["bdSeq"]["type"] == "Int64"
        assert value(node[REBIRTH]) is False
        assert {spec.name for spec in table.node} <= set(node)
        births = [await gw.next(is_("DBIRTH", node_id)) for node_id in ("pack-01", "pack-02", "pack-03")]
        snapshot = gw.adapter._edge.latest
        assert snapshot is not None
        for spec in table.node:
            if not spec.source.startswith("cycle."):
                expected = read_fleet(spec.source, snapshot)
                assert value(node[spec.name]) == pytest.approx(expected), spec.name
        assert node["mean_soc_pct"]["properties"]["engUnit"]["value"] == "%"
        for dbirth, state in zip(births, snapshot.fleet.nodes, strict=True):
            device = metrics(dbirth)
            assert set(device) == {spec.name for spec in table.device}
            for spec in table.device:
                assert value(device[spec.name]) == pytest.approx(read_node(spec.source, snapshot, state))
            assert device["soc_pct"]["properties"]["engHigh"]["value"] == 100
        seqs = [dbirth["payload"]["seq"] for dbirth in births]
        assert seqs == [1, 2, 3]

    with_gateway(tmp_path, fleet, scenario)


def test_soc_beyond_the_deadband_makes_ddata_inside_it_does_not(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)

    async def scenario(gw: Gateway) -> None:
        await gw.next(is_("DBIRTH", "pack-02"))
        soc = fleet.snapshot("pack-02").state.soc_pct
        fleet.update_state("pack-02", soc_pct=soc + 0.3)  # the deadband is 0.5 %
        await gw.cycles(5)
        quiet = [m for m in gw.decoder.drain() if "payload" in m and kind(m) == "DDATA"]
        assert all("soc_pct" not in metrics(m) for m in quiet if m["topic"].endswith("pack-02"))
        fleet.update_state("pack-02", soc_pct=soc + 2.0)
        data = await gw.next(lambda m: is_("DDATA", "pack-02")(m) and "soc_pct" in metrics(m))
        assert value(metrics(data)["soc_pct"]) == pytest.approx(soc + 2.0, abs=0.05)

    with_gateway(tmp_path, fleet, scenario)


def test_seq_counts_every_message_and_wraps(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)

    async def scenario(gw: Gateway) -> None:
        await gw.next(is_("DBIRTH", "pack-01"))
        soc = fleet.snapshot("pack-01").state.soc_pct
        seqs = [1]  # the DBIRTH's

        def ddata_noting_every_seq(message: dict[str, Any]) -> bool:
            if "payload" in message and kind(message) != "NDEATH":
                seqs.append(message["payload"]["seq"])
            return is_("DDATA", "pack-01")(message)

        for step in range(300):  # every cycle a SOC beyond the deadband: one DDATA each
            fleet.update_state("pack-01", soc_pct=soc + (1.0 if step % 2 == 0 else 0.0))
            await gw.next(ddata_noting_every_seq, timeout_s=5)
        assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(seqs)), seqs
        assert 0 in seqs[1:] and 255 in seqs

    with_gateway(tmp_path, fleet, scenario)


def test_a_silent_pack_gets_ddeath_and_dbirth_when_it_returns(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)

    async def scenario(gw: Gateway) -> None:
        await gw.next(is_("DBIRTH", "pack-02"))
        fleet.set_faults("pack-02", silent=True)
        death = await gw.next(is_("DDEATH", "pack-02"), timeout_s=30)
        assert "seq" in death["payload"]
        fleet.set_faults("pack-02", silent=False)
        await gw.next(is_("DBIRTH", "pack-02"), timeout_s=30)

    with_gateway(tmp_path, fleet, scenario)


def command(*entries: tuple[str, DataType, float | bool]) -> bytes:
    return encode((), 0, None, extra=entries)


def test_commands_go_through_the_control_table(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)

    async def scenario(gw: Gateway) -> None:
        await gw.next(is_("DBIRTH", "pack-02"))
        ncmd = NODE_TOPIC.format("NCMD")
        await asyncio.to_thread(
            publish, gw.broker.port, ncmd, command(("request_w", DataType.DOUBLE, 2000.0))
        )
        for _ in range(50):
            snapshot = await gw.cycles()
            if snapshot.command.request_w == 2000.0:
                break
        assert snapshot.command.request_w == 2000.0
        moved = await gw.cycles(2)
        assert sum(node.setpoint_w for node in moved.dispatch.nodes) == pytest.approx(2000.0, abs=1.0)
        before = dataclasses.replace(moved.command)
        params = moved.params
        refused = [
            command(("reserve_pct", DataType.DOUBLE, 150.0)),  # out of range
            command(("balancing_enabled", DataType.DOUBLE, 1.0)),  # wrong type
            command(("no_such_metric", DataType.DOUBLE, 1.0)),  # unknown
            command(("fleet.request_w", DataType.DOUBLE, 10.0)),  # unknown (the quantity, not the metric)
            command(("request_w", DataType.BOOLEAN, True)),  # wrong type
        ]
        for payload in refused:
            await asyncio.to_thread(publish, gw.broker.port, ncmd, payload)
        dcmd = NODE_TOPIC.format("DCMD") + "/pack-09"
        await asyncio.to_thread(
            publish, gw.broker.port, dcmd, command(("maintenance", DataType.BOOLEAN, True))
        )
        after = await gw.cycles(10)
        assert after.command == before and after.params == params
        pack = NODE_TOPIC.format("DCMD") + "/pack-01"
        await asyncio.to_thread(
            publish, gw.broker.port, pack, command(("maintenance", DataType.BOOLEAN, True))
        )
        for _ in range(50):
            snapshot = await gw.cycles()
            if "pack-01" in snapshot.command.maintenance:
                break
        assert "pack-01" in snapshot.command.maintenance

    with_gateway(tmp_path, fleet, scenario)


def test_rebirth_on_ncmd(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)

    async def scenario(gw: Gateway) -> None:
        first = await gw.next(is_("NBIRTH"))
        await gw.next(is_("DBIRTH", "pack-01"))
        ncmd = NODE_TOPIC.format("NCMD")
        await asyncio.to_thread(publish, gw.broker.port, ncmd, command((REBIRTH, DataType.BOOLEAN, True)))
        again = await gw.next(is_("NBIRTH"))
        assert again["payload"]["seq"] == 0
        assert value(metrics(again)["bdSeq"]) == value(metrics(first)["bdSeq"])
        await gw.next(is_("DBIRTH", "pack-01"))

    with_gateway(tmp_path, fleet, scenario)


def test_garbage_on_the_command_topics_changes_nothing(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)

    async def scenario(gw: Gateway) -> None:
        await gw.next(is_("DBIRTH", "pack-02"))
        before = await gw.cycles()
        submitted: list[object] = []
        edge = gw.adapter._edge
        real_submit = edge._submit

        def counting(update: Any, *, apply: bool = True) -> str | None:
            submitted.append(update)
            return real_submit(update, apply=apply)

        edge._submit = counting
        ncmd, dcmd = NODE_TOPIC.format("NCMD"), NODE_TOPIC.format("DCMD") + "/pack-01"
        junk = [bytes(range(1 + i % 255)) * (i % 7 + 1) for i in range(60)]
        junk += [b"\xff" * 200_000] * 5  # huge
        junk += [command(("request_w", DataType.STRING, 1.0))] * 5  # a number stored under a string type
        junk += [command(("maintenance", DataType.DOUBLE, 3.0))] * 10  # wrong type for a switch
        junk += [Reading.__name__.encode()] * 20  # text
        assert len(junk) == 100
        await asyncio.to_thread(
            _publish_all, gw.broker.port, [(ncmd if i % 2 else dcmd, p) for i, p in enumerate(junk)]
        )
        after = await gw.cycles(20)
        assert after.command == before.command and after.params == before.params
        assert submitted == []
        assert gw.adapter._thread is not None and gw.adapter._thread.is_alive()

    with_gateway(tmp_path, fleet, scenario)


def _publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    for topic, payload in messages:
        publish(port, topic, payload)


def _state(port: int, online: bool, timestamp: int) -> None:
    payload = f'{{"online": {"true" if online else "false"}, "timestamp": {timestamp}}}'.encode()
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "spBv1.0/STATE/scada1", "-r", "-q", "1",
         "-s"],
        input=payload, check=True, timeout=10,
    )  # fmt: skip


def test_births_wait_for_the_primary_host_and_its_death_restarts_the_session(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    broker = Broker(tmp_path, free_port())

    async def scenario(gw: Gateway) -> None:
        with pytest.raises(AssertionError):
            await gw.next(is_("NBIRTH"), timeout_s=2)
        await asyncio.to_thread(_state, gw.broker.port, True, 1000)
        first = await gw.next(is_("NBIRTH"))
        await asyncio.to_thread(_state, gw.broker.port, False, 2000)
        death = await gw.next(is_("NDEATH"))
        assert value(metrics(death)["bdSeq"]) == value(metrics(first)["bdSeq"])
        with pytest.raises(AssertionError):
            await gw.next(is_("NBIRTH"), timeout_s=2)
        await asyncio.to_thread(_state, gw.broker.port, True, 3000)
        again = await gw.next(is_("NBIRTH"))
        assert value(metrics(again)["bdSeq"]) == value(metrics(first)["bdSeq"]) + 1

    section = mqtt_section(broker.port, "    primary_host_id: scada1\n")
    with_gateway(tmp_path, fleet, scenario, broker=broker, section=section)


def test_packs_that_answered_before_the_snapshot_get_their_ddata_and_ddeath_first() -> None:
    table = metric_table(quantity_deadbands(REPO))
    edge = EdgeNode(Topics(GROUP, EDGE), table, ["pack-01", "pack-02"], lambda u, *, apply=True: None, "t")

    def at(cycle: int, first: NodeState, second: NodeState) -> CycleSnapshot:
        fleet = FleetState((first, second), timestamp_s=float(cycle))
        decision = dispatch(fleet, SiteCommand(), BalancerParams(), None, float(cycle))
        return CycleSnapshot(cycle, datetime.now(UTC), fleet, SiteCommand(), decision, BalancerParams())

    def pack(node_id: str, soc_pct: float | None) -> NodeState:
        quality = Quality.GOOD if soc_pct is not None else Quality.FAILED
        return NodeState(node_id, quality=quality, soc_pct=soc_pct, capacity_wh=2000.0)

    def shown(message: tuple[str, bytes]) -> tuple[str, int, dict[str, float]]:
        payload = pb.Payload.FromString(message[1])
        values = {m.name: m.double_value or m.float_value for m in payload.metrics}
        return message[0].split("/")[2], payload.seq, values

    assert edge.update_nodes([pack("pack-01", 60.0)], 1) == []  # nothing before the births
    births = edge.births(at(0, pack("pack-01", 50.0), pack("pack-02", 40.0)), 0)
    assert [shown(m)[0] for m in births] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    early = [shown(m) for m in edge.update_nodes([pack("pack-01", 60.0), pack("pack-02", None)], 1)]
    assert early == [("DDATA", 3, {"soc_pct": 60.0}), ("DDEATH", 4, {})]
    later = [shown(m) for m in edge.update(at(1, pack("pack-01", 60.0), pack("pack-02", None)))]
    assert [kind for kind, _, _ in later] == ["NDATA"]  # the packs were shown already
    assert later[0][2]["mean_soc_pct"] == 60.0  # the fleet's, with its snapshot
