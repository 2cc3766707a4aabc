"""The point vocabulary: the semantic names a profile maps registers onto.

Every point of every profile is one of these names, a vendor extra `x_<something>`, or a
scale-factor register `<something>_sf`. The fleet model, the balancer and the northbound
mappings only ever see vocabulary names, so a new device is supported by writing a profile.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "CANONICAL_STATES",
    "CONSTANT_POINTS",
    "FAST_POINTS",
    "FLEET_FEEDS",
    "PLAUSIBLE",
    "REQUIRED_POINTS",
    "SCALE_FACTOR_NAME",
    "VENDOR_EXTRA_NAME",
    "VOCABULARY",
    "PointSpec",
    "Poll",
    "fast_points",
    "fleet_feeds",
    "is_valid_point_name",
    "plausible_ranges",
]


class Poll(enum.StrEnum):
    """How often the gateway reads a point."""

    FAST = "fast"  # every poll: the balancer and SCADA need it fresh every cycle
    SLOW = "slow"  # every `slow_poll_every`-th poll: changes rarely, or is what the gateway itself wrote


@dataclass(frozen=True)
class PointSpec:
    """What a vocabulary name means, and every fact the gateway keeps about that quantity.

    `required`: the balancer cannot run a unit without it (every variant must map it).
    `writable_expected`: the gateway writes this point, so it is normally `access: rw` or `w`.
    `kinds`: the profile types that make sense for it (empty: any numeric type).
    `poll`: how often the gateway reads it (points outside the vocabulary are read at the slow rate).
    `plausible`: what a value can physically be, wider than any sane device's range; a value outside
    is a profile error (type, scale, word order or address), flagged by `socgw profile check`.
    `fleet_field`: the `NodeState` field it feeds (None: the fleet model does not carry it).
    `constant`: does not change while the unit runs (nameplate, identity, health that moves over
    months), so a simulator encodes it once.
    """

    name: str
    unit: str
    description: str
    required: bool = False
    writable_expected: bool = False
    kinds: tuple[str, ...] = ()
    poll: Poll = Poll.SLOW
    plausible: tuple[float, float] | None = None
    fleet_field: str | None = None
    constant: bool = False


_NUMERIC = ("u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64")
_FAST = Poll.FAST
_TEMPERATURE = (-40.0, 125.0)
_CELL_VOLTAGE = (0.5, 5.0)
_POWER_LIMIT = (0.0, 1e8)

_SPECS = (
    PointSpec(
        "soc_pct",
        "%",
        "State of charge, 0-100 %.",
        required=True,
        poll=_FAST,
        plausible=(0.0, 100.0),
        fleet_field="soc_pct",
    ),
    PointSpec(
        "soh_pct",
        "%",
        "State of health, 0-100 % of nameplate capacity.",
        plausible=(0.0, 110.0),
        fleet_field="soh_pct",
        constant=True,
    ),
    PointSpec(
        "capacity_wh",
        "Wh",
        "Nameplate (rated) energy capacity.",
        plausible=(1.0, 1e9),
        fleet_field="capacity_wh",
        constant=True,
    ),
    PointSpec(
        "voltage_v",
        "V",
        "DC voltage of the pack or rack.",
        poll=_FAST,
        plausible=(0.0, 2000.0),
        fleet_field="voltage_v",
    ),
    PointSpec("current_a", "A", "DC current, positive = discharge.", poll=_FAST, fleet_field="current_a"),
    PointSpec(
        "power_w",
        "W",
        "Measured DC power, positive = discharge.",
        required=True,
        poll=_FAST,
        fleet_field="power_w",
    ),
    PointSpec(
        "temp_c",
        "°C",
        "Representative (average) pack temperature.",
        poll=_FAST,
        plausible=_TEMPERATURE,
        fleet_field="temp_c",
    ),
    PointSpec(
        "temp_max_c",
        "°C",
        "Hottest cell or module temperature.",
        poll=_FAST,
        plausible=_TEMPERATURE,
        fleet_field="temp_max_c",
    ),
    PointSpec(
        "temp_min_c",
        "°C",
        "Coldest cell or module temperature.",
        poll=_FAST,
        plausible=_TEMPERATURE,
        fleet_field="temp_min_c",
    ),
    PointSpec(
        "cell_voltage_min_v",
        "V",
        "Lowest cell voltage.",
        poll=_FAST,
        plausible=_CELL_VOLTAGE,
        fleet_field="cell_voltage_min_v",
    ),
    PointSpec(
        "cell_voltage_max_v",
        "V",
        "Highest cell voltage.",
        poll=_FAST,
        plausible=_CELL_VOLTAGE,
        fleet_field="cell_voltage_max_v",
    ),
    PointSpec(
        "charge_limit_w",
        "W",
        "Maximum charge power the unit accepts now (a positive number).",
        poll=_FAST,
        plausible=_POWER_LIMIT,
        fleet_field="charge_limit_w",
    ),
    PointSpec(
        "discharge_limit_w",
        "W",
        "Maximum discharge power the unit delivers now (a positive number).",
        poll=_FAST,
        plausible=_POWER_LIMIT,
        fleet_field="discharge_limit_w",
    ),
    PointSpec(
        "setpoint_w",
        "W",
        "Power command written by the gateway, positive = discharge.",
        required=True,
        writable_expected=True,
        fleet_field="setpoint_w",  # as read back from the device
    ),
    PointSpec(
        "enable",
        "",
        "1 = the unit follows setpoints, 0 = disabled. Written by the gateway.",
        writable_expected=True,
        kinds=(*_NUMERIC, "enum"),
        plausible=(0.0, 1.0),
        fleet_field="enabled",
    ),
    PointSpec(
        "state",
        "",
        "Operating state: an enum whose labels are the canonical states "
        "off, standby, charging, discharging, idle, fault, maintenance.",
        kinds=("enum",),
        poll=_FAST,
        fleet_field="state",
    ),
    PointSpec(
        "alarms",
        "",
        "Active alarms and faults: a bitfield with a label per bit.",
        kinds=("bits",),
        poll=_FAST,
        fleet_field="alarms",
    ),
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
        constant=True,
    ),
    PointSpec(
        "backup_reserve_pct",
        "%",
        "SOC the unit keeps for backup; the balancer does not discharge below it.",
        writable_expected=True,
        plausible=(0.0, 100.0),
    ),
    PointSpec(
        "standby_power_w",
        "W",
        "Power the unit consumes itself while idle (standby consumption).",
        plausible=(0.0, 1e4),
        constant=True,
    ),
    PointSpec("cycle_count", "", "Equivalent full cycles so far."),
    PointSpec("serial", "", "Serial number.", kinds=("str", "u16", "u32", "u64"), constant=True),
    PointSpec("model_name", "", "Model name as reported by the unit.", kinds=("str",), constant=True),
)


def fast_points(specs: Iterable[PointSpec]) -> frozenset[str]:
    """The points read every poll; every other point is read every `slow_poll_every`-th poll."""
    return frozenset(spec.name for spec in specs if spec.poll is Poll.FAST)


def plausible_ranges(specs: Iterable[PointSpec]) -> Mapping[str, tuple[float, float]]:
    """Point name -> (lowest, highest) physically possible value, for the quantities that have bounds."""
    return MappingProxyType({spec.name: spec.plausible for spec in specs if spec.plausible is not None})


def fleet_feeds(specs: Iterable[PointSpec]) -> Mapping[str, str]:
    """Point name -> the `NodeState` field it feeds."""
    return MappingProxyType({spec.name: spec.fleet_field for spec in specs if spec.fleet_field is not None})


VOCABULARY: Mapping[str, PointSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
REQUIRED_POINTS: tuple[str, ...] = tuple(spec.name for spec in _SPECS if spec.required)
FAST_POINTS: frozenset[str] = fast_points(_SPECS)
PLAUSIBLE: Mapping[str, tuple[float, float]] = plausible_ranges(_SPECS)
FLEET_FEEDS: Mapping[str, str] = fleet_feeds(_SPECS)
CONSTANT_POINTS: frozenset[str] = frozenset(spec.name for spec in _SPECS if spec.constant)

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
