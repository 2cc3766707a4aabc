"""DNP3 point maps: the shipped default (and its AN2018 indices), and every mistake a map author can
make, each reported with file:line:column and the fix."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.diagnostics import NO_MARK
from gateway.mapping.controls import Target
from gateway.mapping.dnp3 import (
    BlockPoint,
    Dnp3Map,
    MappingError,
    NodeBlock,
    PointSpec,
    PointType,
    find_map,
    load_dnp3_map,
    validate_dnp3_map,
)
from tests.conftest import REPO

DEFAULT_MAP = REPO / "mappings" / "dnp3" / "default.yaml"
LARGE_MAP = REPO / "mappings" / "dnp3" / "large.yaml"
HEADER = 'map_version: "1.0.0"\nmax_nodes: 4\n'


def problems_of(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "map.yaml"
    path.write_text(HEADER + body)
    return [str(problem) for problem in validate_dnp3_map(path)]


def one_problem(tmp_path: Path, body: str) -> str:
    problems = problems_of(tmp_path, body)
    assert len(problems) == 1, problems
    return problems[0]


AI_SOC = '{ index: 47, name: Soc, source: fleet.mean_soc_pct, scale: 0.1, unit: "%", class: 1, deadband: 5 }'


# --- the shipped default --------------------------------------------------------------------------

# AN2018-001 points of the default map, as verified against EPRI's der-dnp3-an2018 definitions:
# (type, index) -> source. Bank 1 starts at AI955, bank 2 at AI982 (27 AIs per bank).
AN2018_POINTS = {
    (PointType.ANALOG_INPUT, 16): "fleet.nameplate_energy_wh",
    (PointType.ANALOG_INPUT, 17): "fleet.effective_energy_wh",
    (PointType.ANALOG_INPUT, 18): "fleet.usable_energy_wh",
    (PointType.ANALOG_INPUT, 27): "fleet.nodes_total",
    (PointType.ANALOG_INPUT, 43): "fleet.available_discharge_w",
    (PointType.ANALOG_INPUT, 44): "fleet.available_charge_w",
    (PointType.ANALOG_INPUT, 47): "fleet.mean_soc_pct",
    (PointType.ANALOG_INPUT, 48): "fleet.usable_soc_pct",
    (PointType.ANALOG_INPUT, 537): "fleet.power_w",
    (PointType.ANALOG_INPUT, 961): "node.soc_pct",
    (PointType.ANALOG_INPUT, 962): "node.soh_pct",
    (PointType.ANALOG_INPUT, 965): "node.current_a",
    (PointType.ANALOG_INPUT, 966): "node.power_w",
    (PointType.ANALOG_INPUT, 967): "node.cell_voltage_min_v",
    (PointType.ANALOG_INPUT, 968): "node.cell_voltage_max_v",
    (PointType.ANALOG_INPUT, 969): "node.temp_min_c",
    (PointType.ANALOG_INPUT, 970): "node.temp_max_c",
    (PointType.ANALOG_INPUT, 973): "node.charge_current_limit_a",
    (PointType.ANALOG_INPUT, 974): "node.discharge_current_limit_a",
    (PointType.ANALOG_INPUT, 982 + 6): "node.soc_pct",
    (PointType.BINARY_INPUT, 4): "fleet.soc_at_max",
    (PointType.BINARY_INPUT, 5): "fleet.soc_too_high",
    (PointType.BINARY_INPUT, 6): "fleet.soc_too_low",
    (PointType.BINARY_INPUT, 7): "fleet.soc_depleted",
    (PointType.BINARY_INPUT, 8): "fleet.temp_too_high",
    (PointType.BINARY_INPUT, 19): "fleet.discharging",
    (PointType.BINARY_INPUT, 20): "fleet.charging",
    (PointType.ANALOG_OUTPUT, 93): "fleet.request_w",
    (PointType.ANALOG_OUTPUT, 100): "fleet.reserve_pct",
    (PointType.ANALOG_OUTPUT, 101): "fleet.ceiling_pct",
    (PointType.BINARY_OUTPUT, 18): "dnp3.charge_discharge_enabled",
}


def test_the_default_map_follows_an2018_and_fits_256_nodes() -> None:
    dnp3_map = load_dnp3_map(DEFAULT_MAP)
    assert dnp3_map.version == "1.0.0" and dnp3_map.max_nodes == 256
    points = dnp3_map.expand([f"pack-{n:03d}" for n in range(1, 257)])
    by_key = {(p.type, p.index): p for p in points}
    assert len(by_key) == len(points)  # no index twice
    for key, source in AN2018_POINTS.items():
        assert by_key[key].spec.source == source, key
    target = by_key[(PointType.ANALOG_OUTPUT, 93)].spec
    assert target.rated_permille and (target.minimum, target.maximum) == (-1000, 1000)
    assert target.command is Target.REQUEST_W
    assert by_key[(PointType.ANALOG_INPUT, 47)].spec.scale == 0.1  # 0-1000 = 0.1 %
    assert by_key[(PointType.ANALOG_INPUT, 44)].spec.scale < 0  # AN2018: charging is negative
    assert by_key[(PointType.ANALOG_INPUT, 973)].spec.scale < 0
    # The private ranges stay clear of AN2018's (AI 0-1008 in EPRI's list, banks from 955).
    private = [p for p in points if p.index >= 1000 and not (955 <= p.index < 955 + 27 * 256)]
    assert all(p.type is not PointType.ANALOG_INPUT or p.index >= 8000 for p in private)
    assert all(p.spec.event_class in (0, 1) for p in points)  # the binding reports events in Class 1
    with pytest.raises(ValueError, match="room for 256"):
        dnp3_map.expand([f"pack-{n}" for n in range(257)])


def test_the_default_map_points_a_bigger_fleet_to_the_large_map() -> None:
    dnp3_map = load_dnp3_map(DEFAULT_MAP)
    with pytest.raises(ValueError, match=r"has 257 nodes") as raised:
        dnp3_map.expand([f"pack-{n}" for n in range(257)])
    message = str(raised.value)
    assert re.search(rf"\(max_nodes at {re.escape(str(DEFAULT_MAP))}:\d+:\d+\)", message), message
    assert "mappings/dnp3/large.yaml (up to 1024 packs; set `northbound.dnp3.map: large`)" in message
    with pytest.raises(ValueError, match=r"the shipped mappings/dnp3/large\.yaml has room for 1024"):
        dnp3_map.expand([f"pack-{n}" for n in range(1025)])


# large.yaml is default.yaml with socgw's private AIs moved above its 1024 banks, and nothing else.
PRIVATE_FLEET_AI = range(8000, 8100)
LARGE_FLEET_AI_START = 28700
LARGE_BLOCK_STARTS = {"node": (8100, 28800)}  # block name -> (default start, large start)


def _unmarked(spec: PointSpec) -> PointSpec:
    return dataclasses.replace(spec, mark=NO_MARK)


def _single_points(dnp3_map: Dnp3Map, *, moved: bool) -> dict[tuple[PointType, int], PointSpec]:
    def index(point_type: PointType, index: int) -> int:
        if moved and point_type is PointType.ANALOG_INPUT and index in PRIVATE_FLEET_AI:
            return LARGE_FLEET_AI_START + index - PRIVATE_FLEET_AI.start
        return index

    return {(p.type, index(p.type, p.index)): _unmarked(p.spec) for p in dnp3_map.points}


def _blocks(dnp3_map: Dnp3Map, *, moved: bool) -> list[NodeBlock]:
    def start(block: NodeBlock) -> int:
        if not moved or block.name not in LARGE_BLOCK_STARTS:
            return block.start
        default_start, large_start = LARGE_BLOCK_STARTS[block.name]
        assert block.start == default_start, block.name
        return large_start

    return [
        dataclasses.replace(
            block,
            start=start(block),
            mark=NO_MARK,
            points=tuple(BlockPoint(p.offset, _unmarked(p.spec)) for p in block.points),
        )
        for block in dnp3_map.blocks
    ]


def test_the_large_map_is_the_default_with_the_private_ais_moved() -> None:
    default, large = load_dnp3_map(DEFAULT_MAP), load_dnp3_map(LARGE_MAP)
    assert (default.max_nodes, large.max_nodes) == (256, 1024)
    assert large.version == "1.0.0" and large.description != default.description
    assert _single_points(default, moved=True) == _single_points(large, moved=False)
    assert _blocks(default, moved=True) == _blocks(large, moved=False)


def test_the_large_map_fits_1024_nodes_above_its_banks_and_refuses_1025(tmp_path: Path) -> None:
    large = load_dnp3_map(LARGE_MAP)
    assert find_map("large", tmp_path) == LARGE_MAP
    points = large.expand([f"pack-{n:04d}" for n in range(1, 1025)])
    by_key = {(p.type, p.index): p for p in points}
    assert len(by_key) == len(points)  # no index twice
    for key, source in AN2018_POINTS.items():
        assert by_key[key].spec.source == source, key
    for point in points:  # the private AIs sit above the 1024th bank
        if point.type is PointType.ANALOG_INPUT and point.index >= 955:
            assert (point.index < 955 + 27 * 1024) == point.name.startswith("bank"), point.name
    assert max(p.index for p in points) == 28800 + 4 * 1023 + 2
    with pytest.raises(
        ValueError, match=r"has 1025 nodes but DNP3 map .*large\.yaml has room for 1024"
    ) as raised:
        large.expand([f"pack-{n}" for n in range(1025)])
    assert re.search(rf"\(max_nodes at {re.escape(str(LARGE_MAP))}:\d+:\d+\)", str(raised.value))
    assert "use a map of your own with more room" in str(raised.value)


def test_maps_are_found_by_name_or_path(tmp_path: Path) -> None:
    assert find_map("default", tmp_path) == DEFAULT_MAP
    own = tmp_path / "own.yaml"
    own.write_text(HEADER)
    assert find_map("own.yaml", tmp_path) == own
    with pytest.raises(FileNotFoundError, match=r"known: .*default"):
        find_map("nonexistent", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        find_map("missing.yaml", tmp_path)


# --- mistakes -------------------------------------------------------------------------------------


def test_an_unknown_source_is_named_with_a_suggestion(tmp_path: Path) -> None:
    entry = AI_SOC.replace("fleet.mean_soc_pct", "fleet.mean_soc")
    problem = one_problem(tmp_path, f"analog_inputs:\n  - {entry}\n")
    assert problem.startswith(f"{tmp_path / 'map.yaml'}:4:")
    assert "unknown source `fleet.mean_soc`" in problem and "fleet.mean_soc_pct" in problem


def test_a_duplicate_index_names_both_lines(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, f"analog_inputs:\n  - {AI_SOC}\n  - {AI_SOC.replace('Soc', 'Soc2')}\n")
    assert ":5:" in problem and "AI47" in problem and "line 4" in problem


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (AI_SOC.replace("scale: 0.1", "scale: 0"), "`scale` must be a non-zero number"),
        (AI_SOC.replace("scale: 0.1", "scale: ten"), "`scale` must be a non-zero number"),
        (AI_SOC.replace("class: 1", "class: 5"), "`class` must be a whole number 0..3"),
        (AI_SOC.replace("deadband: 5", "deadband: -1"), "`deadband` must be a whole number"),
        (AI_SOC.replace('unit: "%"', "unit: W"), "does not match source `fleet.mean_soc_pct`"),
        (AI_SOC.replace("scale: 0.1", "scale: rated_permille"), "`rated_permille` scales powers"),
        (AI_SOC.replace("index: 47", "index: 70000"), "`index` must be a whole number 0..65535"),
        (AI_SOC.replace(", scale: 0.1", ""), "needs `scale`"),
        (AI_SOC.replace("source: fleet.mean_soc_pct", "source: node.soc_pct"), "per-node quantity"),
        (AI_SOC.replace("deadband: 5", "deadband: 5, command: request_w"), "only output points"),
        (AI_SOC.replace("deadband: 5", "deadband: 5, dedband: 3"), "did you mean `deadband`"),
    ],
)
def test_a_bad_analog_input_entry_is_explained(tmp_path: Path, entry: str, expected: str) -> None:
    problem = one_problem(tmp_path, f"analog_inputs:\n  - {entry}\n")
    assert ":4:" in problem and expected in problem


@pytest.mark.parametrize(
    ("section", "entry", "expected"),
    [
        ("binary_inputs", "{ index: 4, name: Max, source: fleet.soc_at_max, class: 1, scale: 1 }",
         "analog points only"),
        ("binary_outputs", "{ index: 18, name: B, source: fleet.balancing_enabled, class: 1, "
         "command: request_w }", "belongs on analog_outputs"),
        ("binary_outputs", "{ index: 18, name: M, source: fleet.balancing_enabled, class: 1, "
         "command: node_maintenance }", "belongs on a node block"),
        ("analog_outputs", "{ index: 93, name: T, source: fleet.request_w, scale: 1, unit: W, class: 1, "
         "deadband: 0, command: request_w, min: 10, max: -10 }", "`min` 10 is above `max` -10"),
        ("analog_outputs", "{ index: 93, name: T, source: fleet.request_w, scale: 1, unit: W, class: 1, "
         "deadband: 0, command: fly }", "unknown command 'fly'"),
    ],
)  # fmt: skip
def test_a_bad_output_entry_is_explained(tmp_path: Path, section: str, entry: str, expected: str) -> None:
    problem = one_problem(tmp_path, f"{section}:\n  - {entry}\n")
    assert ":4:" in problem and expected in problem


def block(start: int, stride: int, points: str, name: str = "bank", kind: str = "analog_input") -> str:
    return (
        f"  - name: {name}\n    type: {kind}\n    start: {start}\n    stride: {stride}\n    points:\n{points}"
    )


SOC_POINT = (
    '      - { offset: 6, name: Soc, source: node.soc_pct, scale: 0.1, unit: "%", class: 1, deadband: 5 }\n'
)


def test_node_block_mistakes_are_explained(tmp_path: Path) -> None:
    overlapping_point = problems_of(
        tmp_path,
        f"analog_inputs:\n  - {AI_SOC.replace('47', '100')}\nnode_blocks:\n{block(90, 27, SOC_POINT)}",
    )
    assert any("overlaps AI100" in p and "AI90..197" in p for p in overlapping_point), overlapping_point
    overlapping_block = problems_of(
        tmp_path,
        f"node_blocks:\n{block(955, 27, SOC_POINT)}{block(1000, 2, SOC_POINT.replace('6', '1'), 'x')}",
    )
    assert any("block 'x'" in p and "overlaps block 'bank'" in p for p in overlapping_block), (
        overlapping_block
    )
    assert "below the block's stride 4" in one_problem(tmp_path, f"node_blocks:\n{block(955, 4, SOC_POINT)}")
    twice = SOC_POINT + SOC_POINT.replace("name: Soc", "name: Soc2")
    assert "offset 6 is used twice" in one_problem(tmp_path, f"node_blocks:\n{block(955, 27, twice)}")
    fleet_source = SOC_POINT.replace("node.soc_pct", "fleet.mean_soc_pct")
    assert "node blocks publish node.*" in one_problem(
        tmp_path, f"node_blocks:\n{block(955, 27, fleet_source)}"
    )
    path = tmp_path / "big.yaml"
    path.write_text(f'map_version: "1.0.0"\nmax_nodes: 3000\nnode_blocks:\n{block(955, 27, SOC_POINT)}')
    assert "past 65535: lower max_nodes" in str(validate_dnp3_map(path)[0])
    assert "needs `type`" in one_problem(tmp_path, f"node_blocks:\n{block(955, 27, SOC_POINT, kind='gauge')}")


def test_every_problem_is_reported_at_once_and_loading_raises(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(
        "map_version: 1.0\nmax_nodes: 4\nanalog_inputs:\n"
        f"  - {AI_SOC.replace('class: 1', 'class: 9')}\n  - {AI_SOC.replace('fleet.mean_soc_pct', 'nope')}\n"
        "colour: blue\n"
    )
    with pytest.raises(MappingError) as raised:
        load_dnp3_map(path)
    text = str(raised.value)
    assert [line.split(":")[1] for line in text.splitlines()] == ["1", "4", "5", "6"], text
    assert "semantic version" in text and "unknown source `nope`" in text and "unknown key `colour`" in text


def test_a_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "analog_inputs:\n  - { index: 47, name: [\n")
    assert "YAML syntax error" in problem and problem.startswith(str(tmp_path / "map.yaml"))
