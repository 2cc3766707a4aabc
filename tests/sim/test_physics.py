"""Pack physics of the simulator: energy balance, bounds, thermal behaviour, limits, reserve."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sim import physics
from gateway.sim.physics import Chemistry, PackParams, PackState

PARAMS = physics.default_params(2048.0, soh_pct=90.0, max_power_w=2400.0, standby_w=2.0)

setpoints = st.floats(min_value=-10_000.0, max_value=10_000.0, allow_nan=False)
durations = st.floats(min_value=0.0, max_value=4 * 3600.0, allow_nan=False)
socs = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def stored_wh(params: PackParams, state: PackState) -> float:
    return state.soc_pct / 100.0 * params.usable_wh


@settings(max_examples=200, deadline=None)
@given(soc=socs, sequence=st.lists(st.tuples(setpoints, durations), min_size=1, max_size=30))
def test_energy_balances_and_soc_stays_in_range(soc: float, sequence: list[tuple[float, float]]) -> None:
    state = PackState(soc_pct=soc, temp_c=25.0)
    for setpoint_w, dt_s in sequence:
        state = physics.advance(PARAMS, replace(state, setpoint_w=setpoint_w), dt_s)
        assert 0.0 <= state.soc_pct <= 100.0
    # Cells lost exactly what the terminals delivered / eta_d, minus what charging stored (× eta_c),
    # plus standby consumption.
    cells_out_wh = (
        state.discharged_wh / PARAMS.eta_discharge - state.charged_wh * PARAMS.eta_charge + state.standby_wh
    )
    initial = PackState(soc_pct=soc, temp_c=25.0)
    assert stored_wh(PARAMS, initial) - stored_wh(PARAMS, state) == pytest.approx(cells_out_wh, abs=1e-6)


def test_discharge_delivers_soc_energy_times_efficiency() -> None:
    params = replace(PARAMS, standby_w=0.0)
    start = PackState(soc_pct=80.0, temp_c=25.0, setpoint_w=1000.0)
    end = physics.advance(params, start, 3600.0)
    delivered_wh = end.discharged_wh
    assert delivered_wh == pytest.approx(1000.0, rel=1e-9)
    taken_wh = stored_wh(params, start) - stored_wh(params, end)
    assert delivered_wh == pytest.approx(taken_wh * params.eta_discharge, rel=1e-9)


def test_charge_stores_terminal_energy_times_efficiency() -> None:
    params = replace(PARAMS, standby_w=0.0)
    start = PackState(soc_pct=20.0, temp_c=25.0, setpoint_w=-1000.0)
    end = physics.advance(params, start, 1800.0)
    assert end.charged_wh == pytest.approx(500.0, rel=1e-9)
    assert stored_wh(params, end) - stored_wh(params, start) == pytest.approx(500.0 * params.eta_charge)


def test_standby_drains_soc_at_zero_setpoint() -> None:
    state = physics.advance(PARAMS, PackState(soc_pct=50.0, temp_c=25.0), 3600.0)
    assert state.standby_wh == pytest.approx(2.0)
    assert state.soc_pct == pytest.approx(50.0 - 100.0 * 2.0 / PARAMS.usable_wh)
    main_unit = replace(PARAMS, standby_w=6.0)
    assert physics.advance(
        main_unit, PackState(soc_pct=50.0, temp_c=25.0), 3600.0
    ).standby_wh == pytest.approx(6.0)


def test_standby_stops_at_empty() -> None:
    state = physics.advance(PARAMS, PackState(soc_pct=0.001, temp_c=25.0), 30 * 24 * 3600.0)
    assert state.soc_pct == 0.0


@settings(max_examples=200, deadline=None)
@given(
    soc=socs,
    reserve=st.floats(min_value=0.0, max_value=100.0),
    sequence=st.lists(st.tuples(setpoints, durations), min_size=1, max_size=20),
)
def test_discharge_never_goes_below_the_backup_reserve(
    soc: float, reserve: float, sequence: list[tuple[float, float]]
) -> None:
    params = replace(PARAMS, standby_w=0.0)
    state = PackState(soc_pct=soc, temp_c=25.0, backup_reserve_pct=reserve)
    floor = min(soc, reserve)
    for setpoint_w, dt_s in sequence:
        state = physics.advance(params, replace(state, setpoint_w=setpoint_w), dt_s)
        assert state.soc_pct >= floor - 1e-9


def test_at_reserve_the_pack_refuses_discharge_but_charges() -> None:
    state = PackState(soc_pct=20.0, temp_c=25.0, backup_reserve_pct=20.0, setpoint_w=1000.0)
    op = physics.operating_point(PARAMS, state)
    assert op.power_w == 0.0
    assert op.limits.discharge_w == 0.0
    assert op.state == "standby"
    assert physics.operating_point(PARAMS, replace(state, setpoint_w=-1000.0)).power_w == -1000.0


def test_temperature_rises_under_load() -> None:
    state = PackState(soc_pct=90.0, temp_c=25.0, setpoint_w=2400.0)
    later = physics.advance(PARAMS, state, 600.0)
    assert later.temp_c > 25.0


def test_temperature_relaxes_to_ambient_with_the_thermal_time_constant() -> None:
    tau_s = PARAMS.thermal_time_constant_s
    assert tau_s == pytest.approx(PARAMS.thermal_mass_j_per_k / PARAMS.cooling_w_per_k)
    hot = PackState(soc_pct=50.0, temp_c=45.0)
    after_tau = physics.advance(PARAMS, hot, tau_s)
    excess = 45.0 - PARAMS.ambient_c
    assert after_tau.temp_c - PARAMS.ambient_c == pytest.approx(excess * math.exp(-1.0), rel=1e-9)
    after_3tau = physics.advance(PARAMS, hot, 3 * tau_s)
    assert after_3tau.temp_c - PARAMS.ambient_c == pytest.approx(excess * math.exp(-3.0), rel=1e-9)


def test_steady_temperature_is_ambient_plus_heat_over_cooling() -> None:
    # A huge pack, so ten time constants of charging barely move the SOC (and the OCV).
    params = replace(PARAMS, capacity_wh=1e7, standby_w=0.0)
    state = PackState(soc_pct=50.0, temp_c=25.0, setpoint_w=-500.0)
    op = physics.operating_point(params, state)
    heat_w = op.current_a**2 * params.resistance_ohm
    assert heat_w > 0.0
    hot = physics.advance(params, state, 10 * params.thermal_time_constant_s)
    assert hot.temp_c == pytest.approx(params.ambient_c + heat_w / params.cooling_w_per_k, rel=1e-3)


@pytest.mark.parametrize(
    ("soc_pct", "discharge_fraction", "charge_fraction"),
    [
        (0.0, 0.0, 1.0),
        (5.0, 0.5, 1.0),
        (10.0, 1.0, 1.0),
        (50.0, 1.0, 1.0),
        (95.0, 1.0, 0.5),
        (100.0, 1.0, 0.0),
    ],
)
def test_limits_taper_near_empty_and_full(
    soc_pct: float, discharge_fraction: float, charge_fraction: float
) -> None:
    lim = physics.limits(PARAMS, PackState(soc_pct=soc_pct, temp_c=25.0))
    assert lim.discharge_w == pytest.approx(PARAMS.max_discharge_w * discharge_fraction)
    assert lim.charge_w == pytest.approx(PARAMS.max_charge_w * charge_fraction)


@pytest.mark.parametrize(
    ("temp_c", "fraction"), [(40.0, 1.0), (45.0, 1.0), (52.5, 0.5), (60.0, 0.0), (70.0, 0.0)]
)
def test_limits_derate_when_hot(temp_c: float, fraction: float) -> None:
    lim = physics.limits(PARAMS, PackState(soc_pct=50.0, temp_c=temp_c))
    assert lim.discharge_w == pytest.approx(PARAMS.max_discharge_w * fraction)
    assert lim.charge_w == pytest.approx(PARAMS.max_charge_w * fraction)


def test_client_caps_lower_the_limits() -> None:
    state = PackState(soc_pct=50.0, temp_c=25.0, charge_cap_w=300.0, discharge_cap_w=700.0, setpoint_w=5000.0)
    op = physics.operating_point(PARAMS, state)
    assert (op.limits.charge_w, op.limits.discharge_w) == (300.0, 700.0)
    assert op.power_w == 700.0
    assert physics.operating_point(PARAMS, replace(state, setpoint_w=-5000.0)).power_w == -300.0


@given(setpoint=setpoints, soc=socs, temp=st.floats(min_value=-20.0, max_value=80.0))
def test_power_is_the_setpoint_clamped_to_the_limits(setpoint: float, soc: float, temp: float) -> None:
    op = physics.operating_point(PARAMS, PackState(soc_pct=soc, temp_c=temp, setpoint_w=setpoint))
    assert -op.limits.charge_w <= op.power_w <= op.limits.discharge_w
    if -op.limits.charge_w <= setpoint <= op.limits.discharge_w:
        assert op.power_w == setpoint


def test_disabled_or_faulted_pack_delivers_nothing() -> None:
    state = PackState(soc_pct=50.0, temp_c=25.0, setpoint_w=1000.0, enabled=False)
    op = physics.operating_point(PARAMS, state)
    assert (op.power_w, op.state) == (0.0, "off")
    faulted = replace(state, enabled=True, fault_flags=frozenset({"contactor"}))
    op = physics.operating_point(PARAMS, faulted)
    assert (op.power_w, op.state) == (0.0, "fault")
    assert "contactor" in op.alarms
    # A disabled pack still draws standby power.
    assert physics.advance(PARAMS, state, 3600.0).standby_wh == pytest.approx(2.0)


def test_alarms_for_heat_and_low_soc() -> None:
    assert physics.operating_point(PARAMS, PackState(soc_pct=50.0, temp_c=25.0)).alarms == ()
    alarms = physics.operating_point(PARAMS, PackState(soc_pct=3.0, temp_c=56.0)).alarms
    assert set(alarms) == {"over_temperature", "low_soc"}


@pytest.mark.parametrize("setpoint_w", [-2400.0, -500.0, 0.0, 500.0, 2400.0])
def test_terminal_voltage_sags_with_current(setpoint_w: float) -> None:
    op = physics.operating_point(PARAMS, PackState(soc_pct=50.0, temp_c=25.0, setpoint_w=setpoint_w))
    assert op.voltage_v * op.current_a == pytest.approx(setpoint_w, abs=1e-6)
    assert op.voltage_v == pytest.approx(op.ocv_v - op.current_a * PARAMS.resistance_ohm)
    if setpoint_w > 0:
        assert op.voltage_v < op.ocv_v
    elif setpoint_w < 0:
        assert op.voltage_v > op.ocv_v
    else:
        assert op.voltage_v == op.ocv_v


@given(low=socs, high=socs, chemistry=st.sampled_from(list(Chemistry)))
def test_ocv_rises_with_soc(low: float, high: float, chemistry: Chemistry) -> None:
    if low <= high:
        assert physics.cell_ocv_v(chemistry, low) <= physics.cell_ocv_v(chemistry, high)


def test_lfp_is_flat_in_the_middle_and_nmc_is_not() -> None:
    lfp_rise = physics.cell_ocv_v(Chemistry.LFP, 80.0) - physics.cell_ocv_v(Chemistry.LFP, 30.0)
    nmc_rise = physics.cell_ocv_v(Chemistry.NMC, 80.0) - physics.cell_ocv_v(Chemistry.NMC, 30.0)
    assert lfp_rise < 0.06
    assert nmc_rise > 0.2


def test_usable_energy_is_nameplate_times_soh() -> None:
    assert PARAMS.usable_wh == pytest.approx(2048.0 * 0.9)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="eta_charge"):
        PackParams(capacity_wh=1000.0, eta_charge=1.5)


def test_long_gaps_take_a_bounded_number_of_steps() -> None:
    state = PackState(soc_pct=80.0, temp_c=25.0, setpoint_w=100.0)
    year = physics.advance(PARAMS, state, 365 * 24 * 3600.0)
    assert 0.0 <= year.soc_pct <= 100.0
    assert year.elapsed_s == pytest.approx(365 * 24 * 3600.0)


def test_watchdog_puts_the_pack_in_standby_until_a_new_heartbeat() -> None:
    state = PackState(soc_pct=50.0, temp_c=25.0, setpoint_w=500.0, heartbeat_timeout_s=10.0)
    assert physics.operating_point(PARAMS, physics.advance(PARAMS, state, 9.0)).power_w == 500.0
    stale = physics.advance(PARAMS, state, 11.0)
    op = physics.operating_point(PARAMS, stale)
    assert (op.power_w, op.state, op.alarms) == (0.0, "standby", ("heartbeat_timeout",))
    fresh = replace(stale, heartbeat_age_s=0.0)
    assert physics.operating_point(PARAMS, fresh).power_w == 500.0
    no_watchdog = replace(stale, heartbeat_timeout_s=None)
    assert physics.operating_point(PARAMS, no_watchdog).power_w == 500.0
