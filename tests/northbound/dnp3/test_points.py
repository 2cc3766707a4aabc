"""The DNP3 point table (pure): scaled counts, quality flags, and the deadband rule for events."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway.balancer import BalancerParams, Dispatch, NodeDispatch, NodeMode, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState, Quality
from gateway.mapping.dnp3 import PointSpec, PointType, ResolvedPoint
from gateway.mapping.sources import NODE_SOURCES, read_node
from gateway.northbound.dnp3.points import COMM_LOST, ONLINE, OVERRANGE, Change, PointTable
from gateway.snapshot import CycleSnapshot

DEADBAND = 5


def spec(source: str, *, scale: float = 1.0, event_class: int = 1, deadband: int = 0) -> PointSpec:
    return PointSpec(source, source, source, scale, False, "", event_class, deadband)


POINTS = [
    ResolvedPoint(
        PointType.ANALOG_INPUT, 0, "soc", "", spec("node.soc_pct", scale=0.1, deadband=DEADBAND), "n1"
    ),
    ResolvedPoint(PointType.ANALOG_INPUT, 1, "cap", "", spec("node.capacity_wh", event_class=0), "n1"),
    ResolvedPoint(PointType.BINARY_INPUT, 0, "online", "", spec("node.online"), "n1"),
    ResolvedPoint(PointType.ANALOG_INPUT, 2, "energy", "", spec("fleet.stored_energy_wh", scale=1e-6)),
]


def snapshot(index: int, soc_pct: float | None, capacity_wh: float = 2000.0) -> CycleSnapshot:
    node = NodeState(
        "n1",
        quality=Quality.GOOD if soc_pct is not None else Quality.FAILED,
        soc_pct=soc_pct,
        capacity_wh=capacity_wh,
    )
    fleet = FleetState((node,), timestamp_s=index * 0.1)
    command, params = SiteCommand(), BalancerParams()
    decision = dispatch(fleet, command, params, None, index * 0.1)
    return CycleSnapshot(index, datetime.now(UTC), fleet, command, decision, params)


def test_the_first_cycle_sets_every_point_without_events() -> None:
    changes = PointTable(POINTS).changes(snapshot(1, 55.56), {}, None)
    assert {(c[0], c[1]) for c in changes} == {(p.type, p.index) for p in POINTS}
    assert not any(c[4] for c in changes)
    by_index = {(c[0], c[1]): c for c in changes}
    assert by_index[(PointType.ANALOG_INPUT, 0)][2:4] == (556, ONLINE)  # 55.56 % in 0.1 %
    assert by_index[(PointType.BINARY_INPUT, 0)][2:4] == (True, ONLINE)
    # 2000 Wh × 55.56 % = 1111.2 Wh = 1.1112e9 µWh: fits; 10× more would not.
    assert by_index[(PointType.ANALOG_INPUT, 2)][2:4] == (1_111_200_000, ONLINE)
    overflow = PointTable(POINTS).changes(snapshot(1, 55.56, capacity_wh=20000.0), {}, None)
    assert next(c for c in overflow if c[1] == 2 and c[0] is PointType.ANALOG_INPUT)[2:4] == (
        2**31 - 1,
        ONLINE | OVERRANGE,
    )


@given(st.lists(st.one_of(st.none(), st.floats(min_value=0.0, max_value=100.0)), min_size=1, max_size=40))
def test_soc_events_follow_the_deadband_and_statics_follow_the_value(socs: list[float | None]) -> None:
    table = PointTable(POINTS)
    table.changes(snapshot(0, 50.0), {}, None)
    static, static_flags, reported = 500, ONLINE, 500
    for index, soc in enumerate(socs, start=1):
        changes = {(c[0], c[1]): c for c in table.changes(snapshot(index, soc), {}, None)}
        count = static if soc is None else round(soc / 0.1)  # the map: value = count × scale
        flags = COMM_LOST if soc is None else ONLINE
        expected_event = flags != static_flags or (flags == ONLINE and abs(count - reported) > DEADBAND)
        change = changes.get((PointType.ANALOG_INPUT, 0))
        if count == static and flags == static_flags:
            assert change is None
        else:
            assert change is not None and change[2:] == (count, flags, expected_event)
            if expected_event:
                reported = count
        static, static_flags = count, flags
        capacity = changes.get((PointType.ANALOG_INPUT, 1))
        assert capacity is None or not capacity[4]  # class 0: never an event
        online = changes.get((PointType.BINARY_INPUT, 0))
        if online is not None:  # the node's online flag is itself valid data, and every change an event
            assert online[2:] == (soc is not None, ONLINE, True)


def node_states(node_id: str) -> st.SearchStrategy[NodeState]:
    number = st.floats(min_value=-1000.0, max_value=5000.0)
    return st.builds(
        NodeState,
        st.just(node_id),
        quality=st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.STALE, Quality.FAILED]),
        soc_pct=st.floats(min_value=0.0, max_value=100.0),
        capacity_wh=st.one_of(st.none(), st.floats(min_value=100.0, max_value=5000.0)),
        voltage_v=st.one_of(st.none(), number),
        power_w=st.one_of(st.none(), number),
        temp_max_c=st.one_of(st.none(), st.floats(min_value=-20.0, max_value=70.0)),
        charge_limit_w=st.one_of(st.none(), number),
        discharge_limit_w=st.one_of(st.none(), number),
        state=st.sampled_from([None, "fault", "idle"]),
    )


def decisions(node_id: str) -> st.SearchStrategy[NodeDispatch]:
    return st.builds(
        NodeDispatch,
        st.just(node_id),
        st.floats(min_value=-1000.0, max_value=1000.0),
        st.sampled_from(list(NodeMode)),
        st.lists(st.sampled_from(["E_THERMAL_EXCURSION", "E_AT_RESERVE", "E_NODE_OFFLINE"]), max_size=2).map(
            tuple
        ),
    )


@given(node_states("n1"), decisions("n1"), st.lists(st.tuples(node_states("x"), decisions("x")), max_size=3))
def test_node_quantities_depend_only_on_the_node_its_decision_and_the_site(
    node: NodeState, decision: NodeDispatch, others: list[tuple[NodeState, NodeDispatch]]
) -> None:
    """What lets the point table skip the nodes whose inputs did not change (points.py)."""
    params, command = BalancerParams(), SiteCommand()
    memory = dispatch(FleetState((), 0.0), command, params, None, 0.0).memory

    def snapshot_with(extra: list[tuple[NodeState, NodeDispatch]], index: int) -> CycleSnapshot:
        renamed = [
            (dataclasses.replace(state, node_id=f"x{i}"), dataclasses.replace(d, node_id=f"x{i}"))
            for i, (state, d) in enumerate(extra)
        ]
        fleet = FleetState((node, *(state for state, _ in renamed)), timestamp_s=index * 0.1)
        decided = Dispatch((decision, *(d for _, d in renamed)), 1000.0 * index, 0.0, 0.0, (), memory)
        return CycleSnapshot(index, datetime.now(UTC), fleet, command, decided, params)

    alone, crowded = snapshot_with([], 1), snapshot_with(others, 7)
    for name in NODE_SOURCES:
        assert read_node(name, alone, node) == read_node(name, crowded, node), name


def test_a_stale_node_keeps_its_values_flagged_comm_lost_and_an_offline_one_loses_online() -> None:
    table = PointTable(POINTS)
    table.changes(snapshot(1, 55.56), {}, None)

    def with_quality(
        index: int, quality: Quality, soc_pct: float | None
    ) -> dict[tuple[PointType, int], Change]:
        node = NodeState("n1", quality=quality, age_s=0.5, soc_pct=soc_pct, capacity_wh=2000.0)
        fleet = FleetState((node,), timestamp_s=index * 0.1)
        command, params = SiteCommand(), BalancerParams()
        decision = dispatch(fleet, command, params, None, index * 0.1)
        cycle = CycleSnapshot(index, datetime.now(UTC), fleet, command, decision, params)
        return {(c[0], c[1]): c for c in table.changes(cycle, {}, None)}

    stale = with_quality(2, Quality.STALE, 55.56)
    assert stale[(PointType.ANALOG_INPUT, 0)][2:] == (556, ONLINE | COMM_LOST, True)  # an event
    assert (PointType.BINARY_INPUT, 0) not in stale  # `online` describes the loss: still good, unchanged
    offline = with_quality(3, Quality.FAILED, None)
    assert offline[(PointType.ANALOG_INPUT, 0)][2:] == (556, COMM_LOST, True)
    assert offline[(PointType.BINARY_INPUT, 0)][2:] == (False, ONLINE, True)


def test_a_node_that_answered_before_the_snapshot_makes_its_event_once() -> None:
    table = PointTable(POINTS)
    in_force = snapshot(1, 50.0)
    table.changes(in_force, {}, None)
    polled = snapshot(2, 60.0)  # the next cycle: the node answers first, its snapshot comes after
    early = table.node_changes(in_force, polled.fleet.nodes, None)
    assert [c for c in early if c[:2] == (PointType.ANALOG_INPUT, 0)] == [
        (PointType.ANALOG_INPUT, 0, 600, ONLINE, True)  # the node's own new value, as an event
    ]
    assert not any(c[:2] == (PointType.ANALOG_INPUT, 2) for c in early)  # fleet points wait
    later = {(c[0], c[1]): c for c in table.changes(polled, {}, None)}
    assert (PointType.ANALOG_INPUT, 0) not in later  # shown already: no second event
    assert later[(PointType.ANALOG_INPUT, 2)][2] == 1_200_000_000  # the fleet's energy, with the snapshot
