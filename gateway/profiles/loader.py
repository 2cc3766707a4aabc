"""Load vendor profiles from YAML into `Profile` objects, reporting every problem with file:line:column.

A profile is written by an integrator from a vendor's register list, so the loader does not stop at
the first mistake: it collects them all, each with the exact position of the offending key or value
and a hint how to fix it. The format is described field by field in docs/profile-authoring.md; the
field tables below are also what `schema.py` turns into the JSON Schema for editors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.diagnostics import (
    PROFILE_PATH,
    SEMVER,
    Checker,
    Mark,
    MarkedList,
    MarkedMap,
    Problem,
    ProblemsError,
    YamlError,
    describe,
    did_you_mean,
    is_whole,
    load_yaml_file,
    named_files,
)
from gateway.diagnostics.fields import Field, choice, number, text, whole
from gateway.profiles.codec import FIRMWARE_FORMATS, INTEGER_RANGE, REGISTER_WIDTH
from gateway.profiles.model import (
    Access,
    Comms,
    DataType,
    Identify,
    Point,
    Profile,
    Table,
    Variant,
    Version,
    VersionRange,
    WordOrder,
)
from gateway.profiles.vocabulary import (
    CANONICAL_STATES,
    REQUIRED_POINTS,
    SCALE_FACTOR_NAME,
    VOCABULARY,
    is_valid_point_name,
)

__all__ = [
    "ADDRESS_NOTATIONS",
    "COMMS_FIELDS",
    "ENTRY_FIELDS",
    "IDENTIFY_FIELDS",
    "MODICON_RANGES",
    "TOP_LEVEL_FIELDS",
    "VARIANT_FIELDS",
    "ProfileError",
    "ProfileLibrary",
    "default_profile_dirs",
    "load_profile",
    "parse_version_range",
    "validate_profile",
]

# --- The format: keys and what they mean (the JSON Schema is generated from these tables) -----------

TOP_LEVEL_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "vendor": "Vendor slug (lowercase); with `model` it forms the profile key vendor/model.",
        "model": "Model slug (lowercase), e.g. mp2000.",
        "profile_version": 'Version of this file: MAJOR.MINOR.PATCH in quotes, e.g. "1.0.0".',
        "description": "What device this profile is for, and where the register map comes from.",
        "address_notation": "zero-based (protocol addresses, default) or modicon (4xxxx/3xxxx/0xxxx/1xxxx).",
        "comms": "Request limits and pacing of the device.",
        "identify": "Registers read before the firmware variant is known: firmware, optional markers.",
        "common": "Register entries shared by every variant (a variant entry of the same name replaces one).",
        "variants": "Register maps per firmware range; omit for a single map in `common`.",
    }
)

COMMS_FIELDS: Mapping[str, Field] = MappingProxyType(
    {
        "max_registers_per_read": whole(
            "Most holding/input registers one request may read (1-125, default 125).", 1, 125
        ),
        "max_bits_per_read": whole(
            "Most coils/discrete inputs one request may read (1-2000, default 2000).", 1, 2000
        ),
        "max_gap_registers": whole(
            "Unmapped addresses a block read may span to save requests (default 0: never).", 0, 124
        ),
        "min_request_gap_ms": number("Pause the device needs between two requests (default 0).", 0, 10_000),
        "timeout_ms": number("Response timeout per request (default 80).", 1, 60_000),
    }
)

IDENTIFY_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "registers": "Register entries read first; must include `firmware`.",
        "markers": "Point name -> value the device must show to be this model (e.g. SunS).",
        "firmware_format": "Reading of `firmware`: string (2.1.3), major_minor_x100 (201), major_minor_bytes",
    }
)

VARIANT_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "firmware": 'Firmware range this map is for, e.g. ">=1.0,<2.0" or ">=2.0" (default: all).',
        "name": "Short name of the variant for logs.",
        "registers": "Register entries of this variant (added to, or replacing, those in `common`).",
    }
)

ENTRY_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "table": "holding (default), input, coil or discrete.",
        "address": "Register address in the profile's address_notation.",
        "type": "u16 i16 u32 i32 u64 i64 f32 f64 str bits enum.",
        "length": "Registers of a str (2 characters each); 1, 2 or 4 for bits/enum; bits in coil tables.",
        "word_order": "big (most significant word first, default) or little, for multi-register values.",
        "scale": "Engineering value = raw × scale + offset (e.g. 0.1; -1 flips the sign).",
        "offset": "Added after scaling (e.g. -40 for a temperature sent with +40).",
        "scale_register": "Name of an i16 `*_sf` point holding a power-of-ten factor (SunSpec style).",
        "sentinel": "Raw value meaning 'not implemented' (0x8000 for i16, 0xFFFF for u16); reads as null.",
        "unit": "Engineering unit after scaling; must match the vocabulary's unit.",
        "access": "r (read, default), rw (read and write) or w (write only).",
        "min": "Lowest value the gateway may write (engineering units).",
        "max": "Highest value the gateway may write (engineering units).",
        "labels": "enum: value -> label; bits: bit number -> label.",
        "deadband": "Skip a write when the value changes by less than this (engineering units).",
        "description": "What the register is, in the vendor's words.",
    }
)

ADDRESS_NOTATIONS: tuple[str, ...] = ("zero-based", "modicon")

# Modicon numbers per table: (first, last, number of address 0). Both the 5-digit and 6-digit forms.
MODICON_RANGES: Mapping[Table, tuple[tuple[int, int, int], ...]] = MappingProxyType(
    {
        Table.HOLDING: ((40001, 49999, 40001), (400001, 465536, 400001)),
        Table.INPUT: ((30001, 39999, 30001), (300001, 365536, 300001)),
        Table.DISCRETE: ((10001, 19999, 10001), (100001, 165536, 100001)),
        Table.COIL: ((1, 65536, 1),),  # 00001-09999 and 000001-065536
    }
)
_MODICON_PREFIX = {Table.HOLDING: "4", Table.INPUT: "3", Table.DISCRETE: "1", Table.COIL: "0"}

_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_BIT_TABLE_WIDTH = {
    DataType.U16: 16,
    DataType.U32: 32,
    DataType.U64: 64,
    DataType.BITS: 64,
    DataType.ENUM: 64,
}
_ADDRESS_SPACE = 65536


_TEXT = text("")
_NUMBER = number("")
_WHOLE = whole("")


class ProfileError(ProblemsError):
    """A profile could not be loaded."""


def parse_version_range(text: str) -> VersionRange:
    """Parse ">=1.0,<2.0", ">=2.0", "<2.0" or "*"; raise ValueError saying what to write instead."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if parts == ["*"]:
        return VersionRange(Version(0))
    minimum, below = Version(0), None
    seen: set[str] = set()
    for part in parts:
        operator = ">=" if part.startswith(">=") else "<" if part.startswith("<") and part[1:2] != "=" else ""
        if not operator or operator in seen:
            raise ValueError(
                f"firmware range {text!r}: write at most one '>=X' and one '<Y' separated by a comma, "
                "e.g. '>=1.0,<2.0' (ranges are half-open)"
            )
        seen.add(operator)
        version = Version.parse(part[len(operator) :].strip())
        if operator == ">=":
            minimum = version
        else:
            below = version
    if not parts:
        raise ValueError("empty firmware range: write e.g. '>=1.0,<2.0', '>=2.0' or '*'")
    if below is not None and below <= minimum:
        raise ValueError(f"firmware range {text!r} is empty: the upper bound must be above {minimum}")
    return VersionRange(minimum, below)


# --- Building a profile from the marked YAML tree --------------------------------------------------


@dataclass
class _Entry:
    """A parsed register entry and the marks of its fields (for checks that need the whole map)."""

    point: Point
    marks: dict[str, Mark] = field(default_factory=dict)


class _Builder(Checker):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file
        self.notation = "zero-based"
        self.comms = Comms()
        # Points written but invalid: already reported, so not reported again as missing.
        self.invalid_points: set[str] = set()

    # Generic checks ------------------------------------------------------------------------------

    def text(self, mapping: MarkedMap, key: str, what: str, *, required: bool = False) -> str | None:
        value: str | None = self.value(mapping, key, _TEXT, where=what if required else "")
        return value

    def number(self, mapping: MarkedMap, key: str, *, integer: bool = False) -> float | None:
        value: float | None = self.value(mapping, key, _WHOLE if integer else _NUMBER)
        return value

    def choice(self, mapping: MarkedMap, key: str, choices: Sequence[str], default: str) -> str:
        value: str = self.value(mapping, key, choice("", choices), default)
        return value

    # The document --------------------------------------------------------------------------------

    def profile(self, data: Any, top: Mark) -> Profile | None:
        document = self.mapping(data, top, "a profile")
        if document is None:
            return None
        self.known_keys(document, TOP_LEVEL_FIELDS, "the profile")
        vendor = self.slug(document, "vendor")
        model = self.slug(document, "model")
        version = self.profile_version(document)
        description = self.text(document, "description", "the profile") or ""
        self.notation = self.choice(document, "address_notation", ADDRESS_NOTATIONS, "zero-based")
        if "comms" in document:
            self.comms = self.comms_section(document["comms"], document.value_mark("comms"))
        identify = self.identify(document)
        variants = self.variants(document)
        if self.problems or None in (vendor, model, version, identify) or not variants:
            if not self.problems:  # pragma: no cover - every None above records a problem
                self.problem(top, "the profile is incomplete")
            return None
        assert vendor is not None and model is not None and version is not None and identify is not None
        return Profile(
            vendor=vendor,
            model=model,
            profile_version=version,
            address_notation=self.notation,
            identify=identify,
            variants=tuple(variants),
            comms=self.comms,
            description=description.strip(),
            path=self.file,
        )

    def slug(self, document: MarkedMap, key: str) -> str | None:
        value = self.text(document, key, "the profile", required=True)
        if value is not None and not _SLUG.match(value):
            self.problem(
                document.value_mark(key),
                f"`{key}: {value}` must be a lowercase slug (letters, digits, . _ -), e.g. "
                f"{re.sub(r'[^a-z0-9._-]+', '-', value.lower()).strip('-._') or 'acme'}",
            )
            return None
        return value

    def profile_version(self, document: MarkedMap) -> Version | None:
        if "profile_version" not in document:
            self.problem(
                document.mark, 'the profile has no `profile_version`: add e.g. profile_version: "1.0.0"'
            )
            return None
        value = document["profile_version"]
        match = SEMVER.match(value) if isinstance(value, str) else None
        if match is None:
            self.problem(
                document.value_mark("profile_version"),
                f"profile_version {value!r} is not a semantic version: write MAJOR.MINOR.PATCH "
                'in quotes, e.g. profile_version: "1.2.0"',
            )
            return None
        return Version(*(int(part) for part in match.groups()))

    def comms_section(self, value: Any, mark: Mark) -> Comms:
        section = self.mapping(value, mark, "comms")
        if section is None:
            return Comms()
        self.known_keys(section, COMMS_FIELDS, "comms")
        settings = {key: self.value(section, key, field) for key, field in COMMS_FIELDS.items()}
        comms = Comms(**{key: value for key, value in settings.items() if value is not None})
        if comms.max_gap_registers >= comms.max_registers_per_read:
            self.problem(
                section.value_mark("max_gap_registers"),
                f"max_gap_registers {comms.max_gap_registers} must be below max_registers_per_read "
                f"{comms.max_registers_per_read}",
            )
        return comms

    # Identify ------------------------------------------------------------------------------------

    def identify(self, document: MarkedMap) -> Identify | None:
        if "identify" not in document:
            self.problem(
                document.mark,
                "the profile has no `identify` section: add identify: with registers: firmware: {...}",
            )
            return None
        section = self.mapping(document["identify"], document.value_mark("identify"), "identify")
        if section is None:
            return None
        self.known_keys(section, IDENTIFY_FIELDS, "identify")
        entries = self.registers(section, "registers", "identify")
        self.check_overlaps(entries)
        firmware_format = self.choice(section, "firmware_format", FIRMWARE_FORMATS, "string")
        firmware = entries.get("firmware")
        if firmware is None and "firmware" not in self.invalid_points:
            self.problem(
                section.key_mark("registers") if "registers" in section else section.mark,
                "identify has no `firmware` point: add the register holding the firmware version "
                "(it selects the variant)",
            )
        elif firmware is not None:
            is_text = firmware.point.type is DataType.STR
            if is_text != (firmware_format == "string"):
                self.problem(
                    firmware.marks["type"],
                    f"firmware is {firmware.point.type} but firmware_format is {firmware_format}: "
                    "use type str with firmware_format string, or a u16/u32 with major_minor_x100 "
                    "or major_minor_bytes",
                )
        markers = self.markers(section, entries)
        return Identify(
            points={name: entry.point for name, entry in entries.items()},
            markers=markers,
            firmware_format=firmware_format,
        )

    def markers(self, section: MarkedMap, entries: Mapping[str, _Entry]) -> dict[str, str | int]:
        if "markers" not in section:
            return {}
        mapping = self.mapping(section["markers"], section.value_mark("markers"), "identify markers")
        if mapping is None:
            return {}
        markers: dict[str, str | int] = {}
        for name, expected in mapping.items():
            entry = entries.get(name)
            if entry is None:
                self.problem(
                    mapping.key_mark(name),
                    f"marker {name!r} is not a point of identify.registers"
                    f"{did_you_mean(str(name), entries)}: add the register there",
                )
                continue
            wants_text = entry.point.type is DataType.STR
            if (wants_text and not isinstance(expected, str)) or (not wants_text and not is_whole(expected)):
                self.problem(
                    mapping.value_mark(name),
                    f"marker {name!r} expects {'text' if wants_text else 'a whole number'} "
                    f"(the point is {entry.point.type}), not {describe(expected)}",
                )
                continue
            markers[str(name)] = expected
        return markers

    # Variants ------------------------------------------------------------------------------------

    def variants(self, document: MarkedMap) -> list[Variant]:
        common = self.registers(document, "common", "common") if "common" in document else {}
        if "variants" not in document:
            if "common" not in document:
                self.problem(
                    document.mark,
                    "the profile maps no registers: add `common:` (one map for all firmware) or `variants:`",
                )
                return []
            return [self.variant(common, VersionRange(Version(0)), "all", document.key_mark("common"))]
        items = document["variants"]
        if not isinstance(items, MarkedList) or not items:
            self.problem(
                document.value_mark("variants"),
                "`variants` must be a non-empty list of `- firmware: ... registers: ...` items",
            )
            return []
        variants: list[Variant] = []
        range_marks: list[Mark] = []
        for index, item in enumerate(items):
            item_mark = items.item_mark(index)
            section = self.mapping(item, item_mark, f"variant {index + 1}")
            if section is None:
                continue
            self.known_keys(section, VARIANT_FIELDS, f"variant {index + 1}")
            firmware = self.firmware_range(section)
            if firmware is None:
                continue
            own = (
                self.registers(section, "registers", f"variant {firmware}") if "registers" in section else {}
            )
            merged = {**common, **own}
            name = self.text(section, "name", "variant") or str(firmware)
            mark = section.key_mark("firmware") if "firmware" in section else item_mark
            for earlier, earlier_mark in zip(variants, range_marks, strict=True):
                if earlier.firmware.overlaps(firmware):
                    self.problem(
                        mark,
                        f"firmware range {firmware} overlaps variant {earlier.firmware} (line "
                        f"{earlier_mark.line}): make the ranges disjoint, e.g. '<2.0' and '>=2.0'",
                    )
            variants.append(self.variant(merged, firmware, name, mark))
            range_marks.append(mark)
        return variants

    def firmware_range(self, section: MarkedMap) -> VersionRange | None:
        if "firmware" not in section:
            return VersionRange(Version(0))
        value = section["firmware"]
        if not isinstance(value, str):
            self.problem(
                section.value_mark("firmware"),
                f'firmware range must be text in quotes, e.g. ">=1.0,<2.0", not {describe(value)}',
            )
            return None
        try:
            return parse_version_range(value)
        except ValueError as exc:
            self.problem(section.value_mark("firmware"), str(exc))
            return None

    def variant(
        self, entries: Mapping[str, _Entry], firmware: VersionRange, name: str, mark: Mark
    ) -> Variant:
        self.check_overlaps(entries)
        self.check_scale_registers(entries)
        for required in REQUIRED_POINTS:
            if required not in entries and required not in self.invalid_points:
                self.problem(
                    mark,
                    f"variant {firmware} has no `{required}` point ({VOCABULARY[required].description} "
                    "The balancer needs it): add it to this variant's registers or to common",
                )
        return Variant(
            firmware=firmware,
            points={key: entry.point for key, entry in entries.items()},
            name=name,
            mark=mark,
        )

    def check_overlaps(self, entries: Mapping[str, _Entry]) -> None:
        by_table: dict[Table, list[_Entry]] = {}
        for entry in entries.values():
            by_table.setdefault(entry.point.table, []).append(entry)
        for table, members in by_table.items():
            members.sort(key=lambda e: (e.point.address, e.point.mark.line))
            widest: _Entry | None = None
            for entry in members:
                point = entry.point
                if widest is not None and point.address < widest.point.end:
                    other = widest.point
                    self.problem(
                        entry.marks["address"],
                        f"{point.name} ({table} {point.address}..{point.end - 1}, line {point.mark.line}) "
                        f"overlaps {other.name} ({table} {other.address}..{other.end - 1}, line "
                        f"{other.mark.line}): fix one of the addresses or lengths",
                    )
                if widest is None or point.end > widest.point.end:
                    widest = entry

    def check_scale_registers(self, entries: Mapping[str, _Entry]) -> None:
        for entry in entries.values():
            target_name = entry.point.scale_register
            if target_name is None:
                continue
            mark = entry.marks["scale_register"]
            target = entries.get(target_name)
            if target is None:
                known = [name for name in entries if SCALE_FACTOR_NAME.match(name)]
                self.problem(
                    mark,
                    f"scale register {target_name!r} of {entry.point.name} is not a point of this "
                    f"variant{did_you_mean(target_name, known)}: add it (type i16) or fix the name",
                )
            elif target.point.type is not DataType.I16 or target.point.table.is_bit_table:
                self.problem(
                    mark,
                    f"scale register {target_name!r} (line {target.point.mark.line}) is "
                    f"{target.point.table} {target.point.type}; a scale factor is an i16 register",
                )

    # Register entries ----------------------------------------------------------------------------

    def registers(self, parent: MarkedMap, key: str, what: str) -> dict[str, _Entry]:
        if key not in parent:
            self.problem(parent.mark, f"{what} has no `{key}:` section: add the register entries")
            return {}
        section = self.mapping(parent[key], parent.value_mark(key), f"{what} `{key}`")
        if section is None:
            return {}
        entries: dict[str, _Entry] = {}
        for name, value in section.items():
            entry = self.entry(str(name), value, section.key_mark(name), section.value_mark(name))
            if entry is None:
                self.invalid_points.add(str(name))
            else:
                entries[str(name)] = entry
        return entries

    def entry(self, name: str, value: Any, name_mark: Mark, value_mark: Mark) -> _Entry | None:
        if not is_valid_point_name(name):
            self.problem(
                name_mark,
                f"unknown point name {name!r}{did_you_mean(name, VOCABULARY)}: use a vocabulary name, "
                "x_<name> for a vendor extra, or <name>_sf for a scale-factor register",
            )
        entry = self.mapping(value, value_mark, f"point {name!r}")
        if entry is None:
            return None
        self.known_keys(entry, ENTRY_FIELDS, f"point {name!r}")
        marks = {key: entry.value_mark(key) for key in ENTRY_FIELDS}
        marks["name"] = name_mark
        data_type = self.data_type(entry, name)
        table, address = self.address(entry, name)
        if data_type is None or table is None or address is None:
            return None
        count = self.count(entry, name, table, data_type)
        if count is None:
            return None
        width_ok = self.check_extent(entry, name, table, address, count)
        access = Access(self.choice(entry, "access", [a.value for a in Access], "r"))
        if access.writable and not table.is_writable:
            self.problem(
                marks["access"],
                f"{name} is in the {table} table, which is read-only: use access: r, or map it to "
                f"{'a holding register' if table is Table.INPUT else 'a coil'} to write it",
            )
        scale, offset, scale_register = self.scaling(entry, name, data_type, table)
        minimum = self.number(entry, "min")
        maximum = self.number(entry, "max")
        if (minimum is not None or maximum is not None) and not access.writable:
            bound = "min" if minimum is not None else "max"
            self.problem(
                marks[bound],
                f"{name} has a write bound (`{bound}`) but is read-only: add access: rw, or remove the bound",
            )
        if minimum is not None and maximum is not None and minimum > maximum:
            self.problem(marks["min"], f"{name}: min {minimum:g} is above max {maximum:g}: swap them")
        deadband = self.number(entry, "deadband")
        if deadband is not None and deadband < 0:
            self.problem(marks["deadband"], f"{name}: deadband must not be negative")
        point = Point(
            name=name,
            table=table,
            address=address,
            type=data_type,
            count=count,
            word_order=WordOrder(self.choice(entry, "word_order", [w.value for w in WordOrder], "big")),
            scale=scale,
            offset=offset,
            scale_register=scale_register,
            sentinel=self.sentinel(entry, name, table, data_type, count) if width_ok else None,
            unit=self.unit(entry, name),
            access=access,
            minimum=minimum,
            maximum=maximum,
            labels=self.labels(entry, name, table, data_type, count),
            deadband=deadband or 0.0,
            description=(self.text(entry, "description", f"point {name!r}") or "").strip(),
            mark=name_mark,
        )
        self.check_vocabulary(point, marks)
        return _Entry(point, marks)

    def data_type(self, entry: MarkedMap, name: str) -> DataType | None:
        if "type" not in entry:
            self.problem(entry.mark, f"point {name!r} has no `type`: add one of {', '.join(DataType)}")
            return None
        value = entry["type"]
        try:
            return DataType(value)
        except ValueError:
            self.problem(
                entry.value_mark("type"),
                f"unknown type {value!r} for {name}{did_you_mean(str(value), DataType)}; "
                f"use one of {', '.join(DataType)}",
            )
            return None

    def address(self, entry: MarkedMap, name: str) -> tuple[Table | None, int | None]:
        table: Table | None = None
        if "table" in entry:
            chosen = self.choice(entry, "table", [t.value for t in Table], "")
            table = Table(chosen) if chosen else None
            if table is None:
                return None, None
        if "address" not in entry:
            self.problem(entry.mark, f"point {name!r} has no `address`")
            return table, None
        value, mark = entry["address"], entry.value_mark("address")
        if not is_whole(value):
            self.problem(mark, f"address of {name} must be a whole number, not {describe(value)}")
            return table, None
        if self.notation == "modicon":
            return self.modicon_address(value, table, name, mark)
        if not 0 <= value < _ADDRESS_SPACE:
            hint = (
                " (this looks like a Modicon number: set address_notation: modicon)" if value > 65535 else ""
            )
            self.problem(mark, f"address {value} of {name} is outside 0..65535{hint}")
            return table, None
        return table or Table.HOLDING, value

    def modicon_address(
        self, number: int, table: Table | None, name: str, mark: Mark
    ) -> tuple[Table | None, int | None]:
        for candidate in [table] if table is not None else list(MODICON_RANGES):
            for first, last, base in MODICON_RANGES[candidate]:
                # Without a table a bare number up to 9999 is a coil (0xxxx); six-digit coils need `table`.
                highest = min(last, 9999) if table is None and candidate is Table.COIL else last
                if first <= number <= highest:
                    return candidate, number - base
        owner = next(
            (t for t in MODICON_RANGES for first, last, _ in MODICON_RANGES[t] if first <= number <= last),
            None,
        )
        if table is not None and owner is not None:
            prefix = _MODICON_PREFIX[table]
            self.problem(
                mark,
                f"Modicon address {number} of {name} is in the {owner} range ({_MODICON_PREFIX[owner]}xxxx), "
                f"but the table is {table}: write {prefix}xxxx for {table}, e.g. "
                f"{MODICON_RANGES[table][0][0] + (number - _modicon_base(owner, number))}",
            )
        else:
            self.problem(
                mark,
                f"{number} is not a Modicon address: use 4xxxx/4xxxxx holding, 3xxxx input, "
                "0xxxx coil or 1xxxx discrete (one-based, e.g. 40001 is holding register 0); "
                "a six-digit coil number needs table: coil",
            )
        return table, None

    def count(self, entry: MarkedMap, name: str, table: Table, data_type: DataType) -> int | None:
        length = self.number(entry, "length", integer=True)
        mark = entry.value_mark("length")
        if length is not None and length < 1:
            self.problem(mark, f"length of {name} must be at least 1")
            return None
        if table.is_bit_table:
            widest = _BIT_TABLE_WIDTH.get(data_type)
            if widest is None:
                self.problem(
                    entry.value_mark("type"),
                    f"{name} is in the {table} table, which holds bits: use type u16 (a 0/1 flag), "
                    "bits or enum, or move it to a register table",
                )
                return None
            if length is not None and length > widest:
                self.problem(mark, f"{name}: a {data_type} in a {table} table spans at most {widest} bits")
                return None
            return int(length or 1)
        fixed = REGISTER_WIDTH.get(data_type)
        if fixed is not None:
            if length is not None and length != fixed:
                self.problem(mark, f"{name}: {data_type} always spans {fixed} register(s): remove `length`")
            return fixed
        if data_type is DataType.STR:
            if length is None:
                self.problem(
                    entry.value_mark("type"),
                    f"{name} is a str without `length`: add the number of registers (2 characters each)",
                )
                return None
            return int(length)
        if length is not None and length not in (1, 2, 4):
            self.problem(mark, f"{name}: a {data_type} spans 1, 2 or 4 registers (16, 32 or 64 bits)")
            return None
        return int(length or 1)

    def check_extent(self, entry: MarkedMap, name: str, table: Table, address: int, count: int) -> bool:
        if address + count > _ADDRESS_SPACE:
            self.problem(
                entry.value_mark("length") if "length" in entry else entry.value_mark("address"),
                f"{name} spans {table} {address}..{address + count - 1}, past the last address 65535: "
                "fix the address or length",
            )
            return False
        limit = self.comms.max_bits_per_read if table.is_bit_table else self.comms.max_registers_per_read
        if count > limit:
            self.problem(
                entry.value_mark("length"),
                f"{name} spans {count} addresses but one request reads at most {limit} "
                "(comms limit): shorten it or split it into several points",
            )
            return False
        return True

    def scaling(
        self, entry: MarkedMap, name: str, data_type: DataType, table: Table
    ) -> tuple[float, float, str | None]:
        scale = self.number(entry, "scale")
        offset = self.number(entry, "offset")
        scale_register = self.text(entry, "scale_register", f"point {name!r}")
        numeric = data_type in REGISTER_WIDTH or (table.is_bit_table and data_type is DataType.U16)
        for key in ("scale", "offset", "scale_register"):
            if key in entry and not numeric:
                self.problem(
                    entry.key_mark(key),
                    f"{name} is {data_type}: `{key}` only applies to numeric types; remove it",
                )
        if scale is not None and scale == 0:
            self.problem(entry.value_mark("scale"), f"{name}: scale 0 would erase every value")
            scale = None
        if scale is not None and scale_register is not None:
            self.problem(
                entry.key_mark("scale_register"),
                f"{name} has both `scale` and `scale_register`: keep one (a scale register already "
                "gives the power of ten)",
            )
        if scale_register is not None and table.is_bit_table:
            self.problem(entry.key_mark("scale_register"), f"{name}: bit tables take no scale register")
            scale_register = None
        return (scale if scale is not None else 1.0), (offset or 0.0), scale_register

    def sentinel(
        self, entry: MarkedMap, name: str, table: Table, data_type: DataType, count: int
    ) -> int | None:
        if "sentinel" not in entry:
            return None
        value, mark = entry["sentinel"], entry.value_mark("sentinel")
        if data_type is DataType.STR:
            self.problem(mark, f"{name}: a str has no sentinel (an unset string reads as empty); remove it")
            return None
        if not is_whole(value):
            self.problem(mark, f"sentinel of {name} must be a whole raw value such as 0x8000, not {value!r}")
            return None
        bits = count if table.is_bit_table else 16 * count
        signed = not table.is_bit_table and data_type in INTEGER_RANGE
        low = INTEGER_RANGE[data_type][0] if signed else 0  # a signed value, or
        high = (1 << bits) - 1  # the unsigned bit pattern (0x8000 for an i16), for every type
        if not low <= value <= high:
            self.problem(
                mark,
                f"sentinel {value} does not fit {name}'s {data_type} ({bits} bits): use a raw value in "
                f"{low}..{high} (e.g. 0x8000 for i16, 0xFFFF for u16)",
            )
            return None
        return int(value)

    def unit(self, entry: MarkedMap, name: str) -> str:
        spec = VOCABULARY.get(name)
        expected = spec.unit if spec is not None else ""
        if "unit" not in entry:
            return expected
        value = entry["unit"]
        if not isinstance(value, str):
            self.problem(entry.value_mark("unit"), f"unit of {name} must be text, not {describe(value)}")
            return expected
        if spec is not None and value != expected:
            self.problem(
                entry.value_mark("unit"),
                f"{name} is in {expected or 'no unit'}, not {value!r}: convert with `scale` "
                f"(e.g. kW -> W is scale 1000) and write unit: {expected!r}",
            )
        return value if spec is None else expected

    def labels(
        self, entry: MarkedMap, name: str, table: Table, data_type: DataType, count: int
    ) -> dict[int, str]:
        if "labels" not in entry:
            if data_type is DataType.ENUM:
                self.problem(
                    entry.value_mark("type"),
                    f"{name} is an enum without `labels`: add value -> label lines, e.g. labels: {{0: off}}",
                )
            return {}
        if data_type not in (DataType.ENUM, DataType.BITS):
            self.problem(entry.key_mark("labels"), f"{name}: labels only apply to enum and bits types")
            return {}
        mapping = self.mapping(entry["labels"], entry.value_mark("labels"), f"labels of {name}")
        if mapping is None:
            return {}
        width = count if table.is_bit_table else 16 * count
        labels: dict[int, str] = {}
        for key, label in mapping.items():
            if not is_whole(key) or key < 0:
                self.problem(
                    mapping.key_mark(key), f"label key {key!r} of {name} must be a whole number >= 0"
                )
                continue
            if data_type is DataType.BITS and key >= width:
                self.problem(
                    mapping.key_mark(key),
                    f"bit {key} of {name} does not exist: a {width}-bit field has bits 0..{width - 1} "
                    "(use length: 2 for 32 bits)",
                )
                continue
            if data_type is DataType.ENUM and key >= 1 << width:
                self.problem(mapping.key_mark(key), f"enum value {key} of {name} does not fit {width} bits")
                continue
            if not isinstance(label, str) or not label.strip():
                self.problem(mapping.value_mark(key), f"label of {key} in {name} must be text")
                continue
            if name == "state" and label not in CANONICAL_STATES:
                self.problem(
                    mapping.value_mark(key),
                    f"state label {label!r} is not canonical{did_you_mean(label, CANONICAL_STATES)}: "
                    f"use one of {', '.join(CANONICAL_STATES)}",
                )
            labels[int(key)] = label
        return labels

    def check_vocabulary(self, point: Point, marks: Mapping[str, Mark]) -> None:
        spec = VOCABULARY.get(point.name)
        if spec is None:
            return
        kinds = spec.kinds or tuple(t.value for t in REGISTER_WIDTH)
        if point.type.value not in kinds:
            self.problem(
                marks["type"],
                f"{point.name} must be one of the types {', '.join(kinds)}, not {point.type}",
            )
        if spec.required and spec.writable_expected and not point.access.writable:
            self.problem(
                marks["name"],
                f"{point.name} is written by the gateway: add access: rw (or w) and min/max bounds",
            )


def _modicon_base(table: Table, number: int) -> int:
    for first, last, base in MODICON_RANGES[table]:
        if first <= number <= last:
            return base
    return 0


# --- Public entry points ---------------------------------------------------------------------------


def _build(path: str | Path) -> tuple[Profile | None, list[Problem]]:
    file = str(path)
    try:
        data = load_yaml_file(path)
    except YamlError as exc:
        return None, [Problem(exc.mark, exc.problem)]
    builder = _Builder(file)
    profile = builder.profile(data, Mark(file, 1, 1))
    unique = dict.fromkeys(builder.problems)  # a common entry's problem shows once, not once per variant
    problems = sorted(unique, key=lambda p: (p.mark.file, p.mark.line, p.mark.column, p.message))
    return (profile if not problems else None), problems


def validate_profile(path: str | Path) -> list[Problem]:
    """Every problem of the profile at `path` (empty when it is valid)."""
    return _build(path)[1]


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile; raise `ProfileError` listing every problem."""
    profile, problems = _build(path)
    if problems or profile is None:
        raise ProfileError(problems)
    return profile


def default_profile_dirs() -> list[Path]:
    """Where profiles are looked up, first match wins: $SOCGW_PROFILE_PATH (colon-separated),
    /etc/socgw/profiles (local additions and overrides), the source tree's profiles/, and
    /usr/share/socgw/profiles (the packaged ones)."""
    return PROFILE_PATH.dirs()


class ProfileLibrary:
    """The profiles found under some directories, by key `vendor/model` (= path `vendor/model.yaml`).

    Profiles are loaded on first use; a broken profile only fails the `get` of its own key.
    """

    def __init__(self, dirs: Sequence[Path]) -> None:
        self._files = named_files(dirs)
        self._loaded: dict[str, Profile] = {}

    def keys(self) -> list[str]:
        return sorted(self._files)

    def get(self, key: str) -> Profile:
        """The profile `key`; raise `ProfileError` if it is unknown or invalid."""
        if key in self._loaded:
            return self._loaded[key]
        file = self._files.get(key)
        if file is None:
            hint = did_you_mean(key, self._files)
            raise ProfileError(
                [
                    Problem(
                        Mark(key, 0, 0),
                        f"no profile {key!r}{hint}; known profiles: {', '.join(self.keys()) or 'none'}",
                    )
                ]
            )
        profile = load_profile(file)
        if profile.key != key:
            raise ProfileError(
                [
                    Problem(
                        Mark(str(file), 1, 1),
                        f"the file declares {profile.key!r} but lives at {key}.yaml: "
                        f"move it to {profile.key}.yaml or fix vendor/model",
                    )
                ]
            )
        self._loaded[key] = profile
        return profile
