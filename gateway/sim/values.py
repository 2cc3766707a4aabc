"""Engineering values of a simulated pack, by vocabulary point name, and the effect of written points.

Pure: the physics state in, a mapping of values out; a written value in, a new physics state out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from gateway.profiles.model import Point
from gateway.profiles.vocabulary import CONSTANT_POINTS, VOCABULARY
from gateway.sim import physics
from gateway.sim.physics import Operating, PackParams, PackState

# Points the simulator computes from the physics on every read: the vocabulary's changing quantities
# and the vendor extras of the shipped profiles that follow the physics. Every other point is static
# (identification, scale factors, constant quantities, other vendor extras) and encoded once.
DYNAMIC_POINTS = frozenset(VOCABULARY.keys() - CONSTANT_POINTS) | {
    "x_energy_discharged_kwh",
    "x_energy_charged_kwh",
    "x_battery_heartbeat",
    "x_heartbeat_timeout_s",
}


def dynamic_values(params: PackParams, state: PackState, op: Operating) -> dict[str, float | int | str]:
    """Engineering value of every dynamic point. `state` and `alarms` are labels, resolved by `raw_enum`."""
    return {
        "soc_pct": state.soc_pct,
        "voltage_v": op.voltage_v,
        "current_a": op.current_a,
        "power_w": op.power_w,
        "temp_c": state.temp_c,
        "temp_max_c": op.temp_max_c,
        "temp_min_c": op.temp_min_c,
        "cell_voltage_min_v": op.cell_voltage_min_v,
        "cell_voltage_max_v": op.cell_voltage_max_v,
        "charge_limit_w": op.limits.charge_w,
        "discharge_limit_w": op.limits.discharge_w,
        "setpoint_w": state.setpoint_w,
        "enable": int(state.enabled),
        "state": op.state,
        "heartbeat": state.heartbeat,
        "backup_reserve_pct": state.backup_reserve_pct,
        "cycle_count": int(state.discharged_wh / params.usable_wh),
        "x_energy_discharged_kwh": state.discharged_wh / 1000.0,
        "x_energy_charged_kwh": state.charged_wh / 1000.0,
        "x_battery_heartbeat": int(state.elapsed_s) & 0xFFFF,  # the battery's own heartbeat: +1 per second
        "x_heartbeat_timeout_s": state.heartbeat_timeout_s or 0.0,
    }


def static_values(params: PackParams, serial: str, model_name: str) -> dict[str, float | int | str]:
    """Values that never change while the pack runs, including the vendor extras of the shipped profiles."""
    nominal_v = params.series_cells * physics.cell_ocv_v(params.chemistry, 50.0)
    return {
        "serial": serial,
        "model_name": model_name,
        "soh_pct": params.soh_pct,
        "capacity_wh": params.capacity_wh,
        "standby_power_w": params.standby_w,
        "x_manufacturer": "socgw simulator",
        "x_dcdc_output_limit_w": max(params.max_charge_w, params.max_discharge_w),
        "x_grid_present": 1,
        "x_module_count": 16,
        "x_ah_rtg": params.capacity_wh / nominal_v,
        "x_soc_max_pct": 100.0,
        "x_soc_min_pct": 0.0,
        "x_battery_type": 4,  # SunSpec: lithium-ion
        "x_setpoint_mode": 1,  # SunSpec vendor model: follow WSet
    }


def _normal(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.lower())


# Other labels that stand for the simulator's canonical states (compared without case or punctuation),
# best first. SunSpec 802, for instance, has no charging/discharging: its closest is CONNECTED (idle).
_STATE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "idle": ("idle", "standby", "ready", "on"),
    "standby": ("standby", "idle", "ready", "on"),
    "charging": ("charging", "charge", "running", "on", "idle"),
    "discharging": ("discharging", "discharge", "running", "on", "idle"),
    "off": ("off", "disabled", "stopped", "standby"),
    "fault": ("fault", "error", "alarm"),
}

# Fragments of alarm-bit labels that mean the simulator's alarms (e.g. over_temp_alarm,
# module_over_temperature, soc_low_warning, under_soc_min_alarm); the lowest matching bit is used.
_ALARM_FRAGMENTS: Mapping[str, tuple[str, ...]] = {
    "over_temperature": ("overtemp",),
    "low_soc": ("soclow", "lowsoc", "undersoc"),
    "heartbeat_timeout": ("heartbeattimeout", "watchdog"),
}
# Bit used for a fault flag the profile has no bit of its own for.
_GENERIC_FAULT_FRAGMENTS = ("otheralarm", "fault")


def raw_for_label(point: Point, label: str) -> int | None:
    """The raw enum value `point.labels` gives canonical state `label`, trying known aliases."""
    by_label: dict[str, int] = {}
    for value, text in sorted(point.labels.items()):
        by_label.setdefault(_normal(text), value)
    for candidate in (label, *_STATE_ALIASES.get(label, ())):
        raw = by_label.get(_normal(candidate))
        if raw is not None:
            return raw
    return None


def _bit_containing(point: Point, fragments: tuple[str, ...]) -> int | None:
    for fragment in fragments:
        for bit, text in sorted(point.labels.items()):
            if fragment in _normal(text):
                return bit
    return None


def alarm_bits(point: Point, alarms: tuple[str, ...]) -> int:
    """Bitfield of the active alarms. A fault flag is the label of its bit; one the profile has no
    bit for sets the first bit labelled like a generic fault (other_alarm, ..._fault)."""
    by_label = {_normal(text): bit for bit, text in point.labels.items()}
    bits = 0
    for alarm in alarms:
        bit: int | None = by_label.get(_normal(alarm))
        if bit is None:
            bit = _bit_containing(point, _ALARM_FRAGMENTS.get(alarm, _GENERIC_FAULT_FRAGMENTS))
        if bit is not None:
            bits |= 1 << bit
    return bits


def apply_write(state: PackState, name: str, value: float | int | str) -> PackState:
    """The state after a client wrote `value` (already decoded and bounds-checked) to point `name`."""
    if isinstance(value, str):
        return state
    if name == "setpoint_w":
        return replace(state, setpoint_w=float(value))
    if name == "enable":
        return replace(state, enabled=bool(value))
    if name == "charge_limit_w":
        return replace(state, charge_cap_w=max(0.0, float(value)))
    if name == "discharge_limit_w":
        return replace(state, discharge_cap_w=max(0.0, float(value)))
    if name == "backup_reserve_pct":
        return replace(state, backup_reserve_pct=min(100.0, max(0.0, float(value))))
    if name == "heartbeat":
        fresh = int(value) != state.heartbeat
        return replace(state, heartbeat=int(value), heartbeat_age_s=0.0 if fresh else state.heartbeat_age_s)
    if name == "x_heartbeat_timeout_s":
        return replace(state, heartbeat_timeout_s=float(value) or None, heartbeat_age_s=0.0)
    return state
