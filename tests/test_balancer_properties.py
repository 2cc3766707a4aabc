"""Properties of the balancer that must hold for every fleet and request (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.balancer import (
    BalancerParams,
    ChargeSource,
    Dispatch,
    NodeMode,
    SiteCommand,
    dispatch,
    water_fill,
)
from gateway.fleet import FleetState, NodeState, Quality

TOLERANCE_W = 1e-6


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=TOLERANCE_W)


soc = st.floats(0.0, 100.0, allow_subnormal=False)
power = st.floats(0.0, 5000.0)


@st.composite
def nodes(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 8, hottest_c: float = 45.0
) -> tuple[NodeState, ...]:
    """Up to `max_size` packs, temperatures 15 °C to `hottest_c`. With hottest_c <= 18 no pack can be 3 °C
    above the mean: no thermal derating or bypass with the default parameters."""
    count = draw(st.integers(min_size, max_size))
    return tuple(
        NodeState(
            f"n{i}",
            quality=draw(st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.STALE, Quality.FAILED])),
            age_s=draw(st.sampled_from([0.0, 0.1, 0.3, 1.0])),
            soc_pct=draw(soc),
            soh_pct=draw(st.floats(50.0, 100.0)),
            capacity_wh=draw(st.floats(100.0, 20_000.0)),
            temp_c=draw(st.floats(15.0, hottest_c)),
            charge_limit_w=draw(power),
            discharge_limit_w=draw(power),
        )
        for i in range(count)
    )


@st.composite
def params(draw: st.DrawFn) -> BalancerParams:
    reserve = draw(st.floats(0.0, 30.0))
    return BalancerParams(
        reserve_pct=reserve,
        ceiling_pct=draw(st.floats(reserve + 5.0, 100.0)),
        setpoint_deadband_w=0.0,
        setpoint_deadband_pct=0.0,
    )


requests = st.floats(-30_000.0, 30_000.0)
sources = st.sampled_from(list(ChargeSource))


def run(
    fleet_nodes: tuple[NodeState, ...], request_w: float, p: BalancerParams, **command: object
) -> Dispatch:
    return dispatch(FleetState(fleet_nodes, 0.0), SiteCommand(request_w, **command), p, None, 0.0)  # type: ignore[arg-type]


def capability_w(fleet_nodes: tuple[NodeState, ...], p: BalancerParams, discharging: bool) -> float:
    """What the fleet can deliver, computed independently of the balancer (no memory: no latches)."""
    total = 0.0
    for node in fleet_nodes:
        online = node.quality is not Quality.FAILED and node.age_s <= p.max_telemetry_age_s
        assert (
            node.soc_pct is not None
            and node.discharge_limit_w is not None
            and node.charge_limit_w is not None
        )
        if not online or node.usable_energy_wh is None:
            continue
        if discharging and node.usable_energy_wh * (node.soc_pct - p.reserve_pct) / 100.0 > 0.0:
            total += node.discharge_limit_w
        if not discharging and node.soc_pct < p.ceiling_pct:
            total += node.charge_limit_w
    return total


@settings(max_examples=300)
@given(nodes(hottest_c=18.0), requests, params(), sources, st.booleans())
def test_setpoints_meet_the_request_when_feasible_and_the_limits_otherwise(
    fleet_nodes: tuple[NodeState, ...],
    request_w: float,
    p: BalancerParams,
    source: ChargeSource,
    balancing: bool,
) -> None:
    result = run(fleet_nodes, request_w, p, charge_source=source, balancing_enabled=balancing)
    capability = capability_w(fleet_nodes, p, request_w > 0.0)
    expected = math.copysign(min(abs(request_w), capability), request_w)
    assert close(result.served_w, expected)
    assert close(result.served_w + result.unserved_w, request_w)
    assert close(sum(result.setpoints_w.values()), result.served_w)


@settings(max_examples=300)
@given(nodes(), requests, params(), sources, st.booleans())
def test_every_setpoint_is_within_its_nodes_thermally_derated_limits(
    fleet_nodes: tuple[NodeState, ...],
    request_w: float,
    p: BalancerParams,
    source: ChargeSource,
    balancing: bool,
) -> None:
    result = run(fleet_nodes, request_w, p, charge_source=source, balancing_enabled=balancing)
    online = [n for n in fleet_nodes if n.quality is not Quality.FAILED and n.age_s <= p.max_telemetry_age_s]
    temps = [n.temp_c for n in online if n.temp_c is not None]
    mean_c = sum(temps) / len(temps) if temps else 0.0
    for node, out in zip(fleet_nodes, result.nodes, strict=True):
        assert (
            node.temp_c is not None and node.charge_limit_w is not None and node.discharge_limit_w is not None
        )
        # Independent of the balancer's code: the share of its limits a node keeps at its temperature.
        kept = (mean_c + p.thermal_delta_c - node.temp_c) / p.thermal_derate_c if node in online else 1.0
        kept = min(1.0, max(0.0, kept))
        assert -kept * node.charge_limit_w - TOLERANCE_W <= out.setpoint_w
        assert out.setpoint_w <= kept * node.discharge_limit_w + TOLERANCE_W
        if out.mode not in (NodeMode.ACTIVE, NodeMode.AT_RESERVE):
            assert out.setpoint_w == 0.0


@settings(max_examples=300)
@given(nodes(), st.floats(0.0, 30_000.0), params())
def test_no_node_at_or_below_reserve_discharges(
    fleet_nodes: tuple[NodeState, ...], request_w: float, p: BalancerParams
) -> None:
    result = run(fleet_nodes, request_w, p)
    for node, out in zip(fleet_nodes, result.nodes, strict=True):
        assert node.soc_pct is not None
        if node.soc_pct <= p.reserve_pct:
            assert out.setpoint_w <= 0.0
            assert out.mode is not NodeMode.ACTIVE


@settings(max_examples=200)
@given(nodes(min_size=2), requests, params(), sources, st.randoms(use_true_random=False))
def test_permuting_the_nodes_permutes_the_result(
    fleet_nodes: tuple[NodeState, ...], request_w: float, p: BalancerParams, source: ChargeSource, rng: object
) -> None:
    shuffled = list(fleet_nodes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    original = run(fleet_nodes, request_w, p, charge_source=source)
    permuted = run(tuple(shuffled), request_w, p, charge_source=source)
    assert [out.node_id for out in permuted.nodes] == [node.node_id for node in shuffled]
    for node_id, setpoint in original.setpoints_w.items():
        assert math.isclose(permuted.node(node_id).setpoint_w, setpoint, rel_tol=1e-9, abs_tol=1e-6)
        assert permuted.node(node_id).mode is original.node(node_id).mode


def _good(fleet_nodes: tuple[NodeState, ...]) -> tuple[NodeState, ...]:
    """The same packs, all online with the same non-binding limits."""
    return tuple(
        NodeState(
            node.node_id,
            soc_pct=node.soc_pct,
            soh_pct=node.soh_pct,
            capacity_wh=node.capacity_wh,
            charge_limit_w=1e9,
            discharge_limit_w=1e9,
        )
        for node in fleet_nodes
    )


@settings(max_examples=300)
@given(nodes(min_size=2), st.floats(1.0, 30_000.0), params())
def test_more_energy_above_reserve_never_gets_a_smaller_discharge_share(
    fleet_nodes: tuple[NodeState, ...], request_w: float, p: BalancerParams
) -> None:
    packs = _good(fleet_nodes)
    result = run(packs, request_w, p)

    def above(node: NodeState) -> float:
        assert node.usable_energy_wh is not None and node.soc_pct is not None
        return node.usable_energy_wh * max(0.0, node.soc_pct - p.reserve_pct)

    for a in packs:
        for b in packs:
            if above(a) > above(b):
                assert result.node(a.node_id).setpoint_w >= result.node(b.node_id).setpoint_w - TOLERANCE_W


@settings(max_examples=300)
@given(nodes(min_size=2), st.floats(1.0, 30_000.0), params())
def test_more_headroom_never_gets_a_smaller_charge_share(
    fleet_nodes: tuple[NodeState, ...], request_w: float, p: BalancerParams
) -> None:
    packs = _good(fleet_nodes)
    result = run(packs, -request_w, p, charge_source=ChargeSource.PV)

    def headroom(node: NodeState) -> float:
        assert node.usable_energy_wh is not None and node.soc_pct is not None
        return node.usable_energy_wh * max(0.0, p.ceiling_pct - node.soc_pct)

    for a in packs:
        for b in packs:
            if headroom(a) > headroom(b):
                assert -result.node(a.node_id).setpoint_w >= -result.node(b.node_id).setpoint_w - TOLERANCE_W


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.just(0.0) | st.floats(1e-9, 1e9), st.floats(0.0, 1e5) | st.just(math.inf)), max_size=10
    ),
    st.floats(0.0, 1e6),
)
def test_water_fill_respects_caps_and_serves_what_it_can(
    pairs: list[tuple[float, float]], amount_w: float
) -> None:
    weights = [w for w, _ in pairs]
    caps = [c for _, c in pairs]
    allocation = water_fill(amount_w, weights, caps)
    usable = sum(c for w, c in pairs if w > 0.0 and c > 0.0)  # may be inf: then all is served
    assert all(0.0 <= x <= c + TOLERANCE_W for x, c in zip(allocation, caps, strict=True))
    assert math.isclose(sum(allocation), min(amount_w, usable), rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=150)
@given(nodes(), st.lists(requests, min_size=2, max_size=6), params(), st.floats(0.0, 2.0))
def test_with_memory_deadband_and_ramp_setpoints_stay_within_limits(
    fleet_nodes: tuple[NodeState, ...], request_sequence: list[float], p: BalancerParams, dt_s: float
) -> None:
    smooth = BalancerParams(
        reserve_pct=p.reserve_pct, ceiling_pct=p.ceiling_pct, setpoint_deadband_w=25.0, ramp_w_per_s=500.0
    )
    fleet = FleetState(fleet_nodes, 0.0)
    memory = None
    for cycle, request_w in enumerate(request_sequence):
        result = dispatch(fleet, SiteCommand(request_w), smooth, memory, cycle * dt_s)
        memory = result.memory
        for node, out in zip(fleet_nodes, result.nodes, strict=True):
            assert node.charge_limit_w is not None and node.discharge_limit_w is not None
            assert (
                -node.charge_limit_w - TOLERANCE_W <= out.setpoint_w <= node.discharge_limit_w + TOLERANCE_W
            )
            assert node.soc_pct is not None
            if node.soc_pct <= p.reserve_pct:
                assert out.setpoint_w <= 0.0
