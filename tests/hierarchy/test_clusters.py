"""A cluster as one big pack: the head-then-worker split equals one flat balancer over the site."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.balancer import BalancerParams, NodeMode, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState, Quality
from gateway.hierarchy.clusters import ClusterSummary, cluster_node, summarize

PARAMS = BalancerParams(setpoint_deadband_w=0.0, setpoint_deadband_pct=0.0)
BIG_LIMIT_W = 1e7  # no pack limit binds


def pack(node_id: str, soc_pct: float, capacity_wh: float, soh_pct: float = 100.0) -> NodeState:
    return NodeState(
        node_id,
        soc_pct=soc_pct,
        soh_pct=soh_pct,
        capacity_wh=capacity_wh,
        temp_c=25.0,
        charge_limit_w=BIG_LIMIT_W,
        discharge_limit_w=BIG_LIMIT_W,
    )


def hierarchical(clusters: list[tuple[NodeState, ...]], request_w: float) -> dict[str, float]:
    """The head splits over the clusters as packs, each worker splits its share over its packs."""
    summaries = [summarize(FleetState(packs, 0.0), PARAMS) for packs in clusters]
    heads = tuple(cluster_node(f"c{i}", summary, PARAMS) for i, summary in enumerate(summaries))
    head = dispatch(FleetState(heads, 0.0), SiteCommand(request_w=request_w), PARAMS, None, 0.0)
    setpoints: dict[str, float] = {}
    for index, packs in enumerate(clusters):
        share = head.node(f"c{index}").setpoint_w
        worker = dispatch(FleetState(packs, 0.0), SiteCommand(request_w=share), PARAMS, None, 0.0)
        setpoints.update(worker.setpoints_w)
    return setpoints


@st.composite
def site(draw: st.DrawFn) -> tuple[list[tuple[NodeState, ...]], float]:
    count = draw(st.integers(2, 24))
    packs = [
        pack(
            f"p{i}",
            draw(st.floats(0.0, 100.0, allow_subnormal=False)),
            draw(st.floats(500.0, 50_000.0)),
            draw(st.floats(70.0, 100.0)),
        )
        for i in range(count)
    ]
    cluster_count = draw(st.integers(1, min(6, count)))
    owner = [i % cluster_count for i in range(count)]  # every cluster gets a pack
    owner = draw(st.permutations(owner))
    clusters = [tuple(p for p, o in zip(packs, owner, strict=True) if o == c) for c in range(cluster_count)]
    return clusters, draw(st.floats(-50_000.0, 50_000.0))


@settings(max_examples=300, deadline=None)
@given(site())
def test_head_then_worker_equals_flat_when_no_limit_binds(
    case: tuple[list[tuple[NodeState, ...]], float],
) -> None:
    clusters, request_w = case
    flat = dispatch(
        FleetState(tuple(p for c in clusters for p in c), 0.0),
        SiteCommand(request_w=request_w),
        PARAMS,
        None,
        0.0,
    ).setpoints_w
    split = hierarchical(clusters, request_w)
    assert split.keys() == flat.keys()
    for node_id, setpoint in flat.items():
        assert math.isclose(split[node_id], setpoint, rel_tol=1e-9, abs_tol=1e-6), (node_id, split, flat)


def test_a_cluster_of_packs_between_reserve_and_ceiling_is_their_energy_at_their_mean_soc() -> None:
    packs = (pack("a", 40.0, 10_000.0), pack("b", 80.0, 30_000.0, soh_pct=90.0))
    node = cluster_node("north", summarize(FleetState(packs, 0.0), PARAMS), PARAMS)
    assert node.capacity_wh is not None and node.soc_pct is not None
    assert math.isclose(node.capacity_wh, 10_000.0 + 27_000.0)
    assert math.isclose(node.soc_pct, (40.0 * 10_000.0 + 80.0 * 27_000.0) / 37_000.0)
    assert node.discharge_limit_w == node.charge_limit_w == 2 * BIG_LIMIT_W


def test_a_cluster_without_summary_or_packs_online_is_failed_and_out_of_the_dispatch() -> None:
    gone = cluster_node("north", None, PARAMS, error_code="E_NDEATH")
    empty = ClusterSummary(0.0, 0.0, 0.0, 0.0, packs_online=0, packs_total=12)
    assert (gone.quality, gone.error_code) == (Quality.FAILED, "E_NDEATH")
    assert cluster_node("south", empty, PARAMS).quality is Quality.FAILED
    live = cluster_node("east", summarize(FleetState((pack("p", 50.0, 1000.0),), 0.0), PARAMS), PARAMS)
    result = dispatch(FleetState((gone, live), 0.0), SiteCommand(request_w=500.0), PARAMS, None, 0.0)
    assert result.node("north").mode is NodeMode.OFFLINE
    assert result.node("east").setpoint_w == 500.0


def test_summary_from_metrics_needs_the_energies_and_limits() -> None:
    metrics: dict[str, object] = {
        "energy_above_reserve_wh": 1000.0,
        "energy_below_ceiling_wh": 2000.0,
        "available_charge_w": 5.0,
        "available_discharge_w": 6.0,
        "nodes_online": 3,
        "nodes_total": 4,
        "mean_soc_pct": None,
    }
    summary = ClusterSummary.from_metrics(metrics)
    assert summary == ClusterSummary(1000.0, 2000.0, 5.0, 6.0, 3, 4)
    assert ClusterSummary.from_metrics({**metrics, "energy_below_ceiling_wh": None}) is None
    assert ClusterSummary.from_metrics({**metrics, "nodes_online": True}) is None
    # a faulty or forged NaN / inf is unknown: the cluster leaves the dispatch, nothing is split by it
    for bad in (math.nan, math.inf, -math.inf):
        assert ClusterSummary.from_metrics({**metrics, "energy_above_reserve_wh": bad}) is None
        assert ClusterSummary.from_metrics({**metrics, "available_discharge_w": bad}) is None
        assert ClusterSummary.from_metrics({**metrics, "power_w": bad}) == summary


def test_a_returning_cluster_is_ramped_in_at_the_head_s_ramp_limit() -> None:
    params = dataclasses.replace(PARAMS, ramp_w_per_s=1000.0)
    north = (pack("n1", 60.0, 10_000.0), pack("n2", 60.0, 10_000.0))
    south = (pack("s1", 60.0, 20_000.0),)

    def clusters(north_online: bool) -> FleetState:
        summary = summarize(FleetState(north, 0.0), params) if north_online else None
        south_node = cluster_node("south", summarize(FleetState(south, 0.0), params), params)
        return FleetState((cluster_node("north", summary, params, error_code="E_NDEATH"), south_node), 0.0)

    command = SiteCommand(request_w=4000.0)
    memory = dispatch(clusters(True), command, params, None, 0.0).memory
    gone = dispatch(clusters(False), command, params, memory, 0.1)
    assert gone.node("north").setpoint_w == 0.0  # out at once: an offline node is not ramped down
    memory, shares = gone.memory, []
    for cycle in range(2, 40):
        result = dispatch(clusters(True), command, params, memory, cycle * 0.1)
        memory = result.memory
        shares.append(result.node("north").setpoint_w)
    steps = [later - earlier for earlier, later in zip([0.0, *shares], shares, strict=False)]
    assert max(steps) <= 1000.0 * 0.1 + 1e-6  # ramp_w_per_s × the head's cycle
    assert math.isclose(shares[-1], 2000.0)  # back to its full share
