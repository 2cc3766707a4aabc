"""Battery-pack physics for the simulator: SOC, voltage, current, temperature and power limits.

Pure: no clock, no I/O. Time enters only as the `dt_s` argument of `step`/`advance`.
Sign convention: positive power and current = discharge.

Model, per pack:
- usable energy = nameplate × SOH; SOC integrates cell energy: discharging P W for dt takes
  P/eta_discharge from the cells, charging P W stores P·eta_charge; standby drain is always taken.
- terminal voltage = OCV(SOC) − I·R, with I solved from P = V·I (the physical root of R·I² − OCV·I + P = 0).
- lumped thermal model: C·dT/dt = I²R − k·(T − T_ambient), integrated exactly over a step
  (time constant C/k).
- power limits: nameplate, tapered linearly near empty and full, derated linearly when hot, capped by
  what a client wrote (charge/discharge caps), zero below the backup reserve for discharging.
- heartbeat watchdog (optional): without a new heartbeat value for `heartbeat_timeout_s` the pack
  goes to standby (limits 0, alarm `heartbeat_timeout`) until the next new value.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass, field, replace

SECONDS_PER_HOUR = 3600.0


class Chemistry(enum.StrEnum):
    LFP = "lfp"
    NMC = "nmc"


# Open-circuit voltage per cell against SOC (%). Typical shapes: LFP is flat between 20 and 90 %,
# NMC rises steadily. Between the knots the curve is linear.
_OCV_CURVES: dict[Chemistry, tuple[tuple[float, ...], tuple[float, ...]]] = {
    Chemistry.LFP: (
        (0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 90.0, 95.0, 100.0),
        (2.80, 3.10, 3.20, 3.25, 3.28, 3.30, 3.32, 3.34, 3.38, 3.55),
    ),
    Chemistry.NMC: (
        (0.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 90.0, 100.0),
        (3.00, 3.30, 3.45, 3.55, 3.67, 3.80, 3.97, 4.07, 4.20),
    ),
}


def cell_ocv_v(chemistry: Chemistry, soc_pct: float) -> float:
    """Open-circuit voltage of one cell at `soc_pct` (clamped to [0, 100])."""
    socs, volts = _OCV_CURVES[chemistry]
    soc = min(100.0, max(0.0, soc_pct))
    i = bisect.bisect_right(socs, soc)
    if i >= len(socs):
        return volts[-1]
    lo, hi = i - 1, i
    fraction = (soc - socs[lo]) / (socs[hi] - socs[lo])
    return volts[lo] + fraction * (volts[hi] - volts[lo])


@dataclass(frozen=True)
class PackParams:
    """What does not change while a pack runs: nameplate, chemistry and physical constants."""

    capacity_wh: float  # nameplate
    soh_pct: float = 100.0
    chemistry: Chemistry = Chemistry.LFP
    series_cells: int = 16
    max_charge_w: float = 2000.0
    max_discharge_w: float = 2000.0
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    resistance_ohm: float = 0.02
    thermal_mass_j_per_k: float = 20000.0
    cooling_w_per_k: float = 3.0
    ambient_c: float = 25.0
    standby_w: float = 2.0
    taper_low_pct: float = 10.0  # below this SOC the discharge limit falls linearly to 0 at 0 %
    taper_high_pct: float = 90.0  # above this SOC the charge limit falls linearly to 0 at 100 %
    derate_start_c: float = 45.0  # above this temperature both limits fall linearly...
    derate_stop_c: float = 60.0  # ...to 0 here
    over_temp_alarm_c: float = 55.0
    low_soc_alarm_pct: float = 5.0

    def __post_init__(self) -> None:
        problems = [
            name
            for name, ok in (
                ("capacity_wh > 0", self.capacity_wh > 0),
                ("0 < soh_pct <= 100", 0 < self.soh_pct <= 100),
                ("series_cells >= 1", self.series_cells >= 1),
                ("max_charge_w >= 0", self.max_charge_w >= 0),
                ("max_discharge_w >= 0", self.max_discharge_w >= 0),
                ("0 < eta_charge <= 1", 0 < self.eta_charge <= 1),
                ("0 < eta_discharge <= 1", 0 < self.eta_discharge <= 1),
                ("resistance_ohm >= 0", self.resistance_ohm >= 0),
                ("thermal_mass_j_per_k > 0", self.thermal_mass_j_per_k > 0),
                ("cooling_w_per_k > 0", self.cooling_w_per_k > 0),
                ("standby_w >= 0", self.standby_w >= 0),
                (
                    "0 < taper_low_pct < taper_high_pct < 100",
                    0 < self.taper_low_pct < self.taper_high_pct < 100,
                ),
                ("derate_start_c < derate_stop_c", self.derate_start_c < self.derate_stop_c),
            )
            if not ok
        ]
        if problems:
            raise ValueError(f"pack parameters violate: {', '.join(problems)} (got {self})")

    @property
    def usable_wh(self) -> float:
        return self.capacity_wh * self.soh_pct / 100.0

    @property
    def thermal_time_constant_s(self) -> float:
        return self.thermal_mass_j_per_k / self.cooling_w_per_k


def default_params(
    capacity_wh: float,
    *,
    soh_pct: float = 100.0,
    chemistry: Chemistry = Chemistry.LFP,
    max_power_w: float | None = None,
    standby_w: float = 2.0,
    ambient_c: float = 25.0,
    series_cells: int | None = None,
) -> PackParams:
    """Plausible constants for a pack of `capacity_wh`: 1 C power, ~1.5 % resistive loss at full power,
    10 J/K thermal mass per Wh and 1.5 W/K cooling per kWh (time constant ~1.9 h)."""
    cells = series_cells if series_cells is not None else (16 if chemistry is Chemistry.LFP else 14)
    power_w = max_power_w if max_power_w is not None else capacity_wh
    nominal_v = cells * cell_ocv_v(chemistry, 50.0)
    resistance = 0.015 * nominal_v**2 / power_w if power_w > 0 else 0.0
    return PackParams(
        capacity_wh=capacity_wh,
        soh_pct=soh_pct,
        chemistry=chemistry,
        series_cells=cells,
        max_charge_w=power_w,
        max_discharge_w=power_w,
        resistance_ohm=resistance,
        thermal_mass_j_per_k=10.0 * capacity_wh,
        cooling_w_per_k=1.5 * capacity_wh / 1000.0,
        ambient_c=ambient_c,
        standby_w=standby_w,
    )


@dataclass(frozen=True)
class PackState:
    """Everything that changes: the physical state, what clients wrote, and energy counters."""

    soc_pct: float
    temp_c: float
    setpoint_w: float = 0.0  # as written (commanded); the power actually delivered is clamped to the limits
    enabled: bool = True
    backup_reserve_pct: float = 0.0  # the pack's firmware refuses to discharge below it
    charge_cap_w: float | None = None  # client-written caps on the limits (None: no cap)
    discharge_cap_w: float | None = None
    heartbeat: int = 0
    heartbeat_timeout_s: float | None = None  # None: no watchdog
    heartbeat_age_s: float = 0.0  # since the heartbeat value last changed
    fault_flags: frozenset[str] = field(default_factory=frozenset)
    elapsed_s: float = 0.0
    # Energy counters (Wh, all >= 0): at the terminals, and taken by standby consumption.
    discharged_wh: float = 0.0
    charged_wh: float = 0.0
    standby_wh: float = 0.0


@dataclass(frozen=True)
class Limits:
    charge_w: float  # >= 0
    discharge_w: float  # >= 0


@dataclass(frozen=True)
class Operating:
    """The pack's electrical and logical condition at one instant, derived from params and state."""

    power_w: float
    current_a: float
    voltage_v: float
    ocv_v: float
    cell_voltage_min_v: float
    cell_voltage_max_v: float
    temp_max_c: float
    temp_min_c: float
    limits: Limits
    state: str  # canonical vocabulary label: off, standby, charging, discharging, idle, fault
    alarms: tuple[str, ...]


# Spread between the hottest/coldest cell and the pack mean, and between extreme cells' voltage.
TEMP_SPREAD_C = 1.5
CELL_VOLTAGE_SPREAD_V = 0.01
# Below this magnitude a pack with power is "idle" rather than charging/discharging.
IDLE_POWER_W = 1.0


def _fraction(numerator: float, denominator: float) -> float:
    return min(1.0, max(0.0, numerator / denominator))


def watchdog_expired(state: PackState) -> bool:
    return state.heartbeat_timeout_s is not None and state.heartbeat_age_s > state.heartbeat_timeout_s


def limits(params: PackParams, state: PackState) -> Limits:
    """Charge and discharge power the pack allows now."""
    if not state.enabled or state.fault_flags or watchdog_expired(state):
        return Limits(0.0, 0.0)
    thermal = _fraction(params.derate_stop_c - state.temp_c, params.derate_stop_c - params.derate_start_c)
    discharge = params.max_discharge_w * thermal * _fraction(state.soc_pct, params.taper_low_pct)
    charge = params.max_charge_w * thermal * _fraction(100.0 - state.soc_pct, 100.0 - params.taper_high_pct)
    if state.soc_pct <= state.backup_reserve_pct:
        discharge = 0.0
    if state.discharge_cap_w is not None:
        discharge = min(discharge, max(0.0, state.discharge_cap_w))
    if state.charge_cap_w is not None:
        charge = min(charge, max(0.0, state.charge_cap_w))
    return Limits(charge_w=charge, discharge_w=discharge)


def terminal_power_w(params: PackParams, state: PackState) -> float:
    """The setpoint clamped to the current limits."""
    lim = limits(params, state)
    return min(lim.discharge_w, max(-lim.charge_w, state.setpoint_w))


def pack_ocv_v(params: PackParams, soc_pct: float) -> float:
    return params.series_cells * cell_ocv_v(params.chemistry, soc_pct)


def current_for_power_a(ocv_v: float, resistance_ohm: float, power_w: float) -> float:
    """Current drawn when the terminals deliver `power_w`: the smaller root of R·I² − OCV·I + P = 0.

    Beyond the maximum transferable power (OCV²/4R) the current at that maximum is returned.
    """
    if resistance_ohm <= 0.0:
        return power_w / ocv_v
    discriminant = max(0.0, ocv_v * ocv_v - 4.0 * resistance_ohm * power_w)
    return (ocv_v - math.sqrt(discriminant)) / (2.0 * resistance_ohm)


def operating_point(params: PackParams, state: PackState) -> Operating:
    lim = limits(params, state)
    power = min(lim.discharge_w, max(-lim.charge_w, state.setpoint_w))
    ocv = pack_ocv_v(params, state.soc_pct)
    current = current_for_power_a(ocv, params.resistance_ohm, power)
    voltage = ocv - current * params.resistance_ohm
    cell_v = voltage / params.series_cells
    alarms: list[str] = []
    if state.temp_c >= params.over_temp_alarm_c:
        alarms.append("over_temperature")
    if state.soc_pct <= params.low_soc_alarm_pct:
        alarms.append("low_soc")
    if watchdog_expired(state):
        alarms.append("heartbeat_timeout")
    alarms.extend(sorted(state.fault_flags))
    if state.fault_flags:
        label = "fault"
    elif not state.enabled:
        label = "off"
    elif power > IDLE_POWER_W:
        label = "discharging"
    elif power < -IDLE_POWER_W:
        label = "charging"
    elif state.setpoint_w != 0.0 or watchdog_expired(state):
        label = "standby"  # asked for power it cannot give (reserve, empty, full, too hot, watchdog)
    else:
        label = "idle"
    return Operating(
        power_w=power,
        current_a=current,
        voltage_v=voltage,
        ocv_v=ocv,
        cell_voltage_min_v=cell_v - CELL_VOLTAGE_SPREAD_V,
        cell_voltage_max_v=cell_v + CELL_VOLTAGE_SPREAD_V,
        temp_max_c=state.temp_c + TEMP_SPREAD_C,
        temp_min_c=state.temp_c - TEMP_SPREAD_C,
        limits=lim,
        state=label,
        alarms=tuple(alarms),
    )


def step(params: PackParams, state: PackState, dt_s: float) -> PackState:
    """Advance one step of `dt_s` seconds with the power held constant over the step.

    The power is the clamped setpoint, further reduced so the step never takes SOC below the reserve
    (discharge) or above 100 % (charge): the energy counters then balance exactly.
    """
    hours = dt_s / SECONDS_PER_HOUR
    if hours <= 0.0:  # also a dt so small that it underflows
        return state
    usable = params.usable_wh
    stored_wh = state.soc_pct / 100.0 * usable
    standby_wh = min(params.standby_w * hours, stored_wh)
    power = terminal_power_w(params, state)
    if power > 0.0:
        above_reserve_wh = max(0.0, stored_wh - standby_wh - state.backup_reserve_pct / 100.0 * usable)
        power = min(power, above_reserve_wh * params.eta_discharge / hours)
        cells_wh = -power / params.eta_discharge * hours
    else:
        headroom_wh = max(0.0, usable - stored_wh + standby_wh)
        power = max(power, -headroom_wh / params.eta_charge / hours)
        cells_wh = -power * params.eta_charge * hours
    new_stored_wh = min(usable, max(0.0, stored_wh + cells_wh - standby_wh))

    ocv = pack_ocv_v(params, state.soc_pct)
    current = current_for_power_a(ocv, params.resistance_ohm, power)
    heat_w = current * current * params.resistance_ohm
    settle_c = params.ambient_c + heat_w / params.cooling_w_per_k
    decay = math.exp(-dt_s / params.thermal_time_constant_s)
    temp = settle_c + (state.temp_c - settle_c) * decay

    return replace(
        state,
        soc_pct=100.0 * new_stored_wh / usable,
        temp_c=temp,
        elapsed_s=state.elapsed_s + dt_s,
        heartbeat_age_s=state.heartbeat_age_s + dt_s,
        discharged_wh=state.discharged_wh + max(0.0, power) * hours,
        charged_wh=state.charged_wh + max(0.0, -power) * hours,
        standby_wh=state.standby_wh + standby_wh,
    )


# Longest step `advance` takes, and most steps it takes for one call (longer gaps use longer steps).
MAX_STEP_S = 10.0
MAX_STEPS_PER_ADVANCE = 1000


def advance(params: PackParams, state: PackState, dt_s: float) -> PackState:
    """Advance `dt_s` seconds in equal steps of at most MAX_STEP_S (at most MAX_STEPS_PER_ADVANCE steps)."""
    if dt_s <= 0.0:
        return state
    steps = min(MAX_STEPS_PER_ADVANCE, max(1, math.ceil(dt_s / MAX_STEP_S)))
    step_s = dt_s / steps
    for _ in range(steps):
        state = step(params, state, step_s)
    return state
