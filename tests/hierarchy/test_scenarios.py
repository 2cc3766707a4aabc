"""The balancing scenarios run flat (one controller) and as four clusters under a head, on the
simulator's pack physics: the same energy delivered before the first pack reaches its reserve."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import pytest

from gateway.balancer import BalancerMemory, BalancerParams, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState
from gateway.hierarchy.clusters import ClusterSummary, cluster_node, summarize
from gateway.profiles.loader import ProfileLibrary
from gateway.sim import physics
from gateway.sim.scenario import PackSpec, load_scenario
from tests.conftest import REPO

PARAMS = BalancerParams()  # the defaults a site runs: deadbands, reserve 10 %, ceiling 95 %
DT_S = 5.0
Splitter = Callable[[FleetState, float], Mapping[str, float]]


def node_state(spec: PackSpec, state: physics.PackState) -> NodeState:
    op = physics.operating_point(spec.params, state)
    return NodeState(
        spec.pack_id, soc_pct=state.soc_pct, soh_pct=spec.params.soh_pct, capacity_wh=spec.params.capacity_wh,
        power_w=op.power_w, temp_c=state.temp_c, temp_max_c=op.temp_max_c, charge_limit_w=op.limits.charge_w,
        discharge_limit_w=op.limits.discharge_w, setpoint_w=state.setpoint_w, state=op.state,
    )  # fmt: skip


class Flat:
    def __init__(self) -> None:
        self.memory: BalancerMemory | None = None

    def __call__(self, fleet: FleetState, request_w: float) -> Mapping[str, float]:
        result = dispatch(fleet, SiteCommand(request_w), PARAMS, self.memory, fleet.timestamp_s)
        self.memory = result.memory
        return result.setpoints_w


class Hierarchy:
    """A head over `clusters`, seeing each worker's summary of the cycle before (it travels by MQTT)."""

    def __init__(self, clusters: Sequence[Sequence[str]]) -> None:
        self.clusters = [tuple(c) for c in clusters]
        self.head: BalancerMemory | None = None
        self.workers: list[BalancerMemory | None] = [None] * len(clusters)
        self.summaries: list[ClusterSummary] | None = None

    def __call__(self, fleet: FleetState, request_w: float) -> Mapping[str, float]:
        now = fleet.timestamp_s
        parts = [FleetState(tuple(fleet.node(i) for i in ids), now) for ids in self.clusters]
        seen = self.summaries or [summarize(part, PARAMS) for part in parts]
        heads = tuple(cluster_node(f"c{k}", summary, PARAMS) for k, summary in enumerate(seen))
        head = dispatch(FleetState(heads, now), SiteCommand(request_w), PARAMS, self.head, now)
        self.head = head.memory
        setpoints: dict[str, float] = {}
        for k, part in enumerate(parts):
            share = SiteCommand(head.node(f"c{k}").setpoint_w)
            worker = dispatch(part, share, PARAMS, self.workers[k], now)
            self.workers[k] = worker.memory
            setpoints.update(worker.setpoints_w)
        self.summaries = [summarize(part, PARAMS) for part in parts]
        return setpoints


def delivered_until_reserve(specs: Sequence[PackSpec], split: Splitter, request_w: float) -> float:
    """Wh delivered until the first pack is at its reserve."""
    states = {spec.pack_id: spec.initial for spec in specs}
    delivered_wh = 0.0
    for cycle in range(100_000):
        fleet = FleetState(tuple(node_state(s, states[s.pack_id]) for s in specs), cycle * DT_S)
        if any(node.soc_pct is not None and node.soc_pct <= PARAMS.reserve_pct for node in fleet.nodes):
            return delivered_wh
        setpoints = split(fleet, request_w)
        for spec in specs:
            state = dataclasses.replace(states[spec.pack_id], setpoint_w=setpoints[spec.pack_id])
            delivered_wh += physics.terminal_power_w(spec.params, state) * DT_S / 3600.0
            states[spec.pack_id] = physics.step(spec.params, state, DT_S)
    raise AssertionError("no pack reached its reserve")


@pytest.mark.parametrize("name", ["default", "four-equal"])
def test_four_clusters_deliver_what_one_does_before_the_first_pack_reaches_reserve(
    name: str, profile_library: ProfileLibrary
) -> None:
    specs = load_scenario(REPO / "scenarios" / f"{name}.yaml", profile_library.get).packs
    ids = [spec.pack_id for spec in specs]
    clusters = [ids[k::4] for k in range(4)]
    above_reserve_wh = FleetState(
        tuple(node_state(s, s.initial) for s in specs), 0.0
    ).energy_above_reserve_wh(PARAMS.reserve_pct)
    request_w = 0.4 * sum(spec.params.max_discharge_w for spec in specs)
    flat = delivered_until_reserve(specs, Flat(), request_w)
    split = delivered_until_reserve(specs, Hierarchy(clusters), request_w)
    one = delivered_until_reserve(specs, Hierarchy([ids]), request_w)
    points = [100.0 * value / above_reserve_wh for value in (flat, one, split)]
    print(f"\n{name}: delivered before the first reserve, % of the energy above reserve: flat "
          f"{points[0]:.2f}, 1 cluster {points[1]:.2f}, 4 clusters {points[2]:.2f}")  # fmt: skip
    assert points[0] > 50.0  # a long run, not a few cycles
    assert abs(points[2] - points[1]) <= 0.5
    assert abs(points[2] - points[0]) <= 0.5
