"""`socgw profile check`: read every point of a profile from a live device and flag what looks wrong.

Each point is read on its own request, so an exception names exactly the point that caused it. A value
is suspicious when it is the point's "not implemented" sentinel, outside what the quantity can physically
be (the vocabulary's `plausible` range: an SOC of 850 % is a scale error), or an enum value the profile
has no label for.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from gateway.profiles.codec import CodecError, Value, active_labels
from gateway.profiles.model import DataType, Point
from gateway.profiles.vocabulary import CANONICAL_STATES, PLAUSIBLE, REQUIRED_POINTS
from gateway.southbound.errors import FieldError
from gateway.southbound.session import ModbusSession


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


def assess(point: Point, value: Value | None) -> tuple[Severity, str]:
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
    points = session.known_points
    scale_registers = {p.scale_register for p in points.values() if p.scale_register}
    # Scale-factor registers first: a wrong one explains the values of every point it scales.
    order = sorted(points.values(), key=lambda p: (p.name not in scale_registers, p.table, p.address))
    results: list[PointCheck] = []
    for point in order:
        if not point.access.readable:
            continue
        try:
            read = await session.read_point(point.name)
        except (FieldError, CodecError) as error:
            results.append(PointCheck(point, None, None, Severity.PROBLEM, str(error)))
            continue
        if point.scale_register is not None and read.scale_factor is None:
            verdict = f"its scale register {point.scale_register!r} is not implemented (sentinel)"
            results.append(PointCheck(point, read.words, None, Severity.PROBLEM, verdict))
            continue
        severity, verdict = assess(point, read.value)
        results.append(PointCheck(point, read.words, read.value, severity, verdict))
    return results
