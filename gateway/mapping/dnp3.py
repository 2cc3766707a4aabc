"""DNP3 point maps (`mappings/dnp3/*.yaml`): which fleet quantity each DNP3 point publishes, and how.

A map is written by people (the shipped default follows the DER point list of DNP3 AN2018-001), so it
is checked as a whole and every problem is reported with file:line:column and the fix. The format is
described in the shipped `mappings/dnp3/default.yaml` and in docs/dnp3.md; in short:

- four sections of single points, `analog_inputs`, `binary_inputs`, `analog_outputs`,
  `binary_outputs`, each entry with its DNP3 `index`, a `name`, the `source` quantity it publishes
  (a name from `gateway/mapping/sources.py`, or one of the adapter's own `dnp3.*` quantities), and
  for analogs `scale` (engineering value = count × scale), `unit`, `class` and `deadband` (counts);
  outputs may have a `command` (what a master's write does) and `min`/`max` (counts);
- `node_blocks`: points repeated for every node of the fleet, node n (1-based, in the site config's
  order) at `start + (n − 1) × stride + offset`; `max_nodes` reserves room for that many nodes, so no
  index moves when packs are added.

`Dnp3Map.expand(node_ids)` turns a map and a fleet into the concrete point list the outstation serves
and `socgw points --dnp3` prints.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.diagnostics import (
    MAPPING_PATH,
    NO_MARK,
    SEMVER,
    Checker,
    Mark,
    MarkedList,
    MarkedMap,
    Problem,
    ProblemsError,
    YamlError,
    did_you_mean,
    find_named_file,
    is_number,
    load_yaml_file,
)
from gateway.diagnostics.fields import Field, anything, choice, list_of, section, table, text, version, whole
from gateway.mapping.controls import MAP_TARGETS, Target, ValueKind
from gateway.mapping.sources import FLEET_SOURCES, NODE_SOURCES

MAX_INDEX = 65535  # DNP3 point indices are 16-bit
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MAP_SUBDIR = "dnp3"  # maps live in <mappings dir>/dnp3/<name>.yaml
DEFAULT_MAP = "default"
LARGE_MAP = "large"  # shipped beside the default for fleets the default has no room for


class PointType(enum.Enum):
    """The DNP3 object types a map can populate, with their map section and short name."""

    ANALOG_INPUT = ("analog_inputs", "AI")
    BINARY_INPUT = ("binary_inputs", "BI")
    ANALOG_OUTPUT = ("analog_outputs", "AO")
    BINARY_OUTPUT = ("binary_outputs", "BO")

    def __init__(self, section: str, short: str) -> None:
        self.section = section
        self.short = short

    @property
    def analog(self) -> bool:
        return self in (PointType.ANALOG_INPUT, PointType.ANALOG_OUTPUT)

    @property
    def output(self) -> bool:
        return self in (PointType.ANALOG_OUTPUT, PointType.BINARY_OUTPUT)

    @property
    def block_name(self) -> str:
        """The `type:` of a node block: analog_input, binary_input, ..."""
        return self.section[:-1]


POINT_TYPES_BY_BLOCK_NAME: Mapping[str, PointType] = MappingProxyType({t.block_name: t for t in PointType})


# A master's write to an output point changes a site control target (`gateway/mapping/controls.py`):
# analog targets on analog outputs, on/off targets on binary outputs, per-pack targets in node blocks.
COMMAND_TYPES: Mapping[Target, PointType] = MappingProxyType(
    {
        target: PointType.ANALOG_OUTPUT if spec.kind is ValueKind.ANALOG else PointType.BINARY_OUTPUT
        for target, spec in MAP_TARGETS.items()
    }
)
NODE_COMMANDS = frozenset(target for target, spec in MAP_TARGETS.items() if spec.per_node)


@dataclass(frozen=True)
class AdapterSource:
    unit: str
    description: str


# Quantities only the DNP3 adapter knows (they exist because AN2018 expresses the power target in
# 0.1 % of a rated power and gates it with a mode switch); the adapter publishes them.
DNP3_SOURCES: Mapping[str, AdapterSource] = MappingProxyType(
    {
        "dnp3.rated_power_w": AdapterSource(
            "W", "fleet rated power behind the 0.1 % scaling of the power target (config or learned)"
        ),
        "dnp3.charge_discharge_enabled": AdapterSource(
            "", "charge/discharge mode enabled: power targets written by a master take effect"
        ),
    }
)

# The scale word for analogs counted in 0.1 % of the fleet's rated power (AN2018's AO93 convention).
RATED_PERMILLE = "rated_permille"

# --- The format: keys and what they mean ------------------------------------------------------------


def _point_fields(sources: Iterable[str]) -> Mapping[str, Field]:
    return table(
        {
            "index": whole("DNP3 point index (0-65535).", 0, MAX_INDEX),
            "name": text("Short point name for the device profile."),
            "description": text("What the point means (default: the source's description)."),
            "source": choice(
                "Quantity published: a fleet.*/dnp3.* name (node.* inside node blocks).", sources
            ),
            "scale": anything(
                "Engineering value = count × scale (analogs); or rated_permille (0.1 % of rated power).",
                anyOf=[{"type": "number", "not": {"const": 0}}, {"const": RATED_PERMILLE}],
            ),
            "unit": anything("Engineering unit of the source (analogs), e.g. W, %, °C.", type="string"),
            "class": whole("Event class 0-3 (0: static only, no events).", 0, 3),
            "deadband": whole(
                "Analogs: an event when the count moved by more than this since the last event.", 0, INT32_MAX
            ),
            "command": choice(
                "Outputs: what a master's write does (request_w, balancing_enabled, ...).",
                [target.value for target in COMMAND_TYPES],
            ),
            "min": whole("Analog outputs: lowest count a master may write.", INT32_MIN, INT32_MAX),
            "max": whole("Analog outputs: highest count a master may write.", INT32_MIN, INT32_MAX),
        }
    )


POINT_FIELDS = _point_fields([*FLEET_SOURCES, *DNP3_SOURCES])
BLOCK_POINT_FIELDS = table(
    {
        "offset": whole("Position in the node's block (0 <= offset < stride).", 0, MAX_INDEX),
        **{key: field for key, field in _point_fields(NODE_SOURCES).items() if key != "index"},
    }
)
_POINT_REQUIRED = ("name", "source")
_TEXT = text("")
BLOCK_FIELDS = table(
    {
        "name": text("Block name; point names become <name><n>.<point name> (n = node number from 1)."),
        "description": text("What the block is."),
        "type": choice(
            "analog_input, binary_input, analog_output or binary_output.", POINT_TYPES_BY_BLOCK_NAME
        ),
        "start": whole("Index of node 1's block.", 0, MAX_INDEX),
        "stride": whole("Indices per node.", 1, MAX_INDEX),
        "points": list_of(
            "The points of one node's block.",
            section("A point of the block.", BLOCK_POINT_FIELDS, required=("offset", *_POINT_REQUIRED)),
        ),
    }
)
TOP_LEVEL_FIELDS = table(
    {
        "map_version": version('Version of this map: MAJOR.MINOR.PATCH in quotes, e.g. "1.0.0".'),
        "description": text("What the map is for and which point list it follows."),
        "max_nodes": whole(
            "Nodes the node blocks reserve room for (the site may not have more).", 0, MAX_INDEX
        ),
        **{
            t.section: list_of(
                f"List of single {t.block_name.replace('_', ' ')} points.",
                section("A point.", POINT_FIELDS, required=("index", *_POINT_REQUIRED)),
            )
            for t in PointType
        },
        "node_blocks": list_of(
            "Points repeated for every node (pack) of the fleet.",
            section("A node block.", BLOCK_FIELDS, required=("name", "type", "start", "stride", "points")),
        ),
    }
)


# --- The model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointSpec:
    """How one map entry publishes its source (a single point, or one point of a node block)."""

    name: str
    description: str
    source: str
    scale: float  # engineering value = count × scale; unused when rated_permille
    rated_permille: bool  # counts are 0.1 % of the fleet's rated power
    unit: str
    event_class: int  # 0: static only
    deadband: int  # counts (analogs); 0 for binaries
    command: Target | None = None
    minimum: int | None = None  # counts a master may write (analog outputs)
    maximum: int | None = None
    mark: Mark = NO_MARK

    def scale_text(self) -> str:
        if self.rated_permille:
            return "0.1 % of rated power"
        return f"{self.scale:g}"


@dataclass(frozen=True)
class MapPoint:
    type: PointType
    index: int
    spec: PointSpec


@dataclass(frozen=True)
class BlockPoint:
    offset: int
    spec: PointSpec


@dataclass(frozen=True)
class NodeBlock:
    name: str
    description: str
    type: PointType
    start: int
    stride: int
    points: tuple[BlockPoint, ...]
    mark: Mark

    def index(self, node_number: int, offset: int) -> int:
        """Index of `offset` in the block of node `node_number` (1-based)."""
        return self.start + (node_number - 1) * self.stride + offset

    def end(self, nodes: int) -> int:
        """One past the last index reserved for `nodes` nodes."""
        return self.start + nodes * self.stride


@dataclass(frozen=True)
class ResolvedPoint:
    """One concrete point of the outstation: a map entry at its index, for the fleet or for one node."""

    type: PointType
    index: int
    name: str
    description: str
    spec: PointSpec
    node_id: str | None = None


@dataclass(frozen=True)
class Dnp3Map:
    version: str
    description: str
    max_nodes: int
    points: tuple[MapPoint, ...]
    blocks: tuple[NodeBlock, ...]
    path: str
    max_nodes_mark: Mark = NO_MARK

    def expand(self, node_ids: Sequence[str]) -> list[ResolvedPoint]:
        """Every point for a fleet of `node_ids` (node n = node_ids[n - 1]), by type then index.

        Raises ValueError (`room_problem`'s text) when the fleet has more nodes than the map has room for."""
        problem = self.room_problem(len(node_ids))
        if problem is not None:
            raise ValueError(problem)
        resolved = [
            ResolvedPoint(p.type, p.index, p.spec.name, p.spec.description, p.spec) for p in self.points
        ]
        for block in self.blocks:
            for number, node_id in enumerate(node_ids, start=1):
                for point in block.points:
                    resolved.append(
                        ResolvedPoint(
                            block.type,
                            block.index(number, point.offset),
                            f"{block.name}{number}.{point.spec.name}",
                            f"{node_id}: {point.spec.description}",
                            point.spec,
                            node_id,
                        )
                    )
        order = {point_type: position for position, point_type in enumerate(PointType)}
        resolved.sort(key=lambda point: (order[point.type], point.index))
        return resolved

    def room_problem(self, nodes: int) -> str | None:
        """Why a fleet of `nodes` nodes does not fit this map, and what to do; None when it fits."""
        if nodes <= self.max_nodes:
            return None
        return (
            f"the site has {nodes} nodes but DNP3 map {self.path} has room for {self.max_nodes} "
            f"(max_nodes at {self.max_nodes_mark}): {self._more_room(nodes)}"
        )

    def _more_room(self, nodes: int) -> str:
        own = "a map of your own with more room"
        # Only the shipped default gets the hint: a site's own map was made on purpose.
        if Path(self.path).name != f"{DEFAULT_MAP}.yaml":
            return f"use {own}"
        try:
            large = load_dnp3_map(find_map(LARGE_MAP, Path(self.path).parent))
        except (OSError, MappingError):
            return f"use {own}"
        shipped = f"mappings/{MAP_SUBDIR}/{LARGE_MAP}.yaml"
        if nodes > large.max_nodes:
            return f"use {own} (the shipped {shipped} has room for {large.max_nodes})"
        return (
            f"use the map shipped as {shipped} (up to {large.max_nodes} packs; set "
            f"`northbound.dnp3.map: {LARGE_MAP}`) or {own}"
        )


class MappingError(ProblemsError):
    """A point map could not be loaded; `problems` lists every problem found."""


# --- Finding maps ------------------------------------------------------------------------------------


def find_map(reference: str, relative_to: Path, dirs: Sequence[Path] | None = None) -> Path:
    """The map file a config names: a path (anything with a '/' or ending in .yaml, relative to the
    config's directory) or a name looked up as dnp3/<name>.yaml in the mapping directories.
    Raises FileNotFoundError saying where it looked."""
    searched = list(dirs) if dirs is not None else MAPPING_PATH.dirs()
    return find_named_file(reference, relative_to, MAP_SUBDIR, "DNP3 map", searched)


# --- Loading and checking ----------------------------------------------------------------------------


def load_dnp3_map(path: str | Path) -> Dnp3Map:
    """Load and check a map; raise `MappingError` listing every problem with file:line:column."""
    file = str(path)
    try:
        document = load_yaml_file(path)
    except YamlError as error:
        raise MappingError([Problem(error.mark, error.problem)]) from None
    checker = _MapChecker(file)
    result = checker.document(document)
    if checker.problems or result is None:
        problems = sorted(checker.problems, key=lambda problem: (problem.mark.line, problem.mark.column))
        raise MappingError(problems or [Problem(Mark(file, 1, 1), "the map is empty")])
    return result


def validate_dnp3_map(path: str | Path) -> list[Problem]:
    try:
        load_dnp3_map(path)
    except MappingError as error:
        return error.problems
    return []


@dataclass(frozen=True)
class _Placed:
    """An index range [first, last] taken in one point type, and who took it (for overlap messages)."""

    first: int
    last: int
    what: str
    mark: Mark


class _MapChecker(Checker):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def integer(self, mapping: MarkedMap, key: str, field: Field, what: str) -> int | None:
        value: int | None = self.value(mapping, key, field, where=what)
        return value

    def text(self, mapping: MarkedMap, key: str, what: str, *, required: bool) -> str | None:
        value: str | None = self.value(mapping, key, _TEXT, where=what if required else "")
        return None if value is None else value.strip()

    # The document ----------------------------------------------------------------------------------

    def document(self, document: Any) -> Dnp3Map | None:
        if not isinstance(document, MarkedMap):
            self.problem(Mark(self.file, 1, 1), "a DNP3 map must be a mapping (map_version, max_nodes, ...)")
            return None
        self.known_keys(document, TOP_LEVEL_FIELDS, "the map")
        version = self.version(document)
        description = self.text(document, "description", "the map", required=False) or ""
        max_nodes = self.integer(document, "max_nodes", TOP_LEVEL_FIELDS["max_nodes"], "the map")
        points: list[MapPoint] = []
        for point_type in PointType:
            points.extend(self.single_points(document, point_type))
        blocks = self.blocks(document)
        if max_nodes is not None:
            self.check_layout(points, blocks, max_nodes, document.value_mark("max_nodes"))
        if version is None or max_nodes is None:
            return None
        return Dnp3Map(
            version=version,
            description=" ".join(description.split()),
            max_nodes=max_nodes,
            points=tuple(points),
            blocks=tuple(blocks),
            path=self.file,
            max_nodes_mark=document.value_mark("max_nodes"),
        )

    def version(self, document: MarkedMap) -> str | None:
        if "map_version" not in document:
            self.problem(document.mark, 'the map has no `map_version`: add e.g. map_version: "1.0.0"')
            return None
        value = document["map_version"]
        if not isinstance(value, str) or SEMVER.match(value) is None:
            self.problem(
                document.value_mark("map_version"),
                f"map_version {value!r} is not a semantic version: write MAJOR.MINOR.PATCH in quotes, "
                'e.g. map_version: "1.2.0"',
            )
            return None
        return value

    def entries(self, parent: MarkedMap, key: str) -> list[tuple[MarkedMap, Mark]]:
        """The mappings listed under `key` (absent: none), reporting anything else."""
        if key not in parent or parent[key] is None:
            return []
        items = parent[key]
        if not isinstance(items, MarkedList):
            self.problem(parent.value_mark(key), f"`{key}` must be a list of `- {{...}}` entries")
            return []
        found = []
        for position, item in enumerate(items):
            if isinstance(item, MarkedMap):
                found.append((item, items.item_mark(position)))
            else:
                self.problem(
                    items.item_mark(position), f"each entry of `{key}` must be a mapping, not {item!r}"
                )
        return found

    def single_points(self, document: MarkedMap, point_type: PointType) -> list[MapPoint]:
        points = []
        for entry, _ in self.entries(document, point_type.section):
            self.known_keys(entry, POINT_FIELDS, f"an entry of {point_type.section}")
            index = self.integer(entry, "index", POINT_FIELDS["index"], f"an entry of {point_type.section}")
            spec = self.spec(entry, point_type, in_block=False)
            if index is not None and spec is not None:
                points.append(MapPoint(point_type, index, spec))
        return points

    # One entry -------------------------------------------------------------------------------------

    def spec(self, entry: MarkedMap, point_type: PointType, *, in_block: bool) -> PointSpec | None:
        where = f"{point_type.short} entry"
        name = self.text(entry, "name", where, required=True)
        source_name = self.text(entry, "source", where, required=True)
        source_unit, source_description = self.source(entry, source_name, in_block=in_block)
        description = self.text(entry, "description", where, required=False) or source_description
        event_class = self.integer(entry, "class", POINT_FIELDS["class"], where)
        command = self.command(entry, point_type, in_block=in_block)
        scale, rated_permille, unit, deadband = 1.0, False, "", 0
        if point_type.analog:
            scale, rated_permille = self.scale(entry, source_unit)
            unit = self.unit(entry, source_name, source_unit)
            deadband = self.integer(entry, "deadband", POINT_FIELDS["deadband"], where) or 0
        else:
            for key in ("scale", "unit", "deadband"):
                if key in entry:
                    self.problem(entry.key_mark(key), f"`{key}` applies to analog points only: remove it")
        minimum, maximum = self.bounds(entry, point_type)
        if name is None or source_name is None or source_unit is None or event_class is None:
            return None
        return PointSpec(
            name=name,
            description=" ".join(description.split()),
            source=source_name,
            scale=scale,
            rated_permille=rated_permille,
            unit=unit,
            event_class=event_class,
            deadband=deadband,
            command=command,
            minimum=minimum,
            maximum=maximum,
            mark=entry.mark,
        )

    def source(self, entry: MarkedMap, name: str | None, *, in_block: bool) -> tuple[str | None, str]:
        """The unit and description of the named source, or (None, "") after reporting the problem."""
        if name is None:
            return None, ""
        mark = entry.value_mark("source")
        if name in NODE_SOURCES:
            if not in_block:
                self.problem(mark, f"`{name}` is a per-node quantity: put it in a `node_blocks` entry")
                return None, ""
            return NODE_SOURCES[name].unit, NODE_SOURCES[name].description
        single: dict[str, tuple[str, str]] = {n: (s.unit, s.description) for n, s in FLEET_SOURCES.items()}
        single.update({n: (s.unit, s.description) for n, s in DNP3_SOURCES.items()})
        if name in single:
            if in_block:
                self.problem(mark, f"`{name}` is not per node: node blocks publish node.* quantities")
                return None, ""
            return single[name]
        known = NODE_SOURCES if in_block else single
        self.problem(
            mark,
            f"unknown source `{name}`{did_you_mean(name, known)}; "
            f"{'node blocks publish node.*' if in_block else 'single points publish fleet.* or dnp3.*'} "
            "quantities (see gateway/mapping/sources.py and docs/dnp3.md)",
        )
        return None, ""

    def scale(self, entry: MarkedMap, source_unit: str | None) -> tuple[float, bool]:
        if "scale" not in entry:
            self.problem(entry.mark, "an analog point needs `scale` (engineering value = count × scale)")
            return 1.0, False
        value = entry["scale"]
        mark = entry.value_mark("scale")
        if value == RATED_PERMILLE:
            if source_unit not in (None, "W"):
                self.problem(
                    mark, f"`{RATED_PERMILLE}` scales powers: the source is in {source_unit!r}, not W"
                )
            return 1.0, True
        if not is_number(value) or not math.isfinite(value) or value == 0:
            self.problem(
                mark,
                f"`scale` must be a non-zero number (e.g. 0.1; negative flips the sign) or "
                f"`{RATED_PERMILLE}`, not {value!r}",
            )
            return 1.0, False
        return float(value), False

    def unit(self, entry: MarkedMap, source_name: str | None, source_unit: str | None) -> str:
        value = entry.get("unit")
        if "unit" not in entry or not isinstance(value, str):
            self.problem(
                entry.value_mark("unit") if "unit" in entry else entry.mark,
                "an analog point needs `unit`"
                + (f" (the source is in {source_unit!r})" if source_unit is not None else ""),
            )
            return source_unit or ""
        if source_unit is not None and value != source_unit:
            self.problem(
                entry.value_mark("unit"),
                f"`unit: {value}` does not match source `{source_name}`, which is in {source_unit!r}: "
                "write the source's unit and express the resolution with `scale`",
            )
        return value

    def command(self, entry: MarkedMap, point_type: PointType, *, in_block: bool) -> Target | None:
        if "command" not in entry:
            return None
        value = entry["command"]
        mark = entry.value_mark("command")
        if not point_type.output:
            self.problem(mark, "only output points (analog_outputs, binary_outputs) take a `command`")
            return None
        command = next((target for target in MAP_TARGETS if target.value == value), None)
        if command is None:
            self.problem(
                mark,
                f"unknown command {value!r}{did_you_mean(str(value), list(MAP_TARGETS))}; "
                f"known: {', '.join(MAP_TARGETS)}",
            )
            return None
        if COMMAND_TYPES[command] is not point_type:
            self.problem(mark, f"command `{command}` belongs on {COMMAND_TYPES[command].section}")
            return None
        if (command in NODE_COMMANDS) != in_block:
            where = "a node block" if command in NODE_COMMANDS else "a single point (not a node block)"
            self.problem(mark, f"command `{command}` belongs on {where}")
            return None
        return command

    def bounds(self, entry: MarkedMap, point_type: PointType) -> tuple[int | None, int | None]:
        values: dict[str, int | None] = {"min": None, "max": None}
        for key in values:
            if key not in entry:
                continue
            if point_type is not PointType.ANALOG_OUTPUT:
                self.problem(entry.key_mark(key), f"`{key}` applies to analog outputs only: remove it")
                continue
            values[key] = self.integer(entry, key, POINT_FIELDS[key], "an AO entry")
        low, high = values["min"], values["max"]
        if low is not None and high is not None and low > high:
            self.problem(entry.value_mark("min"), f"`min` {low} is above `max` {high}")
        return low, high

    # Node blocks -----------------------------------------------------------------------------------

    def blocks(self, document: MarkedMap) -> list[NodeBlock]:
        blocks = []
        names: dict[str, Mark] = {}
        for entry, mark in self.entries(document, "node_blocks"):
            self.known_keys(entry, BLOCK_FIELDS, "a node block")
            name = self.text(entry, "name", "a node block", required=True)
            if name is not None:
                if name in names:
                    self.problem(
                        entry.value_mark("name"),
                        f"block name {name!r} is used twice (line {names[name].line})",
                    )
                names[name] = entry.value_mark("name")
            type_name = entry.get("type")
            point_type = POINT_TYPES_BY_BLOCK_NAME.get(type_name) if isinstance(type_name, str) else None
            if point_type is None:
                self.problem(
                    entry.value_mark("type") if "type" in entry else entry.mark,
                    f"a node block needs `type`: one of {', '.join(POINT_TYPES_BY_BLOCK_NAME)}",
                )
            start = self.integer(entry, "start", BLOCK_FIELDS["start"], "a node block")
            stride = self.integer(entry, "stride", BLOCK_FIELDS["stride"], "a node block")
            points = self.block_points(entry, point_type, stride) if point_type is not None else []
            if name is None or point_type is None or start is None or stride is None:
                continue
            blocks.append(
                NodeBlock(
                    name=name,
                    description=" ".join(
                        (self.text(entry, "description", "a node block", required=False) or "").split()
                    ),
                    type=point_type,
                    start=start,
                    stride=stride,
                    points=tuple(points),
                    mark=mark,
                )
            )
        return blocks

    def block_points(self, block: MarkedMap, point_type: PointType, stride: int | None) -> list[BlockPoint]:
        entries = self.entries(block, "points")
        if not entries:
            self.problem(block.mark, "a node block needs `points:` with at least one entry")
        points = []
        offsets: dict[int, Mark] = {}
        for entry, _ in entries:
            self.known_keys(entry, BLOCK_POINT_FIELDS, "a node block point")
            if "index" in entry:
                self.problem(
                    entry.key_mark("index"), "points of a node block have an `offset`, not an `index`"
                )
            offset = self.integer(entry, "offset", BLOCK_POINT_FIELDS["offset"], "a node block point")
            spec = self.spec(entry, point_type, in_block=True)
            if offset is None:
                continue
            if stride is not None and offset >= stride:
                self.problem(
                    entry.value_mark("offset"), f"offset {offset} must be below the block's stride {stride}"
                )
                continue
            if offset in offsets:
                self.problem(
                    entry.value_mark("offset"),
                    f"offset {offset} is used twice in this block (line {offsets[offset].line})",
                )
                continue
            offsets[offset] = entry.value_mark("offset")
            if spec is not None:
                points.append(BlockPoint(offset, spec))
        return points

    # The layout as a whole ---------------------------------------------------------------------------

    def check_layout(
        self, points: list[MapPoint], blocks: list[NodeBlock], max_nodes: int, max_mark: Mark
    ) -> None:
        """No two points share an index, no block overlaps a point or another block of its type, and
        every block fits below index 65536 with room for `max_nodes` nodes; names are unique."""
        placed: dict[PointType, list[_Placed]] = {t: [] for t in PointType}
        names: dict[tuple[PointType, str], int] = {}
        for point in points:
            mark = point.spec.mark
            taken = _Placed(
                point.index, point.index, f"{point.type.short}{point.index} ({point.spec.name})", mark
            )
            self.place(placed[point.type], taken)
            key = (point.type, point.spec.name)
            if key in names:
                self.problem(
                    mark,
                    f"name {point.spec.name!r} is used twice in {point.type.section} (line {names[key]})",
                )
            names[key] = mark.line
        for block in blocks:
            mark = block.mark
            last = block.end(max_nodes) - 1
            if last > MAX_INDEX:
                self.problem(
                    mark,
                    f"block {block.name!r} needs indices {block.start}..{last} for max_nodes {max_nodes}, "
                    f"past {MAX_INDEX}: lower max_nodes (line {max_mark.line}) or the stride",
                )
                continue
            taken = _Placed(
                block.start,
                last,
                f"block {block.name!r} ({block.type.short}{block.start}..{last} for {max_nodes} nodes)",
                mark,
            )
            self.place(placed[block.type], taken)

    def place(self, taken: list[_Placed], new: _Placed) -> None:
        for other in taken:
            if new.first <= other.last and other.first <= new.last:
                self.problem(
                    new.mark,
                    f"{new.what} overlaps {other.what} written at line {other.mark.line}: move one of them",
                )
                return
        taken.append(new)
