"""The IEC 61850 map (`mappings/iec61850/*.yaml`): the logical nodes, data objects, datasets and report
control blocks the MMS server exposes, and which fleet quantity (`gateway/mapping/sources.py`) feeds
each data object.

Every IEC 61850 name (logical node classes, data object names, CDCs, enumerations) lives in the map, not
in code: the standards are paywalled and editions disagree, so a site can ship its own map without a
code change. `load_map` checks the whole file and raises `MappingError` listing every problem with
file:line:column.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.diagnostics import (
    MAPPING_PATH,
    NO_MARK,
    Checker,
    Mark,
    MarkedList,
    MarkedMap,
    ProblemsError,
    YamlError,
    did_you_mean,
    find_named_file,
    load_yaml_file,
)
from gateway.diagnostics.fields import (
    anything,
    choice,
    flag,
    list_of,
    mapping_of,
    number,
    section,
    table,
    text,
    version,
    whole,
)
from gateway.mapping.controls import MAP_TARGETS, Target, ValueKind
from gateway.mapping.sources import FLEET_SOURCES, NODE_SOURCES

# The CDCs the server knows how to build, and the functional constraint of their value (for datasets).
VALUE_FC: Mapping[str, str] = {
    "MV": "MX",
    "APC": "MX",
    "SPS": "ST",
    "INS": "ST",
    "ENS": "ST",
    "ENC": "ST",
    "SPC": "ST",
    "LPL": "DC",
    "DPL": "DC",
}
NAME_PLATE_CDCS = ("LPL", "DPL")
ENUM_CDCS = ("ENS", "ENC")
CONTROL_CDCS = ("APC", "SPC")
# The site control targets (`gateway/mapping/controls.py`) a control may change, and the CDC that
# carries each: APC for a number, SPC for on/off.
CONTROL_TARGETS: Mapping[str, str] = {
    str(target): "APC" if spec.kind is ValueKind.ANALOG else "SPC" for target, spec in MAP_TARGETS.items()
}
# Name plate attributes the server can create per CDC (libiec61850's CDC options).
TEXT_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "LPL": ("vendor", "swRev", "d", "configRev", "ldNs"),
    "DPL": ("vendor", "hwRev", "swRev", "serNum", "model", "location", "d"),
}
PLACEHOLDERS = ("version", "map_version", "site", "ied", "node", "vendor", "model")
TRIGGERS = ("dchg", "qchg", "dupd", "period", "gi")
REPORT_OPTIONS = (
    "seqNum",
    "timeStamp",
    "dataSet",
    "reasonCode",
    "dataRef",
    "entryID",
    "configRef",
    "bufOvfl",
)

LN_NAME = re.compile(r"^(?:LLN0|[A-Z]{4}[0-9]{1,4})$")
DO_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,11}$")
BLOCK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
DEVICE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")

# --- The format: keys and what they hold (`socgw map schema iec61850` is made from these tables) -----

OBJECT_FIELDS = table(
    {
        "cdc": choice("Common data class.", VALUE_FC),
        "source": text("Quantity published (fleet.* in the fleet device, node.* in packs)."),
        "value": anything("A constant instead of a source.", type=["number", "boolean"]),
        "states": anything("Integer published for a false/true source.", type="object"),
        "enum": text("ENS/ENC: the enumeration (one of `enums`)."),
        "control": choice("APC/SPC: the site command an operate changes.", CONTROL_TARGETS),
        "min": number("APC: lowest accepted setpoint."),
        "max": number("APC: highest accepted setpoint."),
        "deadband": number(
            "MV: `mag` moves only when the source moved by more than this.",
            0,
            remedy="write it in the source's unit",
        ),
        "text": mapping_of("LPL/DPL: name plate attribute -> template ({site}, {node}, ...).", text("")),
        "description": text("What the data object is."),
    }
)
_DATA_OBJECTS = mapping_of(
    "Data object name -> its settings.", section("A data object.", OBJECT_FIELDS, required=("cdc",))
)
REPORT_DEFAULT_FIELDS = table(
    {
        "buf_time_ms": whole("Buffer time before a report is sent (default 100).", 0),
        "integrity_period_ms": whole("Integrity report period, 0: none (default 0).", 0),
        "triggers": list_of("Trigger options.", choice("", TRIGGERS)),
        "options": list_of("Optional report fields.", choice("", REPORT_OPTIONS)),
    }
)
REPORT_FIELDS = table(
    {
        "dataset": text("The dataset reported (one of this device's `datasets`)."),
        "buffered": flag("true: a BRCB (buffered), false: a URCB.", rule="true (BRCB) or false (URCB)"),
        "rpt_id": text("Report id (1-65 characters)."),
        **REPORT_DEFAULT_FIELDS,
    }
)
DEVICE_FIELDS = table(
    {
        "device": text("Fleet only: the logical device name, e.g. FLEET.", pattern=DEVICE_NAME),
        "logical_nodes": mapping_of("Logical node (LLN0, ZBAT1...) -> its data objects.", _DATA_OBJECTS),
        "datasets": mapping_of("Dataset name -> members (LN or LN.DO).", list_of("", text(""))),
        "reports": mapping_of(
            "Report control block name -> settings.",
            section("A report control block.", REPORT_FIELDS, required=("dataset", "buffered")),
        ),
    }
)
TOP_FIELDS = table(
    {
        "map_version": version("Version of this map."),
        "enums": mapping_of("Enumeration name -> {ordinal: literal}.", mapping_of("", text(""))),
        "attribute_enums": mapping_of("Enumerated attribute (ctlModel, orCat...) -> enumeration.", text("")),
        "si_units": mapping_of("Source unit -> SIUnitKind ordinal.", whole("")),
        "report_defaults": section("Defaults of every report control block.", REPORT_DEFAULT_FIELDS),
        "every_ln": _DATA_OBJECTS,
        "fleet": section("The fleet's logical device.", DEVICE_FIELDS, required=("device", "logical_nodes")),
        "pack": section("Each pack's logical device (named after the node id).", DEVICE_FIELDS),
    }
)


class MappingError(ProblemsError):
    """The map is not usable; `problems` lists every problem, each with file:line:column."""


@dataclass(frozen=True)
class DataObjectSpec:
    name: str
    cdc: str
    source: str | None = None
    value: float | bool | None = None  # a constant instead of a source
    states: Mapping[bool, int] | None = None  # integer published for a true/false source
    enum: str | None = None
    control: Target | None = None  # the site control target an operate changes
    minimum: float | None = None
    maximum: float | None = None
    deadband: float = 0.0  # MV: `mag` moves only when the source moved by more than this
    text: Mapping[str, str] = field(default_factory=dict)  # name plate attribute → template
    description: str | None = None
    mark: Mark = field(default=NO_MARK, compare=False)

    @property
    def value_fc(self) -> str:
        return VALUE_FC[self.cdc]


@dataclass(frozen=True)
class LogicalNodeSpec:
    name: str  # e.g. ZBAT1, LLN0
    objects: tuple[DataObjectSpec, ...]
    mark: Mark = field(default=NO_MARK, compare=False)

    @property
    def ln_class(self) -> str:
        return self.name[:4]

    @property
    def inst(self) -> str:
        return "" if self.name == "LLN0" else self.name[4:]

    def object(self, name: str) -> DataObjectSpec | None:
        for spec in self.objects:
            if spec.name == name:
                return spec
        return None


@dataclass(frozen=True)
class DataSetMember:
    logical_node: str
    data_object: str
    fc: str  # functional constraint of the member's value: MX or ST


@dataclass(frozen=True)
class DataSetSpec:
    name: str
    members: tuple[DataSetMember, ...]
    mark: Mark = field(default=NO_MARK, compare=False)


@dataclass(frozen=True)
class ReportSpec:
    name: str
    dataset: str
    buffered: bool
    rpt_id: str | None
    buf_time_ms: int
    integrity_period_ms: int
    triggers: tuple[str, ...]
    options: tuple[str, ...]
    mark: Mark = field(default=NO_MARK, compare=False)


@dataclass(frozen=True)
class DeviceSpec:
    role: str  # "fleet" or "pack"
    device: str | None  # the LD inst (fleet); None for packs (named after the node id)
    logical_nodes: tuple[LogicalNodeSpec, ...]
    datasets: tuple[DataSetSpec, ...]
    reports: tuple[ReportSpec, ...]

    def logical_node(self, name: str) -> LogicalNodeSpec | None:
        for spec in self.logical_nodes:
            if spec.name == name:
                return spec
        return None


@dataclass(frozen=True)
class IecMap:
    path: str
    map_version: str
    enums: Mapping[str, Mapping[int, str]]
    attribute_enums: Mapping[str, str]  # enumerated attribute name (ctlModel, orCat...) → enumeration
    si_units: Mapping[str, int]  # sources.py unit → SIUnitKind ordinal
    fleet: DeviceSpec
    pack: DeviceSpec


def find_map(name: str, config_dir: Path, dirs: Sequence[Path] | None = None) -> Path:
    """The map file for `name`: a path (relative to the config's folder) when it has a '/' or ends in
    .yaml, else `<dir>/iec61850/<name>.yaml` in the map folders. FileNotFoundError says where it looked."""
    return find_named_file(name, config_dir, "iec61850", "IEC 61850 map", dirs or MAPPING_PATH.dirs())


def load_map(path: str | Path) -> IecMap:
    """Load and check an IEC 61850 map; raise `MappingError` listing every problem found."""
    checker = _Checker()
    file = str(path)
    try:
        root = load_yaml_file(path)
    except YamlError as error:
        checker.problem(error.mark, error.problem)
        raise MappingError(checker.problems) from None
    if not isinstance(root, MarkedMap):
        checker.problem(Mark(file, 1, 1), "an IEC 61850 map must be a mapping (map_version, fleet, pack...)")
        raise MappingError(checker.problems)
    checker.known_keys(root, TOP_FIELDS, "the map")
    map_version = checker.value(root, "map_version", TOP_FIELDS["map_version"], "0.0.0", where="the map")
    enums = _load_enums(checker, root)
    attribute_enums = _load_name_table(checker, root, "attribute_enums", enums)
    si_units = _load_si_units(checker, root, enums)
    defaults = _load_report_defaults(checker, root)
    every_ln = (
        _load_objects(checker, root, "every_ln", "fleet", enums, allow_sources=False)
        if "every_ln" in root
        else ()
    )
    fleet = _load_device(checker, root, "fleet", enums=enums, every_ln=every_ln, defaults=defaults)
    pack = _load_device(checker, root, "pack", enums=enums, every_ln=every_ln, defaults=defaults)
    if checker.problems:
        raise MappingError(checker.problems)
    return IecMap(
        path=file,
        map_version=str(map_version),
        enums=enums,
        attribute_enums=attribute_enums,
        si_units=si_units,
        fleet=fleet,
        pack=pack,
    )


# ---------------------------------------------------------------------------------------------------
# checking


@dataclass(frozen=True)
class _ReportDefaults:
    buf_time_ms: int = 100
    integrity_period_ms: int = 0
    triggers: tuple[str, ...] = ("dchg", "qchg", "gi")
    options: tuple[str, ...] = ("seqNum", "timeStamp", "dataSet", "reasonCode", "entryID", "configRef")


class _Checker(Checker):
    def mapping_under(self, parent: MarkedMap, key: str, what: str, *, required: bool = True) -> MarkedMap:
        """The mapping under `key` (empty when absent: reported if `required`)."""
        value = parent.get(key)
        if isinstance(value, MarkedMap):
            return value
        if value is not None or required:
            where = parent.value_mark(key) if key in parent else parent.mark
            self.problem(where, f"`{key}` must be a mapping of {what}")
        return MarkedMap(parent.value_mark(key) if key in parent else parent.mark)

    def names(
        self, mapping: MarkedMap, key: str, allowed: Sequence[str], default: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = mapping.get(key)
        if value is None:
            return default
        if not isinstance(value, MarkedList) or not all(isinstance(item, str) for item in value):
            self.problem(mapping.value_mark(key), f"`{key}` must be a list of {', '.join(allowed)}")
            return default
        for index, item in enumerate(value):
            if item not in allowed:
                self.problem(
                    value.item_mark(index), f"unknown `{key}` entry `{item}`: use {', '.join(allowed)}"
                )
        return tuple(item for item in value if item in allowed)


def _load_enums(checker: _Checker, root: MarkedMap) -> dict[str, dict[int, str]]:
    enums: dict[str, dict[int, str]] = {}
    section = checker.mapping_under(root, "enums", "enumerations (name: {ordinal: literal})")
    for name, values in section.items():
        if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
            checker.problem(section.key_mark(name), f"enumeration name {name!r} must be a plain identifier")
            continue
        if not isinstance(values, MarkedMap) or not values:
            checker.problem(section.value_mark(name), f"enumeration `{name}` must map ordinals to literals")
            continue
        literals: dict[int, str] = {}
        for ordinal, literal in values.items():
            if isinstance(ordinal, bool) or not isinstance(ordinal, int) or not isinstance(literal, str):
                checker.problem(
                    values.key_mark(ordinal),
                    f"enumeration `{name}`: each entry is `ordinal: literal` (an integer and a text), "
                    f"not {ordinal!r}: {literal!r}",
                )
                continue
            literals[ordinal] = literal
        enums[name] = literals
    return enums


def _load_name_table(
    checker: _Checker, root: MarkedMap, key: str, enums: Mapping[str, Mapping[int, str]]
) -> dict[str, str]:
    section = checker.mapping_under(root, key, "attribute names to enumerations")
    table: dict[str, str] = {}
    for attribute, enum in section.items():
        if not isinstance(attribute, str) or not isinstance(enum, str) or enum not in enums:
            checker.problem(
                section.value_mark(attribute),
                f"`{key}`: `{attribute}` must name one of the `enums` ({', '.join(enums)}), not {enum!r}",
            )
            continue
        table[attribute] = enum
    return table


def _load_si_units(
    checker: _Checker, root: MarkedMap, enums: Mapping[str, Mapping[int, str]]
) -> dict[str, int]:
    section = checker.mapping_under(root, "si_units", "source units to SIUnitKind ordinals")
    known = {source.unit for source in FLEET_SOURCES.values()} | {
        source.unit for source in NODE_SOURCES.values()
    }
    si_kind = enums.get("SIUnitKind", {})
    table: dict[str, int] = {}
    for unit, ordinal in section.items():
        if unit not in known:
            checker.problem(
                section.key_mark(unit),
                f"`si_units`: no source has the unit {unit!r} (units in sources.py: "
                f"{', '.join(sorted(u for u in known if u))})",
            )
        elif isinstance(ordinal, bool) or not isinstance(ordinal, int) or ordinal not in si_kind:
            checker.problem(
                section.value_mark(unit),
                f"`si_units`: {unit!r} must map to an ordinal of the SIUnitKind enumeration, not {ordinal!r}",
            )
        else:
            table[str(unit)] = ordinal
    return table


def _load_report_defaults(checker: _Checker, root: MarkedMap) -> _ReportDefaults:
    section = checker.mapping_under(root, "report_defaults", "report settings", required=False)
    checker.known_keys(section, REPORT_DEFAULT_FIELDS, "`report_defaults`")
    base = _ReportDefaults()
    return _ReportDefaults(
        buf_time_ms=checker.value(section, "buf_time_ms", REPORT_FIELDS["buf_time_ms"], base.buf_time_ms),
        integrity_period_ms=checker.value(
            section, "integrity_period_ms", REPORT_FIELDS["integrity_period_ms"], base.integrity_period_ms
        ),
        triggers=checker.names(section, "triggers", TRIGGERS, base.triggers),
        options=checker.names(section, "options", REPORT_OPTIONS, base.options),
    )


def _load_device(
    checker: _Checker,
    root: MarkedMap,
    role: str,
    *,
    enums: Mapping[str, Mapping[int, str]],
    every_ln: tuple[DataObjectSpec, ...],
    defaults: _ReportDefaults,
) -> DeviceSpec:
    section = checker.mapping_under(root, role, f"the {role} logical device's settings")
    checker.known_keys(section, DEVICE_FIELDS, f"`{role}`")
    device: str | None = None
    if role == "fleet":
        raw_device = section.get("device")
        if not isinstance(raw_device, str) or not DEVICE_NAME.match(raw_device):
            checker.problem(
                section.value_mark("device") if "device" in section else section.mark,
                "`fleet.device` must be the fleet's logical device name: upper-case letters, digits or '_', "
                f"starting with a letter (e.g. FLEET), not {raw_device!r}",
            )
        else:
            device = raw_device
    elif "device" in section:
        checker.problem(
            section.key_mark("device"),
            "`pack.device` cannot be set: each pack's logical device is named after its node id",
        )
    nodes_section = checker.mapping_under(section, "logical_nodes", "logical nodes (name: data objects)")
    logical_nodes: list[LogicalNodeSpec] = []
    for ln_name in nodes_section:
        ln_mark = nodes_section.key_mark(ln_name)
        if not isinstance(ln_name, str) or not LN_NAME.match(ln_name):
            checker.problem(
                ln_mark,
                f"logical node name {ln_name!r} must be LLN0 or a 4-letter class and an instance number "
                "(e.g. ZBAT1); prefixes are not supported",
            )
            continue
        own = _load_objects(checker, nodes_section, ln_name, role, enums, allow_sources=True)
        inherited = tuple(spec for spec in every_ln if all(o.name != spec.name for o in own))
        logical_nodes.append(LogicalNodeSpec(ln_name, inherited + own, ln_mark))
    if not any(ln.name == "LLN0" for ln in logical_nodes):
        checker.problem(
            nodes_section.mark, f"`{role}.logical_nodes` needs LLN0 (it holds the datasets and reports)"
        )
    datasets = _load_datasets(checker, section, role, logical_nodes)
    reports = _load_reports(checker, section, role, datasets, defaults)
    return DeviceSpec(role, device, tuple(logical_nodes), datasets, reports)


def _load_objects(
    checker: _Checker,
    parent: MarkedMap,
    key: str,
    role: str,
    enums: Mapping[str, Mapping[int, str]],
    *,
    allow_sources: bool,
) -> tuple[DataObjectSpec, ...]:
    section = checker.mapping_under(parent, key, "data objects (name: {cdc: ..., source: ...})")
    objects: list[DataObjectSpec] = []
    for name, raw in section.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not DO_NAME.match(name):
            checker.problem(
                section.key_mark(name),
                f"data object name {name!r} must start with an upper-case letter and have at most 12 "
                "letters or digits",
            )
            continue
        if not isinstance(raw, MarkedMap):
            checker.problem(section.value_mark(name), f"`{where}` must be a mapping (cdc, source...)")
            continue
        spec = _load_object(checker, raw, name, where, role=role, enums=enums, allow_sources=allow_sources)
        if spec is not None:
            objects.append(spec)
    return tuple(objects)


def _load_object(
    checker: _Checker,
    raw: MarkedMap,
    name: str,
    where: str,
    *,
    role: str,
    enums: Mapping[str, Mapping[int, str]],
    allow_sources: bool,
) -> DataObjectSpec | None:
    checker.known_keys(raw, OBJECT_FIELDS, f"`{where}`")
    cdc = raw.get("cdc")
    if cdc not in VALUE_FC:
        checker.problem(
            raw.value_mark("cdc") if "cdc" in raw else raw.mark,
            f"`{where}`: `cdc` must be one of {', '.join(VALUE_FC)}, not {cdc!r}",
        )
        return None
    problems_before = len(checker.problems)
    source = _object_source(checker, raw, where, role, allow_sources)
    value = raw.get("value")
    if value is not None and (isinstance(value, str) or not isinstance(value, int | float | bool)):
        checker.problem(raw.value_mark("value"), f"`{where}`: `value` must be a number or true/false")
        value = None
    text = _object_text(checker, raw, where, cdc)
    if cdc in NAME_PLATE_CDCS:
        if "vendor" not in text:
            checker.problem(raw.mark, f"`{where}`: a {cdc} needs `text` with at least `vendor`")
    elif ("source" in raw) == ("value" in raw):
        checker.problem(raw.mark, f"`{where}`: give exactly one of `source` and `value`")
    enum = raw.get("enum")
    if cdc in ENUM_CDCS:
        if enum not in enums:
            checker.problem(
                raw.value_mark("enum") if "enum" in raw else raw.mark,
                f"`{where}`: an {cdc} needs `enum`, one of {', '.join(enums)}, not {enum!r}",
            )
            enum = None
    elif enum is not None:
        checker.problem(raw.key_mark("enum"), f"`{where}`: `enum` is only for ENS and ENC data")
        enum = None
    states = _object_states(checker, raw, where, cdc)
    allowed = enums.get(str(enum), {}) if enum is not None else None
    if allowed:
        published = [value] if value is not None else list(states.values()) if states else []
        for number in published:
            if number not in allowed:
                checker.problem(
                    raw.mark,
                    f"`{where}`: {number!r} is not a value of {enum} ({', '.join(map(str, allowed))})",
                )
    control = raw.get("control")
    if control is not None and CONTROL_TARGETS.get(str(control)) != cdc:
        checker.problem(
            raw.value_mark("control"),
            f"`{where}`: `control` must be one of "
            f"{', '.join(f'{t} ({c})' for t, c in CONTROL_TARGETS.items())}, not {control!r}",
        )
        control = None
    elif control is not None and MAP_TARGETS[Target(control)].per_node != (role == "pack"):
        checker.problem(
            raw.value_mark("control"),
            f"`{where}`: `control: {control}` belongs in the "
            f"{'pack' if MAP_TARGETS[Target(control)].per_node else 'fleet'} device",
        )
        control = None
    if cdc in CONTROL_CDCS and control is None and "control" not in raw:
        checker.problem(raw.mark, f"`{where}`: an {cdc} needs `control` (the site command it changes)")
    minimum, maximum = _object_range(checker, raw, where, cdc)
    deadband = _object_deadband(checker, raw, where, cdc, source)
    description = checker.value(raw, "description", OBJECT_FIELDS["description"])
    if len(checker.problems) > problems_before:
        return None
    return DataObjectSpec(
        name=name,
        cdc=str(cdc),
        source=source,
        value=value,
        states=states,
        enum=None if enum is None else str(enum),
        control=None if control is None else Target(control),
        minimum=minimum,
        maximum=maximum,
        deadband=deadband,
        text=text,
        description=description,
        mark=raw.mark,
    )


def _object_source(
    checker: _Checker, raw: MarkedMap, where: str, role: str, allow_sources: bool
) -> str | None:
    source = raw.get("source")
    if source is None:
        return None
    if not allow_sources:
        checker.problem(
            raw.key_mark("source"), f"`{where}`: data every LN carries take a `value`, not a `source`"
        )
        return None
    table: Mapping[str, object] = FLEET_SOURCES if role == "fleet" else NODE_SOURCES
    if source not in table:
        checker.problem(
            raw.value_mark("source"),
            f"`{where}`: unknown {role} source `{source}`{did_you_mean(str(source), table)}; "
            f"the {role} has: {', '.join(table)}",
        )
        return None
    return str(source)


def _object_text(checker: _Checker, raw: MarkedMap, where: str, cdc: Any) -> dict[str, str]:
    text = raw.get("text")
    if text is None:
        return {}
    allowed = TEXT_ATTRIBUTES.get(str(cdc))
    if allowed is None or not isinstance(text, MarkedMap):
        checker.problem(
            raw.value_mark("text"),
            f"`{where}`: `text` is a mapping of name plate attributes, for LPL and DPL",
        )
        return {}
    result: dict[str, str] = {}
    for attribute, template in text.items():
        if attribute not in allowed:
            checker.problem(
                text.key_mark(attribute),
                f"`{where}`: a {cdc} has no `{attribute}`; it can have {', '.join(allowed)}",
            )
            continue
        if not isinstance(template, str):
            checker.problem(text.value_mark(attribute), f"`{where}.{attribute}` must be a text")
            continue
        try:
            fields = [field_name for _, field_name, _, _ in string.Formatter().parse(template) if field_name]
        except ValueError as error:
            checker.problem(text.value_mark(attribute), f"`{where}.{attribute}`: {error}")
            continue
        unknown = [name for name in fields if name not in PLACEHOLDERS]
        if unknown:
            checker.problem(
                text.value_mark(attribute),
                f"`{where}.{attribute}`: unknown placeholder {{{unknown[0]}}}; use "
                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}",
            )
            continue
        result[str(attribute)] = template
    return result


def _object_states(checker: _Checker, raw: MarkedMap, where: str, cdc: Any) -> dict[bool, int] | None:
    states = raw.get("states")
    if states is None:
        return None
    if cdc not in ("INS", "ENS", "ENC") or "source" not in raw:
        checker.problem(
            raw.key_mark("states"), f"`{where}`: `states` is for INS/ENS/ENC data fed by a source"
        )
        return None
    if (
        not isinstance(states, MarkedMap)
        or set(states) != {False, True}
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in states.values())
    ):
        checker.problem(
            raw.value_mark("states"), f"`{where}`: `states` must be {{false: <integer>, true: <integer>}}"
        )
        return None
    return {bool(key): int(value) for key, value in states.items()}


def _object_deadband(checker: _Checker, raw: MarkedMap, where: str, cdc: Any, source: str | None) -> float:
    if "deadband" not in raw:
        return 0.0
    if cdc != "MV" or source is None:
        checker.problem(
            raw.key_mark("deadband"), f"`{where}`: `deadband` is only for MV data fed by a source"
        )
        return 0.0
    deadband: float = checker.value(raw, "deadband", OBJECT_FIELDS["deadband"], 0.0)
    return deadband


def _object_range(
    checker: _Checker, raw: MarkedMap, where: str, cdc: Any
) -> tuple[float | None, float | None]:
    if cdc != "APC":
        for key in ("min", "max"):
            if key in raw:
                checker.problem(raw.key_mark(key), f"`{where}`: `{key}` is only for APC setpoints")
        return None, None
    bounds: list[float | None] = []
    for key in ("min", "max"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            checker.problem(
                raw.value_mark(key) if key in raw else raw.mark,
                f"`{where}`: an APC needs a finite `{key}` (the accepted range), not {value!r}",
            )
            bounds.append(None)
        else:
            bounds.append(float(value))
    minimum, maximum = bounds
    if minimum is not None and maximum is not None and not minimum < maximum:
        checker.problem(
            raw.value_mark("max"), f"`{where}`: `min` ({minimum:g}) must be below `max` ({maximum:g})"
        )
    return minimum, maximum


def _load_datasets(
    checker: _Checker, section: MarkedMap, role: str, logical_nodes: Sequence[LogicalNodeSpec]
) -> tuple[DataSetSpec, ...]:
    raw_sets = checker.mapping_under(section, "datasets", "datasets (name: [members])", required=False)
    by_name = {ln.name: ln for ln in logical_nodes}
    datasets: list[DataSetSpec] = []
    for name, members in raw_sets.items():
        if not isinstance(name, str) or not BLOCK_NAME.match(name):
            checker.problem(
                raw_sets.key_mark(name), f"dataset name {name!r} must be an identifier (≤ 32 chars)"
            )
            continue
        if not isinstance(members, MarkedList) or not members:
            checker.problem(
                raw_sets.value_mark(name), f"dataset `{name}` must list its members (LN or LN.DO)"
            )
            continue
        resolved: list[DataSetMember] = []
        for index, member in enumerate(members):
            mark = members.item_mark(index)
            ln_name, _, do_name = str(member).partition(".")
            ln = by_name.get(ln_name)
            if ln is None:
                checker.problem(mark, f"dataset `{name}`: no logical node `{ln_name}` in `{role}`")
                continue
            if do_name:
                spec = ln.object(do_name)
                if spec is None or spec.value_fc not in ("MX", "ST"):
                    checker.problem(
                        mark,
                        f"dataset `{name}`: `{member}` is not a measured or status data object of {ln_name}",
                    )
                    continue
                chosen = [spec]
            else:
                chosen = [spec for spec in ln.objects if spec.value_fc in ("MX", "ST")]
            for spec in chosen:
                entry = DataSetMember(ln_name, spec.name, spec.value_fc)
                if entry in resolved:
                    checker.problem(mark, f"dataset `{name}`: `{ln_name}.{spec.name}` is listed twice")
                else:
                    resolved.append(entry)
        datasets.append(DataSetSpec(name, tuple(resolved), raw_sets.key_mark(name)))
    return tuple(datasets)


def _load_reports(
    checker: _Checker,
    section: MarkedMap,
    role: str,
    datasets: Sequence[DataSetSpec],
    defaults: _ReportDefaults,
) -> tuple[ReportSpec, ...]:
    raw_reports = checker.mapping_under(
        section, "reports", "report control blocks (name: settings)", required=False
    )
    names = {dataset.name for dataset in datasets}
    reports: list[ReportSpec] = []
    for name, raw in raw_reports.items():
        where = f"`{role}.reports.{name}`"
        if not isinstance(name, str) or not BLOCK_NAME.match(name):
            checker.problem(
                raw_reports.key_mark(name), f"report name {name!r} must be an identifier (≤ 32 chars)"
            )
            continue
        if not isinstance(raw, MarkedMap):
            checker.problem(raw_reports.value_mark(name), f"{where} must be a mapping (dataset, buffered...)")
            continue
        checker.known_keys(raw, REPORT_FIELDS, where)
        dataset = raw.get("dataset")
        if dataset not in names:
            checker.problem(
                raw.value_mark("dataset") if "dataset" in raw else raw.mark,
                f"{where}: `dataset` must be one of `{role}.datasets` ({', '.join(sorted(names))}), "
                f"not {dataset!r}",
            )
        buffered = checker.value(raw, "buffered", REPORT_FIELDS["buffered"], False, where=where)
        rpt_id = raw.get("rpt_id")
        if rpt_id is not None and (not isinstance(rpt_id, str) or not 0 < len(rpt_id) <= 65):
            checker.problem(raw.value_mark("rpt_id"), f"{where}: `rpt_id` must be a text of 1..65 characters")
        integrity = checker.value(
            raw, "integrity_period_ms", REPORT_FIELDS["integrity_period_ms"], defaults.integrity_period_ms
        )
        triggers = checker.names(raw, "triggers", TRIGGERS, defaults.triggers)
        if "period" in triggers and integrity == 0:
            checker.problem(raw.mark, f"{where}: trigger `period` needs `integrity_period_ms` > 0")
        reports.append(
            ReportSpec(
                name=name,
                dataset=str(dataset),
                buffered=bool(buffered),
                rpt_id=rpt_id if isinstance(rpt_id, str) else None,
                buf_time_ms=checker.value(
                    raw, "buf_time_ms", REPORT_FIELDS["buf_time_ms"], defaults.buf_time_ms
                ),
                integrity_period_ms=integrity,
                triggers=triggers,
                options=checker.names(raw, "options", REPORT_OPTIONS, defaults.options),
                mark=raw_reports.key_mark(name),
            )
        )
    return tuple(reports)
