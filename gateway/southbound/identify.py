"""Which register map applies to a device: identify markers, firmware, variant. Pure (decoded values in).

A device whose firmware no variant covers is still worth watching: the points every variant maps the
same way (same table, address, type, width, word order and scaling) read correctly on any firmware, so
the node stays monitored read-only on those (`common_points`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.profiles.codec import CodecError, Value, decode_firmware
from gateway.profiles.model import Point, Profile, Variant, Version


@dataclass(frozen=True)
class Selection:
    """The outcome of identification."""

    firmware_text: str | None  # the firmware as the device reports it (for messages)
    firmware: Version | None  # None: unreadable
    variant: Variant | None  # None: no variant covers the firmware (monitor read-only)
    problem: str | None = None  # why firmware or variant could not be determined


def marker_mismatches(profile: Profile, values: Mapping[str, Value | None]) -> list[str]:
    """One line per identify marker whose decoded value differs from what the profile expects."""
    problems = []
    for name, expected in profile.identify.markers.items():
        found = values.get(name)
        if not _matches(found, expected):
            problems.append(f"identify point {name} is {found!r}, {profile.key} expects {expected!r}")
    return problems


def _matches(found: Value | None, expected: str | int) -> bool:
    if found is None:
        return False
    if isinstance(expected, str):
        return str(found).strip() == expected.strip()
    if isinstance(found, str):
        return found.strip() == str(expected)
    return int(found) == expected


def select_variant(profile: Profile, values: Mapping[str, Value | None]) -> Selection:
    """The variant for the firmware found in the decoded identify `values`."""
    raw_firmware = values.get("firmware")
    firmware_format = profile.identify.firmware_format
    raw_text = None if raw_firmware is None else _raw_text(raw_firmware, firmware_format)
    try:
        version = decode_firmware(raw_firmware, firmware_format)
    except CodecError as error:
        return Selection(raw_text, None, None, str(error))
    text = str(version) if isinstance(raw_firmware, str) else f"{version} (raw {raw_text})"
    variant = profile.variant_for(version)
    if variant is None:
        return Selection(text, version, None, f"no variant of {profile.key} covers firmware {version}")
    return Selection(text, version, variant)


def _raw_text(value: Value, firmware_format: str) -> str:
    if isinstance(value, str):
        return repr(value.strip())
    number = int(value)
    return f"{number:#06x}" if firmware_format == "major_minor_bytes" else str(number)


def variant_ranges(profile: Profile) -> tuple[str, ...]:
    return tuple(str(variant.firmware) for variant in profile.variants)


def _wire_layout(point: Point) -> tuple[object, ...]:
    return (
        point.table,
        point.address,
        point.type,
        point.count,
        point.word_order,
        point.scale,
        point.offset,
        point.scale_register,
        point.sentinel,
    )


def common_points(profile: Profile) -> dict[str, Point]:
    """Points mapped identically by every variant, as read-only points (safe on an unknown firmware)."""
    if not profile.variants:
        return {}
    first, *others = profile.variants
    common = {
        name: point
        for name, point in first.points.items()
        if point.access.readable
        and all(
            name in other.points and _wire_layout(other.points[name]) == _wire_layout(point)
            for other in others
        )
    }
    # A point scaled by a register that is not itself common cannot be decoded.
    return {
        name: point
        for name, point in common.items()
        if point.scale_register is None or point.scale_register in common
    }
