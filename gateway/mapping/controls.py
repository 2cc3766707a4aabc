"""The site controls every northbound protocol offers, in one table, and the one check they all use.

A point map names a control by its `Target` (`command: reserve_pct` in a DNP3 map, `control:
reserve_pct` in an IEC 61850 map). `decide(target, value, context, bounds)` is what every adapter calls
when a master writes: it returns the `CommandUpdate` the write makes, or a `Refusal` whose kind the
adapter translates into its protocol's status (DNP3 OUT_OF_RANGE / HARDWARE_ERROR, IEC 61850 a refused
check). A new protocol adds its own map format and status table, not another copy of these rules.

What is checked here is one value alone: its kind, its range, the point's own bounds from the map.
Rules between values (reserve + hysteresis < ceiling) are checked where the values in force live,
atomically with the change: `SiteCommandState.apply`, which the engine's `submit` runs.

Pure: no I/O, no threads.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.site_command import CommandUpdate

ControlValue = float | bool


class ValueKind(enum.Enum):
    ANALOG = "analog"  # a number (DNP3 analog output, IEC 61850 APC)
    BINARY = "binary"  # on/off (DNP3 CROB latch, IEC 61850 SPC)


class Target(enum.StrEnum):
    """What a master's write changes."""

    REQUEST_W = "request_w"
    REQUEST_PCT_RATED = "request_pct_rated"
    RESERVE_PCT = "reserve_pct"
    CEILING_PCT = "ceiling_pct"
    CHARGE_DISCHARGE_ENABLED = "charge_discharge_enabled"
    BALANCING_ENABLED = "balancing_enabled"
    NODE_MAINTENANCE = "node_maintenance"
    NODE_CALIBRATE = "node_calibrate"


class RefusalKind(enum.Enum):
    OUT_OF_RANGE = "out of range"  # not a number, outside the target's range or the point's bounds
    NOT_READY = "not ready"  # the gateway lacks what the value needs (the rated power is not known yet)
    WRONG_KIND = "wrong kind"  # a number for a switch or the other way round


@dataclass(frozen=True)
class Refusal:
    kind: RefusalKind
    reason: str


@dataclass(frozen=True)
class Context:
    """What a write is decided against: who sent it, the fleet's rated power, the point's node."""

    source: str
    rated_power_w: float | None = None
    node_id: str | None = None  # the pack a per-node control belongs to


@dataclass(frozen=True)
class ControlSpec:
    target: Target
    kind: ValueKind
    unit: str
    low: float | None  # the target's own range (analogs), before a map narrows it
    high: float | None
    per_node: bool
    description: str
    update: Callable[[ControlValue, Context], CommandUpdate]


def _request_w(value: ControlValue, context: Context) -> CommandUpdate:
    return CommandUpdate(source=context.source, request_w=float(value))


def _request_pct_rated(value: ControlValue, context: Context) -> CommandUpdate:
    assert context.rated_power_w  # decide() refuses the value first
    return CommandUpdate(source=context.source, request_w=float(value) * context.rated_power_w / 100.0)


def _node(context: Context) -> str:
    assert context.node_id is not None  # decide() refuses a per-node value without a node first
    return context.node_id


_SPECS = (
    ControlSpec(
        Target.REQUEST_W, ValueKind.ANALOG, "W", None, None, False,
        "site power request, + = discharge, within ± the rated power (when known)", _request_w,
    ),
    ControlSpec(
        Target.REQUEST_PCT_RATED, ValueKind.ANALOG, "%", -100.0, 100.0, False,
        "site power request as a share of the rated power (a DNP3 point scaled rated_permille)",
        _request_pct_rated,
    ),
    ControlSpec(
        Target.RESERVE_PCT, ValueKind.ANALOG, "%", 0.0, 100.0, False,
        "the balancer's backup reserve (below the ceiling by more than the hysteresis)",
        lambda v, c: CommandUpdate(source=c.source, reserve_pct=float(v)),
    ),
    ControlSpec(
        Target.CEILING_PCT, ValueKind.ANALOG, "%", 0.0, 100.0, False,
        "the balancer's SOC ceiling for charging (above the reserve by more than the hysteresis)",
        lambda v, c: CommandUpdate(source=c.source, ceiling_pct=float(v)),
    ),
    ControlSpec(
        Target.CHARGE_DISCHARGE_ENABLED, ValueKind.BINARY, "", None, None, False,
        "AN2018 charge/discharge mode: off = 0 W; requests written meanwhile are held until on",
        lambda v, c: CommandUpdate(source=c.source, charge_discharge_enabled=bool(v)),
    ),
    ControlSpec(
        Target.BALANCING_ENABLED, ValueKind.BINARY, "", None, None, False,
        "SOC balancing on (off: equal split)",
        lambda v, c: CommandUpdate(source=c.source, balancing_enabled=bool(v)),
    ),
    ControlSpec(
        Target.NODE_MAINTENANCE, ValueKind.BINARY, "", None, None, True,
        "the pack leaves the dispatch (on) or returns to it (off)",
        lambda v, c: CommandUpdate(source=c.source, maintenance=(_node(c), bool(v))),
    ),
    ControlSpec(
        Target.NODE_CALIBRATE, ValueKind.BINARY, "", None, None, True,
        "deep calibration cycle of the pack: on starts it, off aborts or re-arms it",
        lambda v, c: CommandUpdate(source=c.source, calibrate=(_node(c), bool(v))),
    ),
)  # fmt: skip
CONTROLS: Mapping[Target, ControlSpec] = MappingProxyType({spec.target: spec for spec in _SPECS})
# The targets a map may name. A request in % of the rated power is what a DNP3 point with
# `scale: rated_permille` and `command: request_w` writes; maps do not name it themselves.
MAP_TARGETS: Mapping[Target, ControlSpec] = MappingProxyType(
    {target: spec for target, spec in CONTROLS.items() if target is not Target.REQUEST_PCT_RATED}
)


def decide(
    target: Target,
    value: ControlValue,
    context: Context,
    bounds: tuple[float | None, float | None] = (None, None),
) -> CommandUpdate | Refusal:
    """The site command a write of `value` makes, or why it is refused. `bounds` are the point's own
    (from its map), in the target's unit; they narrow the target's range, never widen it."""
    spec = CONTROLS[target]
    if spec.kind is ValueKind.BINARY:
        if not isinstance(value, bool):
            return Refusal(RefusalKind.WRONG_KIND, f"{value!r} is not on/off")
    elif isinstance(value, bool) or not math.isfinite(value):
        return Refusal(RefusalKind.WRONG_KIND if isinstance(value, bool) else RefusalKind.OUT_OF_RANGE,
                       f"{value!r} is not a finite number")  # fmt: skip
    else:
        refusal = _range_refusal(spec, value, context, bounds)
        if refusal is not None:
            return refusal
    if spec.per_node and context.node_id is None:
        return Refusal(RefusalKind.NOT_READY, f"{target} needs a pack, and the point names none")
    return spec.update(value, context)


def _range_refusal(
    spec: ControlSpec, value: float, context: Context, bounds: tuple[float | None, float | None]
) -> Refusal | None:
    low, high = spec.low, spec.high
    if bounds[0] is not None:
        low = bounds[0] if low is None else max(low, bounds[0])
    if bounds[1] is not None:
        high = bounds[1] if high is None else min(high, bounds[1])
    if (low is not None and value < low) or (high is not None and value > high):
        where = f"{'' if low is None else f'{low:g}'} .. {'' if high is None else f'{high:g}'}"
        return Refusal(RefusalKind.OUT_OF_RANGE, f"{value:g} {spec.unit} is outside {where} {spec.unit}")
    rated = context.rated_power_w
    if spec.target is Target.REQUEST_PCT_RATED and not rated:
        return Refusal(
            RefusalKind.NOT_READY,
            "the fleet's rated power is not known yet (no pack has reported a discharge limit); "
            "set northbound.dnp3.rated_power_w",
        )
    if spec.target is Target.REQUEST_W and rated and abs(value) > rated * (1.0 + 1e-9):
        return Refusal(RefusalKind.OUT_OF_RANGE, f"{value:.0f} W exceeds the rated power ±{rated:.0f} W")
    return None
