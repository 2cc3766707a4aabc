"""The packs a head serves upstream, rebuilt from its workers' Sparkplug messages: a worker's own edge
node encodes them, the head decodes them, and every pack quantity reads the same on both sides."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from gateway.balancer import BalancerParams, NodeMode, SiteCommand, dispatch
from gateway.config import ClusterConfig, load_config
from gateway.fleet import FleetState, NodeState, Quality
from gateway.hierarchy.head import ClusterFieldbus
from gateway.hierarchy.packs import E_NOT_REPORTED, E_PACK_OFFLINE, E_STALE_AT_WORKER, PackView
from gateway.hierarchy.settings import parse_head
from gateway.hierarchy.tracker import E_NDEATH, ClusterTracker, Received, parse_topic
from gateway.mapping.sources import NODE_SOURCES, read_fleet, read_node
from gateway.northbound.mqtt.edge import EdgeNode, Topics
from gateway.northbound.mqtt.metrics import metric_table
from gateway.northbound.mqtt.payload import decode_message
from gateway.snapshot import CycleSnapshot
from tests.conftest import PROFILES

GROUP = "plant"
PARAMS = BalancerParams(reserve_pct=10.0, ceiling_pct=95.0)
COMMAND = SiteCommand(request_w=3000.0)
CLUSTERS = (
    ClusterConfig("north", ("north-01", "north-02", "north-03")),
    ClusterConfig("south", ("south-01",)),
)


def pack(node_id: str, soc_pct: float, **fields: object) -> NodeState:
    values: dict[str, object] = {
        "capacity_wh": 10_000.0, "soh_pct": 97.0, "voltage_v": 51.2, "current_a": 12.5, "power_w": 640.0,
        "temp_c": 27.0, "temp_max_c": 31.5, "temp_min_c": 24.0, "cell_voltage_min_v": 3.19,
        "cell_voltage_max_v": 3.24, "charge_limit_w": 5000.0, "discharge_limit_w": 4500.0, **fields,
    }  # fmt: skip
    return NodeState(node_id, soc_pct=soc_pct, **values)  # type: ignore[arg-type]


def snapshot_of(nodes: tuple[NodeState, ...], index: int = 0) -> CycleSnapshot:
    fleet = FleetState(nodes, timestamp_s=float(index))
    decision = dispatch(fleet, COMMAND, PARAMS, None, float(index))
    return CycleSnapshot(index, datetime.now(UTC), fleet, COMMAND, decision, PARAMS)


def received(topic: str, data: bytes) -> Received:
    """A worker's message as the head's host thread decodes it."""
    parsed = parse_topic(topic, GROUP)
    assert parsed is not None
    kind, worker, device = parsed
    decoded = decode_message(data, 1 << 20)
    return Received(0, kind, worker, device, decoded.seq, decoded.metrics, decoded.stale)


class Worker:
    """A worker's real edge node (zero deadbands: every change is published) feeding the head's tracker
    through the bytes it would send, decoded by the head's own decoder."""

    def __init__(self, name: str, nodes: tuple[str, ...], head: ClusterTracker | ClusterFieldbus) -> None:
        self.edge = EdgeNode(Topics(GROUP, name), metric_table({}), nodes, lambda u, *, apply=True: None, "t")
        self.head = head

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        for topic, data in messages:
            if isinstance(self.head, ClusterTracker):
                self.head.apply(received(topic, data), 0.0)
            else:
                self.head._apply(received(topic, data))  # as the host thread hands it to the loop

    def births(self, snapshot: CycleSnapshot) -> None:
        self.send(self.edge.births(snapshot, 0))

    def update(self, snapshot: CycleSnapshot) -> None:
        self.send(self.edge.update(snapshot))


def head_snapshot(view: PackView, tracker: ClusterTracker) -> CycleSnapshot:
    clusters = tracker.states(PARAMS, 0.0)
    return view.snapshot(snapshot_of(clusters), tracker)


def served_quantities(snapshot: CycleSnapshot, node_id: str) -> dict[str, object]:
    node = next(n for n in snapshot.fleet.nodes if n.node_id == node_id)
    return {name: read_node(name, snapshot, node) for name in NODE_SOURCES}


def test_every_pack_quantity_reads_upstream_as_its_worker_reads_it() -> None:
    tracker = ClusterTracker(["north", "south"], 7.5)
    view = PackView(CLUSTERS)
    north = Worker("north", CLUSTERS[0].packs, tracker)
    nodes = (
        pack("north-01", 72.5, state="fault"),  # the device's fault: not dispatched
        pack("north-02", 41.0, temp_max_c=58.0),  # hot: thermal bypass and its alarm
        pack("north-03", 9.0, power_w=-120.0),  # at reserve
    )
    at_worker = snapshot_of(nodes)
    north.births(at_worker)
    upstream = head_snapshot(view, tracker)
    for node in nodes:
        assert served_quantities(upstream, node.node_id) == served_quantities(at_worker, node.node_id)
    modes = {n.node_id: n.mode for n in at_worker.dispatch.nodes}
    assert {n.node_id: n.mode for n in upstream.dispatch.nodes if n.node_id in modes} == modes
    assert modes["north-02"] is NodeMode.BYPASSED_THERMAL and modes["north-03"] is NodeMode.AT_RESERVE
    assert upstream.dispatch.served_w == upstream.dispatch.requested_w  # the head's own dispatch totals
    # the site's aggregates are the packs' own (south's pack is offline), not the clusters' equivalents
    clusters = snapshot_of(tracker.states(PARAMS, 0.0))
    for aggregate in ("fleet.mean_soc_pct", "fleet.soc_spread_pct", "fleet.stored_energy_wh"):
        assert (
            read_fleet(aggregate, upstream)
            == read_fleet(aggregate, at_worker)
            != read_fleet(aggregate, clusters)
        )
    assert read_fleet("fleet.nodes_total", upstream) == 4 and read_fleet("fleet.nodes_online", upstream) == 3

    moved = (pack("north-01", 70.0), nodes[1], nodes[2])
    north.update(snapshot_of(moved, 1))
    assert served_quantities(head_snapshot(view, tracker), "north-01") == served_quantities(
        snapshot_of(moved, 1), "north-01"
    )


def test_a_pack_s_quality_upstream_follows_its_worker_and_what_the_worker_says_of_it() -> None:
    tracker = ClusterTracker(["north", "south"], 7.5)
    view = PackView(CLUSTERS)
    north = Worker("north", CLUSTERS[0].packs, tracker)

    def qualities() -> dict[str, tuple[Quality, str | None]]:
        return {n.node_id: (n.quality, n.error_code) for n in head_snapshot(view, tracker).fleet.nodes}

    assert qualities()["north-01"] == (Quality.FAILED, "E_NOT_BORN")
    north.births(snapshot_of((pack("north-01", 50.0), pack("north-02", 50.0))))  # north-03 not configured
    assert qualities() == {
        "north-01": (Quality.GOOD, None),
        "north-02": (Quality.GOOD, None),
        "north-03": (Quality.FAILED, E_NOT_REPORTED),
        "south-01": (Quality.FAILED, "E_NOT_BORN"),
    }
    stale = NodeState(
        "north-01", quality=Quality.STALE, error_code="E_TIMEOUT", soc_pct=50.0, capacity_wh=1.0
    )
    north.update(
        snapshot_of((stale, NodeState("north-02", quality=Quality.FAILED, error_code="E_TIMEOUT")), 1)
    )
    assert qualities()["north-01"] == (Quality.STALE, E_STALE_AT_WORKER)
    assert qualities()["north-02"] == (Quality.FAILED, E_PACK_OFFLINE)  # its DDEATH
    north.update(snapshot_of((pack("north-01", 50.0), pack("north-02", 50.0)), 2))
    assert qualities()["north-01"] == qualities()["north-02"] == (Quality.GOOD, None)  # DBIRTH again
    tracker.apply(Received(0, "NDEATH", "north", None, None, (("bdSeq", 0),)), 1.0)
    assert qualities()["north-01"] == (Quality.FAILED, E_NDEATH)


def test_a_pack_reported_by_the_wrong_worker_is_not_served_and_is_named() -> None:
    tracker = ClusterTracker(["north", "south"], 7.5)
    view = PackView(CLUSTERS)
    south = Worker("south", ("south-01", "north-01", "stray-9"), tracker)
    south.births(snapshot_of((pack("south-01", 60.0), pack("north-01", 61.0), pack("stray-9", 62.0))))
    worker = tracker.workers["south"]
    assert view.check_claim(worker, "south-01")
    assert not view.check_claim(worker, "north-01")
    assert not view.check_claim(worker, "stray-9")
    served = {n.node_id: n.quality for n in head_snapshot(view, tracker).fleet.nodes}
    assert served == {
        "north-01": Quality.FAILED,  # north is not born: south's report of it is not north-01 upstream
        "north-02": Quality.FAILED,
        "north-03": Quality.FAILED,
        "south-01": Quality.GOOD,
    }


def test_a_pack_is_rebuilt_only_when_its_worker_said_something_new() -> None:
    tracker = ClusterTracker(["north", "south"], 7.5)
    view = PackView(CLUSTERS)
    north = Worker("north", CLUSTERS[0].packs, tracker)
    nodes = (pack("north-01", 50.0), pack("north-02", 60.0))
    north.births(snapshot_of(nodes))
    first = view.served("north-01", tracker)
    assert view.served("north-01", tracker) is first
    north.update(snapshot_of((pack("north-01", 50.5), nodes[1]), 1))
    again = view.served("north-01", tracker)
    assert again is not first and again[0].soc_pct == 50.5
    assert view.served("north-02", tracker)[0].soc_pct == 60.0


def test_each_pack_goes_to_the_head_s_adapters_as_its_ddata_arrives_and_each_snapshot_has_them_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "head.yaml"
    path.write_text(
        "site: {name: plant, role: head}\nnodes: []\nhierarchy:\n  brokers: [{host: 127.0.0.1}]\n"
        "  group_id: plant\n  workers:\n    - {id: north, packs: [north-01, north-02, north-03]}\n"
        "    - {id: south, packs: [south-01]}\n"
    )
    config = load_config(path, [PROFILES])
    fieldbus = ClusterFieldbus(parse_head(config), config.balancer)
    arrived: list[NodeState] = []
    published: list[CycleSnapshot] = []
    upstream = fieldbus.upstream(published.append, arrived.append)
    north = Worker("north", CLUSTERS[0].packs, fieldbus)
    north.births(snapshot_of((pack("north-01", 50.0), pack("north-02", 60.0))))
    assert [state.node_id for state in arrived] == ["north-01", "north-02"]  # their DBIRTHs
    north.update(snapshot_of((pack("north-01", 51.0), pack("north-02", 60.0)), 1))
    assert [state.soc_pct for state in arrived if state.node_id == "north-01"] == [50.0, 51.0]
    upstream.publish(snapshot_of(fieldbus.tracker.states(PARAMS, 0.0)))
    assert [n.node_id for n in published[-1].fleet.nodes] == ["north-01", "north-02", "north-03", "south-01"]
    assert fieldbus.pack_rows()[0] | {"worker": "north"} == fieldbus.pack_rows()[0]


def test_a_nan_or_inf_from_a_worker_is_served_as_unknown_not_as_a_number() -> None:
    tracker = ClusterTracker(["north", "south"], 7.5)
    view = PackView(CLUSTERS)
    Worker("north", CLUSTERS[0].packs, tracker).births(snapshot_of((pack("north-01", 50.0),)))
    report = tracker.workers["north"].packs["north-01"]
    report.take((("soc_pct", math.nan), ("power_w", math.inf), ("setpoint_w", -math.inf)), frozenset())
    state, decision = view.served("north-01", tracker)
    assert state.soc_pct is None and state.power_w is None and decision.setpoint_w == 0.0
    assert not state.online  # no SOC: the quality rule shows it as offline upstream
    assert read_fleet("fleet.mean_soc_pct", head_snapshot(view, tracker)) is None
