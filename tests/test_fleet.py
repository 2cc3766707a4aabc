"""The fleet model: node snapshots, aggregates, and building nodes from decoded values."""

from __future__ import annotations

import dataclasses
import math

import pytest

from gateway.fleet import FleetState, NodeState, Quality, node_from_values
from gateway.profiles.vocabulary import FLEET_FEEDS, VOCABULARY


def test_usable_energy_is_nameplate_times_soh() -> None:
    assert NodeState("a", capacity_wh=2000.0, soh_pct=90.0).usable_energy_wh == 1800.0


def test_usable_energy_without_soh_counts_soh_as_100() -> None:
    assert NodeState("a", capacity_wh=2000.0).usable_energy_wh == 2000.0


def test_usable_energy_without_capacity_is_unknown() -> None:
    assert NodeState("a", soh_pct=90.0).usable_energy_wh is None


def test_node_needs_an_id() -> None:
    with pytest.raises(ValueError, match="node_id"):
        NodeState("")


def test_hottest_prefers_the_hottest_cell() -> None:
    assert NodeState("a", temp_c=25.0, temp_max_c=27.0).hottest_c == 27.0
    assert NodeState("a", temp_c=25.0).hottest_c == 25.0


def _fleet() -> FleetState:
    return FleetState(
        nodes=(
            NodeState(
                "small",
                soc_pct=80.0,
                capacity_wh=1000.0,
                power_w=100.0,
                charge_limit_w=500.0,
                discharge_limit_w=600.0,
            ),
            NodeState(
                "big",
                quality=Quality.STALE,
                age_s=0.2,
                soc_pct=40.0,
                capacity_wh=3000.0,
                power_w=-50.0,
                charge_limit_w=1500.0,
                discharge_limit_w=None,
            ),
            NodeState("gone", quality=Quality.FAILED, soc_pct=0.0, capacity_wh=5000.0, power_w=900.0),
        ),
        timestamp_s=12.5,
    )


def test_mean_soc_is_energy_weighted_over_online_nodes() -> None:
    # (1000 × 80 + 3000 × 40) / 4000; the failed node is left out.
    assert _fleet().mean_soc_pct == pytest.approx(50.0)


def test_mean_soc_without_capacities_is_a_plain_mean() -> None:
    fleet = FleetState((NodeState("a", soc_pct=80.0), NodeState("b", soc_pct=40.0)), 0.0)
    assert fleet.mean_soc_pct == pytest.approx(60.0)


def test_aggregates_of_an_empty_fleet() -> None:
    fleet = FleetState((), 0.0)
    assert fleet.mean_soc_pct is None
    assert fleet.soc_spread_pct is None
    assert fleet.stored_energy_wh == 0.0
    assert fleet.available_discharge_w == 0.0


def test_spread_energy_and_power_aggregates() -> None:
    fleet = _fleet()
    assert fleet.soc_spread_pct == pytest.approx(40.0)
    assert fleet.stored_energy_wh == pytest.approx(800.0 + 1200.0)
    assert fleet.energy_above_reserve_wh(50.0) == pytest.approx(300.0)  # only "small" is above 50 %
    assert fleet.available_discharge_w == pytest.approx(600.0)  # unreported limit counts as 0
    assert fleet.available_charge_w == pytest.approx(2000.0)
    assert fleet.total_power_w == pytest.approx(50.0)
    assert fleet.counts_by_quality == {Quality.GOOD: 1, Quality.STALE: 1, Quality.FAILED: 1}
    assert [node.node_id for node in fleet.online_nodes] == ["small", "big"]


def test_node_lookup() -> None:
    fleet = _fleet()
    assert fleet.node("big").capacity_wh == 3000.0
    assert "big" in fleet
    assert "nope" not in fleet
    with pytest.raises(KeyError, match="known: small, big, gone"):
        fleet.node("nope")


def test_duplicate_node_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="'a' appears twice"):
        FleetState((NodeState("a"), NodeState("a")), 0.0)


def test_node_from_values_maps_vocabulary_points() -> None:
    node = node_from_values(
        "pack1",
        {
            "soc_pct": 55.5,
            "soh_pct": 97,
            "capacity_wh": 2000.0,
            "power_w": -300.0,
            "temp_max_c": 31.0,
            "charge_limit_w": 1000.0,
            "discharge_limit_w": 1200.0,
            "setpoint_w": -300.0,
            "enable": 1,
            "state": "Charging",
            "heartbeat": 17,  # not part of NodeState: ignored
            "x_vendor_thing": "whatever",
        },
        quality=Quality.STALE,
        age_s=0.2,
        error_code="E_TIMEOUT",
        alarms=["over_temperature"],
    )
    assert node == NodeState(
        node_id="pack1",
        quality=Quality.STALE,
        error_code="E_TIMEOUT",
        age_s=0.2,
        soc_pct=55.5,
        soh_pct=97.0,
        capacity_wh=2000.0,
        power_w=-300.0,
        temp_max_c=31.0,
        charge_limit_w=1000.0,
        discharge_limit_w=1200.0,
        setpoint_w=-300.0,
        enabled=True,
        state="charging",
        alarms=("over_temperature",),
    )


def test_node_from_values_treats_missing_and_non_finite_as_unreported() -> None:
    node = node_from_values("p", {"soc_pct": math.nan, "power_w": None, "temp_c": math.inf})
    assert (node.soc_pct, node.power_w, node.temp_c, node.enabled, node.state) == (
        None,
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("raw", "enabled"), [(0, False), (1, True), (2.0, True), ("On", True), ("disabled", False)]
)
def test_node_from_values_reads_enable(raw: float | str, enabled: bool) -> None:
    assert node_from_values("p", {"enable": raw}).enabled is enabled


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"soc_pct": "high"}, "node 'p': point 'soc_pct' decoded to text"),
        ({"enable": "maybe"}, "node 'p': point 'enable' has label 'maybe'"),
        ({"state": 3}, "node 'p': point 'state' is the raw value 3; resolve it to a label"),
        ({"state": "sleeping"}, "node 'p': point 'state' has label 'sleeping', not one of the canonical"),
    ],
)
def test_node_from_values_names_the_node_and_point_of_bad_values(
    values: dict[str, float | int | str | None], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        node_from_values("p", values)


# Fields a node carries about its reading rather than about the pack.
_BOOKKEEPING = {"node_id", "quality", "error_code", "age_s"}


def test_every_fleet_field_is_fed_by_exactly_one_vocabulary_point() -> None:
    fields = [field.name for field in dataclasses.fields(NodeState) if field.name not in _BOOKKEEPING]
    fed = list(FLEET_FEEDS.values())
    assert sorted(fed) == sorted(fields)  # each field once: no field without a point, none fed twice
    assert all(point in VOCABULARY for point in FLEET_FEEDS)


def test_every_numeric_feed_reaches_its_field() -> None:
    numeric = [point for point in FLEET_FEEDS if point not in {"enable", "state", "alarms"}]
    values = {point: float(index) for index, point in enumerate(numeric)}
    node = node_from_values("pack1", values)
    assert {FLEET_FEEDS[point]: getattr(node, FLEET_FEEDS[point]) for point in numeric} == {
        FLEET_FEEDS[point]: value for point, value in values.items()
    }


def test_a_node_from_values_is_a_whole_frozen_node_state() -> None:
    node = node_from_values("p", {"soc_pct": 50.0, "enable": 1}, alarms=["a"], state="charging")
    made = NodeState("p", soc_pct=50.0, enabled=True, state="charging", alarms=("a",))
    assert node == made
    assert vars(node) == vars(made)  # every field set on the instance, as __init__ sets them
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.soc_pct = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="non-empty node_id"):
        node_from_values("", {})


def test_the_state_argument_replaces_the_state_value() -> None:
    assert node_from_values("p", {"state": "fault"}, state="charging").state == "charging"
    assert node_from_values("p", {"state": "fault"}, state=None).state is None
    assert node_from_values("p", {"state": "fault"}).state == "fault"
