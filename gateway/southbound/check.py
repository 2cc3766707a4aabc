"""`socgw profile check`: read every point of a profile from a live device and flag what looks wrong.

Each point is read on its own request, so an exception names exactly the point that caused it. A value
is suspicious when it is the point's "not implemented" sentinel, outside what the quantity can physically
be (an SOC of 850 % is a scale error), or an enum value the profile has no label for.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.profiles.codec import CodecError, Value, active_labels, decode
from gateway.profiles.model import DataType, Point
from gateway.profiles.vocabulary import CANONICAL_STATES, REQUIRED_POINTS
from gateway.southbound.errors import FieldError
from gateway.southbound.session import ModbusSession

# What a value of each vocabulary quantity can physically be (wider than any sane device's range). The
# vocabulary describes names and units only; these bounds are the field tool's own judgement.
PLAUSIBLE: Mapping[str, tuple[float, float]] = {
    "soc_pct": (0.0, 100.0),
    "soh_pct": (0.0, 110.0),
    "backup_reserve_pct": (0.0, 100.0),
    "temp_c": (-40.0, 125.0),
    "temp_max_c": (-40.0, 125.0),
    "temp_min_c": (-40.0, 125.0),
    "voltage_v": (0.0, 2000.0),
    "cell_voltage_min_v": (0.5, 5.0),
    "cell_voltage_max_v": (0.5, 5.0),
    "capacity_wh": (1.0, 1e9),
    "charge_limit_w": (0.0, 1e8),
    "discharge_limit_w": (0.0, 1e8),
    "standby_power_w": (0.0, 1e4),
    "enable": (0.0, 1.0),
}


class Severity(enum.IntEnum):
    OK = 0
    WARNING = 1
    PROBLEM = 2


@dataclass(frozen=True)
class PointCheck:
    point: Point
    words: list[int] | None
    value: Value | None
    severity: Severity
    verdict: str


def assess(point: Point, value: Value | None, words: list[int]) -> tuple[Severity, str]:
    """Judge one decoded value."""
    name = point.name
    if value is None:
        if name in REQUIRED_POINTS:
            return Severity.PROBLEM, "reads as not implemented (sentinel), but the balancer needs it"
        return Severity.WARNING, "not implemented by the device (sentinel)"
    if isinstance(value, str):
        printable = value.isprintable()
        return (Severity.OK, "ok") if printable else (Severity.WARNING, "text with unprintable characters")
    if point.type is DataType.ENUM:
        label = point.labels.get(int(value))
        if label is None:
            return Severity.PROBLEM, f"value {int(value)} has no label in the profile"
        if name == "state" and label not in CANONICAL_STATES:
            return Severity.PROBLEM, f"state label {label!r} is not one of {', '.join(CANONICAL_STATES)}"
        return Severity.OK, label
    if point.type is DataType.BITS:
        labels = active_labels(point, int(value))
        unlabelled = [label for label in labels if label.startswith("bit")]
        if unlabelled:
            return Severity.WARNING, f"set bits without a label: {', '.join(unlabelled)}"
        return Severity.OK, ", ".join(labels) or "none set"
    if not math.isfinite(value):
        return Severity.PROBLEM, "not a finite number"
    bounds = PLAUSIBLE.get(name)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        return (
            Severity.PROBLEM,
            f"{value:g} {point.unit} is outside the plausible {bounds[0]:g}..{bounds[1]:g}: check the type, "
            "scale, word order and address",
        )
    return Severity.OK, "ok"


async def check_points(session: ModbusSession) -> list[PointCheck]:
    """Read and judge every readable point of the map the session selected (after `connect`)."""
    results: list[PointCheck] = []
    unit = session.target.unit
    raw: dict[str, list[int]] = {}
    points = dict(session.profile.identify.points) | dict(session.points)
    # Scale-factor registers first, so the points they scale can be decoded.
    order = sorted(
        points.values(), key=lambda p: (p.name not in _scale_registers(points), p.table, p.address)
    )
    for point in order:
        if not point.access.readable:
            continue
        try:
            words = await session.link.read(point.table, point.address, point.count, unit)
        except FieldError as error:
            error = error.in_context(session.context, (point.name,))
            results.append(PointCheck(point, None, None, Severity.PROBLEM, str(error)))
            if not session.link.connected:
                await session.link.open()
            continue
        raw[point.name] = words
        try:
            value = decode(point, words, _scale_factor(point, points, raw))
        except CodecError as error:
            results.append(PointCheck(point, words, None, Severity.PROBLEM, str(error)))
            continue
        severity, verdict = assess(point, value, words)
        results.append(PointCheck(point, words, value, severity, verdict))
    return results


def _scale_registers(points: Mapping[str, Point]) -> set[str]:
    return {p.scale_register for p in points.values() if p.scale_register}


def _scale_factor(point: Point, points: Mapping[str, Point], raw: Mapping[str, list[int]]) -> int | None:
    if point.scale_register is None:
        return None
    sf_point, words = points.get(point.scale_register), raw.get(point.scale_register)
    if sf_point is None or words is None:
        raise CodecError(
            f"point {point.name!r}: its scale register {point.scale_register!r} could not be read"
        )
    value = decode(sf_point, words)
    if value is None or isinstance(value, str):
        raise CodecError(
            f"point {point.name!r}: its scale register {point.scale_register!r} is not implemented"
        )
    return int(value)
