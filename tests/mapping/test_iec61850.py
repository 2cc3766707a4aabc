"""The IEC 61850 map: the shipped one has the names SCADA configurations rely on, and a broken map is
refused with every problem at its file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.mapping.iec61850 import IecMap, MappingError, find_map, load_map
from gateway.mapping.sources import FLEET_SOURCES, NODE_SOURCES
from gateway.northbound.iec61850.plan import device_name_for
from tests.conftest import REPO

SHIPPED = REPO / "mappings" / "iec61850" / "default.yaml"
LARGE = REPO / "mappings" / "iec61850" / "large.yaml"


@pytest.fixture(scope="module")
def shipped() -> IecMap:
    return load_map(SHIPPED)


def test_the_shipped_map_has_the_required_names(shipped: IecMap) -> None:
    fleet, pack = shipped.fleet, shipped.pack
    assert fleet.device == "FLEET"
    assert [ln.name for ln in fleet.logical_nodes][:2] == ["LLN0", "LPHD1"]
    drcc = fleet.logical_node("DRCC1")
    assert drcc is not None
    out_w_set, der_str = drcc.object("OutWSet"), drcc.object("DERStr")
    assert out_w_set is not None and (out_w_set.cdc, out_w_set.control) == ("APC", "request_w")
    assert der_str is not None and (der_str.cdc, der_str.control) == ("SPC", "balancing_enabled")
    fleet_battery = fleet.logical_node("ZBAT1")
    assert fleet_battery is not None
    soc = fleet_battery.object("Soc")
    assert soc is not None and soc.source == "fleet.mean_soc_pct"
    sources = {spec.source for spec in fleet_battery.objects}
    assert {"fleet.stored_energy_wh", "fleet.available_charge_w", "fleet.available_discharge_w"} <= sources
    mmxu = fleet.logical_node("MMXU1")
    assert mmxu is not None and mmxu.object("TotW") is not None
    battery = pack.logical_node("ZBAT1")
    assert battery is not None
    assert {"Soc", "Soh", "Vol", "Amp", "Tmp", "BatHi", "BatLo", "BalMod"} <= {
        o.name for o in battery.objects
    }
    converter = pack.logical_node("ZINV1")
    assert converter is not None
    assert {o.source for o in converter.objects} >= {"node.power_w", "node.setpoint_w"}
    for device in (fleet, pack):
        assert device.datasets
        assert {report.buffered for report in device.reports} == {True, False}


def test_every_source_of_the_shipped_map_is_a_known_quantity(shipped: IecMap) -> None:
    for device, table in ((shipped.fleet, FLEET_SOURCES), (shipped.pack, NODE_SOURCES)):
        for ln in device.logical_nodes:
            for spec in ln.objects:
                assert spec.source is None or spec.source in table, f"{ln.name}.{spec.name}"


def test_the_large_site_map_is_the_default_without_the_per_pack_buffered_report(shipped: IecMap) -> None:
    large = load_map(LARGE)
    assert large.fleet == shipped.fleet
    assert (large.enums, large.attribute_enums, large.si_units) == (
        shipped.enums,
        shipped.attribute_enums,
        shipped.si_units,
    )
    assert large.pack.logical_nodes == shipped.pack.logical_nodes
    assert large.pack.datasets == shipped.pack.datasets
    assert [r.name for r in shipped.pack.reports] == ["brcbMeas", "urcbMeas"]
    assert large.pack.reports == tuple(r for r in shipped.pack.reports if not r.buffered)


def line_of(text: str, fragment: str) -> int:
    """1-based line where `fragment` first appears."""
    for number, line in enumerate(text.splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} is not in the map")


def broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """The shipped map with one change, and the line of the change."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert old in text, old
    changed = text.replace(old, new, 1)
    path = tmp_path / "broken.yaml"
    path.write_text(changed, encoding="utf-8")
    return path, line_of(changed, new.splitlines()[0]) if new else 0


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "Soc: {cdc: MV, source: node.soc_pct",
            "Soc: {cdc: MV, source: node.socc_pct",
            "unknown pack source `node.socc_pct` (did you mean `node.soc_pct`?)",
        ),
        (
            "Vol: {cdc: MV, source: node.voltage_v",
            "Vol: {cdc: XV, source: node.voltage_v",
            "`cdc` must be one of",
        ),
        ("        max: 10000000\n", "", "an APC needs a finite `max`"),
        ("      - ZINV1.WSpt\n", "      - ZBAT9.WSpt\n", "no logical node `ZBAT9`"),
        ("brcbMeas: {dataset: Meas", "brcbMeas: {dataset: Mess", "`dataset` must be one of"),
        ("map_version: 1.2.0", "map_version: 1.2", "semantic version"),
        ("map_version: 1.2.0", "map_version: 01.2.0", "semantic version"),  # no leading zeros (semver)
        (
            "MntCtl: {cdc: SPC, source: node.maintenance, control: node_maintenance}",
            "MntCtl: {cdc: SPC, source: node.maintenance, control: balancing_enabled}",
            "`control: balancing_enabled` belongs in the fleet device",
        ),
        ("control: reserve_pct, min: 0", "control: node_calibrate, min: 0", "`control` must be one of"),
        (
            "Tmp: {cdc: MV, source: node.temp_c, deadband: 0.5}",
            "Tmp: {cdc: MV, source: node.temp_c, deadband: -1}",
            "`deadband` must be a number >= 0",
        ),
        (
            "BatSt: {cdc: SPS, source: node.online}",
            "BatSt: {cdc: SPS, source: node.online, deadband: 1}",
            "`deadband` is only for MV data fed by a source",
        ),
        (
            "Soh: {cdc: MV, source: node.soh_pct",
            "Soh: {cdc: MV, sorce: node.soh_pct",
            "did you mean `source`?",
        ),
        ('model: "{model}"', 'model: "{serial}"', "unknown placeholder {serial}"),
        (
            "Beh: {cdc: ENS, enum: BehaviourModeKind, value: 1}",
            "Beh: {cdc: ENS, enum: BehaviourModeKind, value: 9}",
            "9 is not a value of BehaviourModeKind",
        ),
        (
            "BalMod: {cdc: INS, source: node.mode}",
            "BalMod: {cdc: INS, source: node.mode, min: 0}",
            "`min` is only for APC",
        ),
        ("ZINV1:\n", "ZINV:\n", "logical node name 'ZINV'"),
        (
            "Proxy: {cdc: SPS, value: true}",
            "Proxy: {cdc: SPS, value: true, source: node.online}",
            "give exactly one of `source` and `value`",
        ),
    ],
)
def test_a_broken_map_names_the_file_line_and_problem(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    path, line = broken(tmp_path, old, new)
    with pytest.raises(MappingError) as caught:
        load_map(path)
    messages = [str(problem) for problem in caught.value.problems]
    matching = [message for message in messages if expected in message]
    assert matching, messages
    if new:
        assert matching[0].startswith(f"{path}:{line}:"), (matching[0], line)
    else:
        assert matching[0].startswith(f"{path}:")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    text = text.replace("source: node.soc_pct", "source: node.nope", 1).replace("cdc: SPS", "cdc: SPZ", 1)
    path = tmp_path / "two.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_map(path)
    assert len(caught.value.problems) >= 2
    assert all(str(problem).startswith(f"{path}:") for problem in caught.value.problems)


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("map_version: 1.0.0\nfleet: [\n", encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_map(path)
    assert str(caught.value).startswith(f"{path}:")


def test_maps_are_found_by_name_or_path(tmp_path: Path) -> None:
    (tmp_path / "iec61850").mkdir()
    own = tmp_path / "iec61850" / "site.yaml"
    own.write_text(SHIPPED.read_text(encoding="utf-8"), encoding="utf-8")
    assert find_map("site", tmp_path, [tmp_path]) == own
    assert find_map("iec61850/site.yaml", tmp_path) == own
    assert find_map("default", tmp_path) == SHIPPED
    with pytest.raises(FileNotFoundError, match="no IEC 61850 map named `other`"):
        find_map("other", tmp_path, [tmp_path])


def test_pack_devices_are_named_after_the_node_id() -> None:
    assert device_name_for("pack-01") == "PACK_01"
    assert device_name_for("Rack_7b") == "RACK_7B"
