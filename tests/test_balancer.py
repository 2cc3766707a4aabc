"""The SOC balancer: the classic example, every mode transition, smoothing, and a closed loop."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import pytest

from gateway.balancer import (
    E_AT_RESERVE,
    E_MISSING_TELEMETRY,
    E_NODE_FAULT,
    E_NODE_OFFLINE,
    E_THERMAL_EXCURSION,
    E_UNKNOWN_NODE,
    E_UNSERVED_POWER,
    BalancerMemory,
    BalancerParams,
    CalibrationPhase,
    ChargeSource,
    Dispatch,
    NodeMode,
    SiteCommand,
    dispatch,
    water_fill,
)
from gateway.fleet import FleetState, NodeState, Quality
from gateway.sim import physics

PLAIN = BalancerParams(reserve_pct=0.0, ceiling_pct=100.0, setpoint_deadband_w=0.0, setpoint_deadband_pct=0.0)
DEFAULTS_UNSMOOTHED = BalancerParams(setpoint_deadband_w=0.0, setpoint_deadband_pct=0.0)


def pack(node_id: str, soc_pct: float | None, **fields: Any) -> NodeState:
    values: dict[str, Any] = {
        "capacity_wh": 1000.0,
        "charge_limit_w": 10_000.0,
        "discharge_limit_w": 10_000.0,
        "temp_c": 25.0,
    }
    values.update(fields)
    return NodeState(node_id, soc_pct=soc_pct, **values)


def fleet(*nodes: NodeState, timestamp_s: float = 0.0) -> FleetState:
    return FleetState(nodes, timestamp_s)


def run(
    nodes: tuple[NodeState, ...] | FleetState,
    request_w: float,
    params: BalancerParams = DEFAULTS_UNSMOOTHED,
    memory: BalancerMemory | None = None,
    now_s: float = 0.0,
    **command: Any,
) -> Dispatch:
    snapshot = nodes if isinstance(nodes, FleetState) else FleetState(nodes, now_s)
    return dispatch(snapshot, SiteCommand(request_w, **command), params, memory, now_s)


# --- the rule -------------------------------------------------------------------------------------------


def test_classic_example_80_and_40_percent_at_900_w_give_600_and_300() -> None:
    result = run((pack("a", 80.0), pack("b", 40.0)), 900.0, PLAIN)
    assert result.setpoints_w == {"a": 600.0, "b": 300.0}
    assert (result.served_w, result.unserved_w, result.alarms) == (900.0, 0.0, ())


def test_discharge_share_is_energy_above_reserve() -> None:
    # reserve 10: 70 and 30 points above it.
    result = run((pack("a", 80.0), pack("b", 40.0)), 1000.0)
    assert result.setpoints_w == pytest.approx({"a": 700.0, "b": 300.0})


def test_charge_share_is_headroom_below_ceiling() -> None:
    # ceiling 95: 15 and 55 points of headroom.
    result = run((pack("a", 80.0), pack("b", 40.0)), -700.0)
    assert result.setpoints_w == pytest.approx({"a": -150.0, "b": -550.0})


def test_mixed_capacities_balance_in_energy_not_percent() -> None:
    # Same SOC, twice the usable energy (SOH counts): twice the share, both reach reserve together.
    nodes = (pack("big", 50.0, capacity_wh=2500.0, soh_pct=80.0), pack("small", 50.0, capacity_wh=1000.0))
    assert run(nodes, 900.0).setpoints_w == pytest.approx({"big": 600.0, "small": 300.0})


def test_limits_clamp_and_the_excess_goes_to_the_others() -> None:
    nodes = (pack("a", 80.0, discharge_limit_w=200.0), pack("b", 40.0), pack("c", 40.0))
    # Unclamped: 70/130 × 1000 ≈ 538 for a; clamped to 200, the other 800 split equally.
    assert run(nodes, 1000.0).setpoints_w == pytest.approx({"a": 200.0, "b": 400.0, "c": 400.0})


def test_power_beyond_every_limit_is_reported_unserved() -> None:
    nodes = (pack("a", 80.0, discharge_limit_w=300.0), pack("b", 40.0, discharge_limit_w=200.0))
    result = run(nodes, 900.0)
    assert result.setpoints_w == {"a": 300.0, "b": 200.0}
    assert (result.served_w, result.unserved_w) == (500.0, 400.0)
    assert result.alarms == (E_UNSERVED_POWER,)


def test_unreported_limits_mean_no_power_unless_a_default_is_configured() -> None:
    nodes = (pack("a", 80.0, discharge_limit_w=None), pack("b", 40.0))
    assert run(nodes, 900.0).setpoints_w == {"a": 0.0, "b": 900.0}
    params = dataclasses.replace(DEFAULTS_UNSMOOTHED, default_discharge_limit_w=400.0)
    assert run(nodes, 900.0, params).setpoints_w == pytest.approx({"a": 400.0, "b": 500.0})


def test_negative_limits_are_read_as_magnitudes() -> None:
    nodes = (pack("a", 50.0, charge_limit_w=-100.0), pack("b", 50.0))
    assert run(nodes, -500.0).setpoints_w == pytest.approx({"a": -100.0, "b": -400.0})


def test_zero_request_gives_zero_setpoints() -> None:
    result = run((pack("a", 80.0), pack("b", 40.0)), 0.0)
    assert result.setpoints_w == {"a": 0.0, "b": 0.0}
    assert result.alarms == ()


def test_balancing_disabled_splits_equally_within_limits() -> None:
    nodes = (pack("a", 80.0, discharge_limit_w=100.0), pack("b", 40.0), pack("c", 20.0))
    result = run(nodes, 900.0, balancing_enabled=False)
    assert result.setpoints_w == pytest.approx({"a": 100.0, "b": 400.0, "c": 400.0})


def test_water_fill_edge_cases() -> None:
    assert water_fill(0.0, [1.0, 1.0], [5.0, 5.0]) == [0.0, 0.0]
    assert water_fill(10.0, [0.0, 1.0], [5.0, 5.0]) == [0.0, 5.0]
    assert water_fill(10.0, [1.0, 3.0], [math.inf, math.inf]) == [2.5, 7.5]
    assert water_fill(10.0, [], []) == []


# --- reserve --------------------------------------------------------------------------------------------


def test_at_reserve_stops_discharging_and_resumes_only_above_the_hysteresis_band() -> None:
    params = DEFAULTS_UNSMOOTHED  # reserve 10, hysteresis 2
    first = run((pack("a", 10.0), pack("b", 50.0)), 400.0, params)
    assert first.node("a").mode is NodeMode.AT_RESERVE
    assert first.node("a").alarms == (E_AT_RESERVE,)
    assert first.setpoints_w == {"a": 0.0, "b": 400.0}  # its share moved to b in the same cycle
    assert E_AT_RESERVE in first.alarms

    # Back above reserve but inside the band: still at reserve.
    second = run((pack("a", 11.5), pack("b", 50.0)), 400.0, params, first.memory, 0.1)
    assert second.node("a").mode is NodeMode.AT_RESERVE
    assert second.node("a").setpoint_w == 0.0

    third = run((pack("a", 12.5), pack("b", 50.0)), 400.0, params, second.memory, 0.2)
    assert third.node("a").mode is NodeMode.ACTIVE
    assert third.node("a").setpoint_w > 0.0


def test_without_the_latch_a_pack_just_above_reserve_discharges() -> None:
    result = run((pack("a", 11.5), pack("b", 50.0)), 400.0)
    assert result.node("a").mode is NodeMode.ACTIVE


def test_a_pack_at_reserve_still_charges() -> None:
    result = run((pack("a", 5.0), pack("b", 50.0)), -900.0)
    assert result.node("a").mode is NodeMode.AT_RESERVE
    assert result.node("a").setpoint_w < 0.0


def test_whole_fleet_at_reserve_cannot_discharge() -> None:
    result = run((pack("a", 9.0), pack("b", 10.0)), 500.0)
    assert result.setpoints_w == {"a": 0.0, "b": 0.0}
    assert result.unserved_w == 500.0
    assert result.alarms == (E_AT_RESERVE, E_UNSERVED_POWER)


# --- charge source --------------------------------------------------------------------------------------


def test_ac_charging_fills_packs_below_reserve_first() -> None:
    nodes = (pack("low", 4.0), pack("lower", 2.0, capacity_wh=500.0), pack("mid", 50.0))
    result = run(nodes, -900.0, charge_source=ChargeSource.AC)
    # Deficits: 1000 × 6 % = 60 Wh and 500 × 8 % = 40 Wh; "mid" gets nothing while they take it all.
    assert result.setpoints_w == pytest.approx({"low": -540.0, "lower": -360.0, "mid": 0.0})


def test_ac_charging_hands_what_low_packs_cannot_take_to_the_others_by_headroom() -> None:
    nodes = (pack("low", 4.0, charge_limit_w=300.0), pack("mid", 50.0), pack("high", 80.0))
    result = run(nodes, -900.0, charge_source=ChargeSource.AC)
    # 600 W left after "low" is full at its limit: headroom 45 vs 15 points.
    assert result.setpoints_w == pytest.approx({"low": -300.0, "mid": -450.0, "high": -150.0})


def test_pv_charging_shares_by_headroom_including_packs_below_reserve() -> None:
    nodes = (pack("low", 5.0), pack("mid", 50.0), pack("high", 80.0))
    result = run(nodes, -1500.0, charge_source=ChargeSource.PV)
    # Headroom 90, 45 and 15 points.
    assert result.setpoints_w == pytest.approx({"low": -900.0, "mid": -450.0, "high": -150.0})


def test_a_pack_at_the_ceiling_is_not_charged() -> None:
    result = run((pack("full", 96.0), pack("b", 50.0)), -500.0)
    assert result.setpoints_w == {"full": 0.0, "b": -500.0}
    assert result.node("full").mode is NodeMode.ACTIVE


# --- thermal bypass -------------------------------------------------------------------------------------


def test_thermal_bypass_enters_above_mean_plus_delta_and_leaves_below_the_hysteresis_band() -> None:
    def nodes(hot_c: float) -> tuple[NodeState, ...]:
        return (pack("a", 50.0), pack("b", 50.0), pack("hot", 50.0, temp_c=25.0, temp_max_c=hot_c))

    first = run(nodes(33.0), 900.0)  # mean 27.67, limit 32.67
    hot = first.node("hot")
    assert (hot.mode, hot.setpoint_w, hot.alarms) == (NodeMode.BYPASSED_THERMAL, 0.0, (E_THERMAL_EXCURSION,))
    assert first.setpoints_w == {"a": 450.0, "b": 450.0, "hot": 0.0}
    assert E_THERMAL_EXCURSION in first.alarms

    # 31 °C: mean 27, limit 32, still above 32 − 2 = 30, so it stays out (also for charging).
    second = run(nodes(31.0), -900.0, memory=first.memory, now_s=0.1)
    assert second.node("hot").mode is NodeMode.BYPASSED_THERMAL
    assert second.node("hot").setpoint_w == 0.0

    # 29.5 °C: mean 26.5, exit at 29.5 and below.
    third = run(nodes(29.5), 900.0, memory=second.memory, now_s=0.2)
    assert third.node("hot").mode is NodeMode.ACTIVE
    assert third.setpoints_w == {"a": 300.0, "b": 300.0, "hot": 300.0}


def test_a_warm_pack_below_the_delta_stays_in() -> None:
    result = run((pack("a", 50.0), pack("b", 50.0, temp_c=32.0)), 900.0)  # mean 28.5, limit 33.5
    assert result.node("b").mode is NodeMode.ACTIVE


def test_a_warming_pack_is_derated_linearly_in_the_band_below_the_bypass_and_its_excess_moves_on() -> None:
    # Three packs at 25 °C and one warmer: mean = 25 + excess/4, bypass at mean + 5, derating from mean + 3.
    def nodes(hot_c: float) -> tuple[NodeState, ...]:
        others = tuple(pack(name, 50.0, discharge_limit_w=1000.0) for name in ("a", "b", "c"))
        return (*others, pack("warm", 50.0, discharge_limit_w=1000.0, temp_c=hot_c))

    cool = run(nodes(28.0), 2000.0)  # mean 25.75: 28 is below 28.75, no derating
    assert cool.setpoints_w == pytest.approx({"a": 500.0, "b": 500.0, "c": 500.0, "warm": 500.0})

    # 30 °C: mean 26.25, band 29.25..31.25, 1.25 °C from the top: 62.5 % of its 1000 W limit.
    warm = run(nodes(30.0), 2000.0)
    assert warm.node("warm").mode is NodeMode.ACTIVE
    assert warm.node("warm").setpoint_w == pytest.approx(500.0)  # its share still fits under 625 W
    heavy = run(nodes(30.0), 3600.0)
    assert heavy.node("warm").setpoint_w == pytest.approx(625.0)
    assert heavy.setpoints_w["a"] == pytest.approx((3600.0 - 625.0) / 3)
    assert heavy.served_w == pytest.approx(3600.0) and heavy.alarms == ()

    # Just below the bypass threshold the pack is nearly idle; charging is derated the same way.
    hot_c = 25.0 + 4.0 / 3.0 * 4.99  # 4.99 °C above the mean
    assert run(nodes(hot_c), 3600.0).node("warm").setpoint_w == pytest.approx(5.0, abs=0.1)
    assert run(nodes(30.0), -40_000.0).node("warm").setpoint_w == pytest.approx(-0.625 * 10_000.0)


def test_thermal_derating_can_be_switched_off() -> None:
    params = BalancerParams(thermal_derate_c=0.0, setpoint_deadband_w=0.0, setpoint_deadband_pct=0.0)
    nodes = (
        pack("a", 50.0, discharge_limit_w=1000.0),
        pack("warm", 50.0, discharge_limit_w=1000.0, temp_c=33.0),
    )
    assert run(nodes, 2000.0, params).setpoints_w == {"a": 1000.0, "warm": 1000.0}  # mean 29, 4 °C above


# --- offline, fault, missing data, maintenance ----------------------------------------------------------


def test_offline_node_share_moves_to_the_others_in_the_same_cycle() -> None:
    first = run((pack("a", 80.0), pack("b", 40.0)), 900.0, PLAIN)
    lost = (pack("a", 80.0, quality=Quality.FAILED, error_code="E_TIMEOUT"), pack("b", 40.0))
    second = run(lost, 900.0, PLAIN, first.memory, 0.1)
    assert second.node("a").mode is NodeMode.OFFLINE
    assert second.node("a").alarms == (E_NODE_OFFLINE,)
    assert second.setpoints_w == {"a": 0.0, "b": 900.0}
    assert second.alarms == (E_NODE_OFFLINE,)


def test_stale_telemetry_is_used_within_the_age_limit_and_dropped_beyond_it() -> None:
    young = run((pack("a", 80.0, quality=Quality.STALE, age_s=0.3), pack("b", 40.0)), 900.0, PLAIN)
    assert young.node("a").mode is NodeMode.ACTIVE
    assert young.setpoints_w == {"a": 600.0, "b": 300.0}
    old = run((pack("a", 80.0, quality=Quality.STALE, age_s=0.5), pack("b", 40.0)), 900.0, PLAIN)
    assert old.node("a").mode is NodeMode.OFFLINE
    assert old.setpoints_w == {"a": 0.0, "b": 900.0}


def test_faulted_node_gets_nothing() -> None:
    result = run((pack("a", 80.0, state="fault"), pack("b", 40.0)), 900.0)
    assert (result.node("a").mode, result.node("a").alarms) == (NodeMode.OFFLINE, (E_NODE_FAULT,))
    assert result.setpoints_w == {"a": 0.0, "b": 900.0}


@pytest.mark.parametrize("missing", [{"soc_pct": None}, {"capacity_wh": None}])
def test_node_without_soc_or_capacity_gets_nothing(missing: dict[str, Any]) -> None:
    a = dataclasses.replace(pack("a", 80.0), **missing)
    result = run((a, pack("b", 40.0)), 900.0)
    assert (result.node("a").mode, result.node("a").alarms) == (NodeMode.OFFLINE, (E_MISSING_TELEMETRY,))
    assert result.setpoints_w["b"] == 900.0


def test_default_capacity_stands_in_for_an_unreported_one() -> None:
    params = dataclasses.replace(PLAIN, default_capacity_wh=1000.0)
    result = run((pack("a", 80.0, capacity_wh=None), pack("b", 40.0)), 900.0, params)
    assert result.setpoints_w == {"a": 600.0, "b": 300.0}


def test_maintenance_commanded_or_reported_takes_the_node_out() -> None:
    nodes = (pack("a", 80.0), pack("b", 40.0), pack("c", 40.0, state="maintenance"))
    result = run(nodes, 900.0, maintenance=frozenset({"a"}))
    assert result.node("a").mode is NodeMode.MAINTENANCE
    assert result.node("c").mode is NodeMode.MAINTENANCE
    assert result.setpoints_w == {"a": 0.0, "b": 900.0, "c": 0.0}
    assert result.alarms == ()


def test_maintenance_wins_over_offline() -> None:
    result = run((pack("a", 80.0, quality=Quality.FAILED),), 0.0, maintenance=frozenset({"a"}))
    assert result.node("a").mode is NodeMode.MAINTENANCE


def test_command_naming_an_unknown_node_raises_an_alarm() -> None:
    result = run((pack("a", 80.0),), 100.0, maintenance=frozenset({"zz"}))
    assert result.alarms == (E_UNKNOWN_NODE,)
    assert result.setpoints_w == {"a": 100.0}


# --- deep calibration -----------------------------------------------------------------------------------


def test_calibration_discharges_to_the_floor_charges_to_full_and_rejoins() -> None:
    params = DEFAULTS_UNSMOOTHED  # floor 5 %, full 100 %, 0.2 C
    cal = frozenset({"cal"})
    others = (pack("a", 60.0), pack("b", 60.0))

    start = run((pack("cal", 30.0), *others), 900.0, params, calibrate=cal)
    assert start.node("cal").mode is NodeMode.CALIBRATING
    assert start.node("cal").setpoint_w == 200.0  # 0.2 C of 1000 Wh
    assert start.setpoints_w == {"cal": 200.0, "a": 350.0, "b": 350.0}  # the site still gets 900
    assert start.memory.calibration == {"cal": CalibrationPhase.DISCHARGING}

    # Below reserve it keeps going (no at_reserve for a calibrating node).
    low = run((pack("cal", 8.0), *others), 900.0, params, start.memory, 0.1, calibrate=cal)
    assert (low.node("cal").mode, low.node("cal").setpoint_w) == (NodeMode.CALIBRATING, 200.0)

    floor = run((pack("cal", 5.0), *others), 900.0, params, low.memory, 0.2, calibrate=cal)
    assert floor.memory.calibration == {"cal": CalibrationPhase.CHARGING}
    assert floor.setpoints_w == {"cal": -200.0, "a": 550.0, "b": 550.0}

    nearly = run((pack("cal", 99.0), *others), 900.0, params, floor.memory, 0.3, calibrate=cal)
    assert nearly.node("cal").setpoint_w == -200.0

    full = run((pack("cal", 100.0), *others), 900.0, params, nearly.memory, 0.4, calibrate=cal)
    assert full.memory.calibration == {"cal": CalibrationPhase.DONE}
    assert full.node("cal").mode is NodeMode.ACTIVE
    assert full.setpoints_w["cal"] > 0.0

    # Still in the command: it does not start again.
    after = run((pack("cal", 90.0), *others), 900.0, params, full.memory, 0.5, calibrate=cal)
    assert after.node("cal").mode is NodeMode.ACTIVE
    # Removed from the command: the phase is forgotten, so a new command starts a new run.
    cleared = run((pack("cal", 90.0), *others), 900.0, params, after.memory, 0.6)
    assert cleared.memory.calibration == {}
    again = run((pack("cal", 90.0), *others), 900.0, params, cleared.memory, 0.7, calibrate=cal)
    assert again.memory.calibration == {"cal": CalibrationPhase.DISCHARGING}


def test_calibration_ends_where_the_bms_refuses_to_go_further() -> None:
    params = DEFAULTS_UNSMOOTHED
    cal = frozenset({"cal"})
    others = (pack("a", 60.0),)
    stuck_low = run((pack("cal", 9.0, discharge_limit_w=0.0), *others), 0.0, params, calibrate=cal)
    assert stuck_low.memory.calibration == {"cal": CalibrationPhase.CHARGING}
    stuck_high = run(
        (pack("cal", 97.0, charge_limit_w=0.0), *others), 0.0, params, stuck_low.memory, 0.1, calibrate=cal
    )
    assert stuck_high.memory.calibration == {"cal": CalibrationPhase.DONE}


def test_calibration_removed_midway_aborts() -> None:
    cal = frozenset({"cal"})
    start = run((pack("cal", 50.0), pack("a", 60.0)), 0.0, calibrate=cal)
    assert start.node("cal").mode is NodeMode.CALIBRATING
    aborted = run((pack("cal", 40.0), pack("a", 60.0)), 0.0, memory=start.memory, now_s=0.1)
    assert aborted.node("cal").mode is NodeMode.ACTIVE
    assert aborted.memory.calibration == {}


def test_calibration_power_is_cut_back_when_the_others_cannot_absorb_it() -> None:
    cal = frozenset({"cal"})
    # The other pack is at the ceiling: nobody can take the calibration discharge at request 0.
    blocked = run((pack("cal", 50.0), pack("full", 95.0)), 0.0, calibrate=cal)
    assert blocked.setpoints_w == {"cal": 0.0, "full": 0.0}
    # It can take 50 W: calibration runs at 50 W, the site sees 0.
    partial = run((pack("cal", 50.0), pack("a", 50.0, charge_limit_w=50.0)), 0.0, calibrate=cal)
    assert partial.setpoints_w == pytest.approx({"cal": 50.0, "a": -50.0})
    assert partial.served_w == pytest.approx(0.0)


def test_calibration_pauses_while_the_node_is_offline() -> None:
    cal = frozenset({"cal"})
    start = run((pack("cal", 50.0), pack("a", 60.0)), 0.0, calibrate=cal)
    gone = run(
        (pack("cal", 50.0, quality=Quality.FAILED), pack("a", 60.0)), 0.0, memory=start.memory, calibrate=cal
    )
    assert gone.node("cal").mode is NodeMode.OFFLINE
    assert gone.memory.calibration == {"cal": CalibrationPhase.DISCHARGING}


# --- smoothing: deadband, ramp, steadiness --------------------------------------------------------------


def test_deadband_keeps_the_previous_setpoint_for_small_changes() -> None:
    params = BalancerParams(
        reserve_pct=0.0, ceiling_pct=100.0, setpoint_deadband_w=10.0, setpoint_deadband_pct=0.0
    )
    first = run((pack("a", 80.0), pack("b", 40.0)), 900.0, params)
    # SOCs drift a little: targets move by about 1 W, setpoints stay.
    second = run((pack("a", 79.9), pack("b", 39.9)), 900.0, params, first.memory, 0.1)
    assert second.setpoints_w == {"a": 600.0, "b": 300.0}
    # A real change of request goes through.
    third = run((pack("a", 79.9), pack("b", 39.9)), 1200.0, params, second.memory, 0.2)
    assert third.served_w == pytest.approx(1200.0)


def test_deadband_never_holds_a_stop_or_a_sign_change() -> None:
    params = BalancerParams(
        reserve_pct=0.0, ceiling_pct=100.0, setpoint_deadband_w=10.0, setpoint_deadband_pct=0.0
    )
    first = run((pack("a", 50.0),), 5.0, params)
    assert run((pack("a", 50.0),), 0.0, params, first.memory, 0.1).setpoints_w == {"a": 0.0}
    assert run((pack("a", 50.0),), -4.0, params, first.memory, 0.1).setpoints_w == {"a": -4.0}


def test_deadband_releases_holds_when_the_total_would_drift_too_far() -> None:
    params = BalancerParams(
        reserve_pct=0.0, ceiling_pct=100.0, setpoint_deadband_w=10.0, setpoint_deadband_pct=0.0
    )
    nodes = tuple(pack(f"p{i}", 50.0) for i in range(10))
    first = run(nodes, 1000.0, params)
    # +9 W per node would be held by each node's deadband: 90 W in total, far beyond 10 W.
    second = run(nodes, 1090.0, params, first.memory, 0.1)
    assert abs(second.served_w - 1090.0) < 10.0


def test_relative_deadband_holds_big_packs_through_soc_steps() -> None:
    # A few SOC steps move a 20 kW pack's share by ~50 W: more than 10 W, less than 1 % of its limit.
    big = {"capacity_wh": 100_000.0, "discharge_limit_w": 20_000.0, "charge_limit_w": 20_000.0}
    params = BalancerParams(reserve_pct=10.0, setpoint_deadband_w=10.0, setpoint_deadband_pct=1.0)
    first = run((pack("a", 60.0, **big), pack("b", 40.0, **big)), 20_000.0, params)
    second = run((pack("a", 59.5, **big), pack("b", 40.0, **big)), 20_000.0, params, first.memory, 0.1)
    assert second.setpoints_w == first.setpoints_w
    fixed_only = dataclasses.replace(params, setpoint_deadband_pct=0.0)
    third = run((pack("a", 59.5, **big), pack("b", 40.0, **big)), 20_000.0, fixed_only, first.memory, 0.1)
    assert third.setpoints_w != first.setpoints_w
    assert third.served_w == pytest.approx(20_000.0)


def test_steady_request_gives_constant_setpoints() -> None:
    nodes = (pack("a", 80.0), pack("b", 40.0), pack("c", 60.0))
    result = run(nodes, 900.0, BalancerParams())
    for cycle in range(1, 20):
        again = run(nodes, 900.0, BalancerParams(), result.memory, cycle * 0.1)
        assert again.nodes == result.nodes
        result = again


def test_same_inputs_and_memory_give_the_same_dispatch() -> None:
    nodes = (pack("a", 80.0), pack("b", 11.0), pack("c", 60.0, temp_c=40.0))
    first = run(nodes, 900.0, BalancerParams())
    assert run(nodes, 900.0, BalancerParams(), first.memory, 0.0) == run(
        nodes, 900.0, BalancerParams(), first.memory, 0.0
    )


def test_ramp_limits_each_change_but_not_a_forced_stop() -> None:
    params = BalancerParams(reserve_pct=0.0, ceiling_pct=100.0, setpoint_deadband_w=0.0, ramp_w_per_s=1000.0)
    nodes = (pack("a", 50.0), pack("b", 50.0))
    first = run(nodes, 0.0, params)  # no memory: no ramp
    second = run(nodes, 2000.0, params, first.memory, 0.1)  # 100 W per node per 0.1 s
    assert second.setpoints_w == {"a": 100.0, "b": 100.0}
    assert second.unserved_w == pytest.approx(1800.0)
    assert E_UNSERVED_POWER not in second.alarms  # the fleet can serve it, it is only ramping
    third = run(nodes, 2000.0, params, second.memory, 0.3)
    assert third.setpoints_w == {"a": 300.0, "b": 300.0}
    # a goes offline: its setpoint drops at once; b keeps ramping.
    lost = (pack("a", 50.0, quality=Quality.FAILED), pack("b", 50.0))
    fourth = run(lost, 2000.0, params, third.memory, 0.4)
    assert fourth.setpoints_w == {"a": 0.0, "b": 400.0}


def test_first_cycle_without_memory_is_not_ramped() -> None:
    params = BalancerParams(setpoint_deadband_w=0.0, ramp_w_per_s=1.0)
    assert run((pack("a", 50.0),), 500.0, params).setpoints_w == {"a": 500.0}


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reserve_pct": 96.0}, "0 <= reserve_pct < ceiling_pct <= 100"),
        ({"ceiling_pct": 101.0}, "0 <= reserve_pct < ceiling_pct <= 100"),
        ({"reserve_pct": math.nan}, "0 <= reserve_pct < ceiling_pct <= 100"),
        ({"reserve_hysteresis_pct": 90.0}, "reserve_pct \\+ reserve_hysteresis_pct < ceiling_pct"),
        ({"thermal_hysteresis_c": 5.0}, "0 <= thermal_hysteresis_c < thermal_delta_c"),
        ({"thermal_derate_c": 5.5}, "0 <= thermal_derate_c <= thermal_delta_c"),
        ({"thermal_derate_c": -1.0}, "0 <= thermal_derate_c <= thermal_delta_c"),
        ({"setpoint_deadband_w": -1.0}, "setpoint_deadband_w >= 0"),
        ({"ramp_w_per_s": 0.0}, "ramp_w_per_s > 0"),
        ({"max_telemetry_age_s": 0.0}, "max_telemetry_age_s > 0"),
        ({"calibration_floor_pct": 100.0}, "calibration_floor_pct < calibration_full_pct"),
        ({"calibration_c_rate": 0.0}, "calibration_c_rate > 0"),
        ({"default_charge_limit_w": -5.0}, "default_charge_limit_w >= 0"),
        ({"default_capacity_wh": 0.0}, "default_capacity_wh > 0"),
    ],
)
def test_params_name_the_broken_rule(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BalancerParams(**changes)


def test_params_report_every_broken_rule_at_once() -> None:
    with pytest.raises(ValueError, match=r"thermal_delta_c > 0.*ramp_w_per_s > 0"):
        BalancerParams(thermal_delta_c=0.0, ramp_w_per_s=-1.0)


def test_site_command_refuses_a_non_finite_request() -> None:
    with pytest.raises(ValueError, match="request_w must be a finite number"):
        SiteCommand(math.nan)


def test_dispatch_refuses_a_non_finite_time() -> None:
    with pytest.raises(ValueError, match="finite now_s"):
        run((pack("a", 50.0),), 0.0, now_s=math.nan)


def test_site_command_normalizes_its_fields() -> None:
    command = SiteCommand(900, "ac", maintenance={"a"})  # type: ignore[arg-type]
    assert command.request_w == 900.0
    assert command.charge_source is ChargeSource.AC
    assert command.maintenance == frozenset({"a"})


# --- closed loop ----------------------------------------------------------------------------------------


def test_closed_loop_discharge_converges_without_sign_changes() -> None:
    """Simulated packs under a constant discharge request: the SOC spread shrinks, setpoints stay >= 0."""
    packs = {
        "a": physics.default_params(2000.0, max_power_w=2000.0),
        "b": physics.default_params(1000.0, max_power_w=1000.0, soh_pct=90.0),
        "c": physics.default_params(1500.0, max_power_w=1500.0),
    }
    states = {
        "a": physics.PackState(soc_pct=90.0, temp_c=25.0),
        "b": physics.PackState(soc_pct=40.0, temp_c=25.0),
        "c": physics.PackState(soc_pct=65.0, temp_c=25.0),
    }
    params = BalancerParams(setpoint_deadband_w=5.0, ramp_w_per_s=2000.0)
    command = SiteCommand(1500.0)
    dt_s = 30.0  # coarse cycles keep the test short; the balancer has no notion of cycle length
    memory: BalancerMemory | None = None
    spreads: list[float] = []
    for cycle in range(400):
        nodes = []
        for node_id, pack_params in packs.items():
            op = physics.operating_point(pack_params, states[node_id])
            nodes.append(
                NodeState(
                    node_id,
                    soc_pct=states[node_id].soc_pct,
                    soh_pct=pack_params.soh_pct,
                    capacity_wh=pack_params.capacity_wh,
                    power_w=op.power_w,
                    temp_c=states[node_id].temp_c,
                    temp_max_c=op.temp_max_c,
                    charge_limit_w=op.limits.charge_w,
                    discharge_limit_w=op.limits.discharge_w,
                    setpoint_w=states[node_id].setpoint_w,
                    state=op.state,
                )
            )
        snapshot = FleetState(tuple(nodes), cycle * dt_s)
        spread = snapshot.soc_spread_pct
        assert spread is not None
        spreads.append(spread)
        result = dispatch(snapshot, command, params, memory, cycle * dt_s)
        memory = result.memory
        for node in result.nodes:
            assert node.setpoint_w >= 0.0, f"cycle {cycle}: {node}"
            states[node.node_id] = physics.step(
                packs[node.node_id],
                dataclasses.replace(states[node.node_id], setpoint_w=node.setpoint_w),
                dt_s,
            )
        if any(node.mode is NodeMode.AT_RESERVE for node in result.nodes):
            break
    assert spreads[0] == pytest.approx(50.0)
    assert len(spreads) > 100  # it ran down to the reserve, not just a few cycles
    # The spread shrinks every cycle until the first pack reaches its reserve (that cycle's step may end
    # it a little early), and the packs arrive at the reserve together.
    assert all(later < earlier for earlier, later in itertools.pairwise(spreads[:-1]))
    assert spreads[-1] < 1.0
