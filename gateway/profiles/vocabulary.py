"""The point vocabulary: the semantic names a profile maps registers onto.

Every point of every profile is one of these names, a vendor extra `x_<something>`, or a
scale-factor register `<something>_sf`. The fleet model, the balancer and the northbound
mappings only ever see vocabulary names, so a new device is supported by writing a profile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "CANONICAL_STATES",
    "REQUIRED_POINTS",
    "SCALE_FACTOR_NAME",
    "VENDOR_EXTRA_NAME",
    "VOCABULARY",
    "PointSpec",
    "is_valid_point_name",
]


@dataclass(frozen=True)
class PointSpec:
    """What a vocabulary name means.

    `required`: the balancer cannot run a unit without it (every variant must map it).
    `writable_expected`: the gateway writes this point, so it is normally `access: rw` or `w`.
    `kinds`: the profile types that make sense for it (empty: any numeric type).
    """

    name: str
    unit: str
    description: str
    required: bool = False
    writable_expected: bool = False
    kinds: tuple[str, ...] = ()


_NUMERIC = ("u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64")

_SPECS = (
    PointSpec("soc_pct", "%", "State of charge, 0-100 %.", required=True),
    PointSpec("soh_pct", "%", "State of health, 0-100 % of nameplate capacity."),
    PointSpec("capacity_wh", "Wh", "Nameplate (rated) energy capacity."),
    PointSpec("voltage_v", "V", "DC voltage of the pack or rack."),
    PointSpec("current_a", "A", "DC current, positive = discharge."),
    PointSpec("power_w", "W", "Measured DC power, positive = discharge.", required=True),
    PointSpec("temp_c", "°C", "Representative (average) pack temperature."),
    PointSpec("temp_max_c", "°C", "Hottest cell or module temperature."),
    PointSpec("temp_min_c", "°C", "Coldest cell or module temperature."),
    PointSpec("cell_voltage_min_v", "V", "Lowest cell voltage."),
    PointSpec("cell_voltage_max_v", "V", "Highest cell voltage."),
    PointSpec("charge_limit_w", "W", "Maximum charge power the unit accepts now (a positive number)."),
    PointSpec("discharge_limit_w", "W", "Maximum discharge power the unit delivers now (a positive number)."),
    PointSpec(
        "setpoint_w",
        "W",
        "Power command written by the gateway, positive = discharge.",
        required=True,
        writable_expected=True,
    ),
    PointSpec(
        "enable",
        "",
        "1 = the unit follows setpoints, 0 = disabled. Written by the gateway.",
        writable_expected=True,
        kinds=(*_NUMERIC, "enum"),
    ),
    PointSpec(
        "state",
        "",
        "Operating state: an enum whose labels are the canonical states "
        "off, standby, charging, discharging, idle, fault, maintenance.",
        kinds=("enum",),
    ),
    PointSpec("alarms", "", "Active alarms and faults: a bitfield with a label per bit.", kinds=("bits",)),
    PointSpec(
        "heartbeat",
        "",
        "Watchdog counter the gateway writes (or the unit increments); a stale value means a dead link.",
        writable_expected=True,
        kinds=("u16", "u32", "i16", "i32"),
    ),
    PointSpec(
        "firmware",
        "",
        "Firmware version: a string such as 2.1.3, or a number read with identify.firmware_format.",
        kinds=("str", "u16", "u32"),
    ),
    PointSpec(
        "backup_reserve_pct",
        "%",
        "SOC the unit keeps for backup; the balancer does not discharge below it.",
        writable_expected=True,
    ),
    PointSpec("standby_power_w", "W", "Power the unit consumes itself while idle (standby consumption)."),
    PointSpec("cycle_count", "", "Equivalent full cycles so far."),
    PointSpec("serial", "", "Serial number.", kinds=("str", "u16", "u32", "u64")),
    PointSpec("model_name", "", "Model name as reported by the unit.", kinds=("str",)),
)

VOCABULARY: Mapping[str, PointSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
REQUIRED_POINTS: tuple[str, ...] = tuple(spec.name for spec in _SPECS if spec.required)

# The `state` enum's labels must be among these, so the balancer and SCADA read every device alike.
CANONICAL_STATES: tuple[str, ...] = (
    "off",
    "standby",
    "charging",
    "discharging",
    "idle",
    "fault",
    "maintenance",
)

VENDOR_EXTRA_NAME = re.compile(r"^x_[a-z0-9][a-z0-9_]*$")
SCALE_FACTOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*_sf$")


def is_valid_point_name(name: str) -> bool:
    """A vocabulary name, a vendor extra `x_*` or a scale-factor register `*_sf`."""
    return name in VOCABULARY or bool(VENDOR_EXTRA_NAME.match(name) or SCALE_FACTOR_NAME.match(name))
