"""Profile loading: the shipped profiles, and every validation rule with its exact file:line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from gateway.diagnostics import load_yaml_file
from gateway.profiles.codec import decode, decode_firmware, encode
from gateway.profiles.loader import (
    ProfileError,
    ProfileLibrary,
    load_profile,
    parse_version_range,
    validate_profile,
)
from gateway.profiles.model import Table, Version
from gateway.profiles.schema import schema_text
from tests.conftest import REPO as ROOT

PROFILES = ROOT / "profiles"
SHIPPED = sorted(PROFILES.rglob("*.yaml"))
EVERY_SHIPPED_POINT = (
    *("soc_pct", "soh_pct", "capacity_wh", "voltage_v", "current_a", "power_w", "temp_c", "temp_max_c"),
    *(
        "charge_limit_w",
        "discharge_limit_w",
        "setpoint_w",
        "enable",
        "state",
        "alarms",
        "heartbeat",
        "firmware",
    ),
)

# A valid profile; the bad cases below change or add lines, so the line numbers are known.
BASE = """\
vendor: acme
model: box
profile_version: "1.0.0"
identify:
  registers:
    firmware: {address: 0, type: str, length: 4}
common:
  soc_pct: {address: 10, type: u16, unit: "%"}
  power_w: {address: 11, type: i16}
  setpoint_w: {address: 12, type: i16, access: rw, min: -100, max: 100}
"""

MODICON_BASE = """\
vendor: acme
model: box
profile_version: "1.0.0"
address_notation: modicon
identify:
  registers:
    firmware: {address: 30001, type: str, length: 4}
common:
  soc_pct: {address: 30011, type: u16, unit: "%"}
  power_w: {address: 30012, type: i16}
  setpoint_w: {address: 40013, type: i16, access: rw, min: -100, max: 100}
"""


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def write_profile(text: str) -> Path:
        path = tmp_path / "acme" / "box.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write_profile


def test_shipped_profiles_are_listed() -> None:
    assert [p.relative_to(PROFILES).as_posix() for p in SHIPPED] == [
        "microstore/mp2000.yaml",
        "rackcell/rbms-x.yaml",
        "sunspec/battery-802.yaml",
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_with_every_point(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../profile.schema.json\n"
    )
    profile = load_profile(path)
    assert profile.key == path.relative_to(PROFILES).with_suffix("").as_posix()
    for variant in profile.variants:
        names = set(variant.points) | set(profile.identify.points)
        assert not set(EVERY_SHIPPED_POINT) - names, variant.firmware


def test_base_profile_is_valid(write: Callable[[str], Path]) -> None:
    profile = load_profile(write(BASE))
    assert profile.key == "acme/box"
    assert str(profile.variants[0].firmware) == ">=0.0.0"


def test_rackcell_variants_differ_by_firmware() -> None:
    profile = load_profile(PROFILES / "rackcell" / "rbms-x.yaml")
    old, new = profile.variant_for(Version(1, 5)), profile.variant_for(Version(2, 1))
    assert old is not None and new is not None
    assert old.points["setpoint_w"].address == 200
    assert new.points["setpoint_w"].address == 300
    assert decode(old.points["soc_pct"], [55]) == 55.0
    assert decode(new.points["soc_pct"], [5512]) == 55.12
    assert old.points["voltage_v"] is new.points["voltage_v"]  # common points are shared
    assert profile.variant_for(Version(0, 9)) is None
    firmware = profile.identify.points["firmware"]
    assert decode_firmware(decode(firmware, [201]), profile.identify.firmware_format) == Version(2, 1)


def test_modicon_numbers_become_protocol_addresses() -> None:
    profile = load_profile(PROFILES / "microstore" / "mp2000.yaml")
    points = profile.variants[0].points
    assert (points["soc_pct"].table, points["soc_pct"].address) == (Table.INPUT, 0)
    assert (points["setpoint_w"].table, points["setpoint_w"].address) == (Table.HOLDING, 0)
    assert (points["enable"].table, points["enable"].address) == (Table.COIL, 0)
    assert (points["x_grid_present"].table, points["x_grid_present"].address) == (Table.DISCRETE, 0)
    assert encode(points["setpoint_w"], -20000) == [0xFFFF, 0xB1E0]
    assert encode(points["voltage_v"], 1.0) == [0x0000, 0x3F80]  # f32, low word first


def test_six_digit_modicon_and_explicit_tables(write: Callable[[str], Path]) -> None:
    text = BASE.replace("vendor: acme", "vendor: acme\naddress_notation: modicon")
    text = text.replace("address: 10,", "address: 400011,").replace("address: 11,", "address: 40012,")
    text = text.replace("address: 12,", "table: holding, address: 465536,").replace(
        "address: 0,", "address: 30001,"
    )
    profile = load_profile(write(text))
    points = profile.variants[0].points
    assert [points[name].address for name in ("soc_pct", "power_w", "setpoint_w")] == [10, 11, 65535]
    assert profile.identify.points["firmware"].table is Table.INPUT


def test_sunspec_identify_markers() -> None:
    profile = load_profile(PROFILES / "sunspec" / "battery-802.yaml")
    identify = profile.identify
    assert identify.markers["x_sunspec_id"] == "SunS"
    marker = identify.points["x_sunspec_id"]
    assert (marker.address, marker.count) == (40000, 2)
    assert decode(marker, [0x5375, 0x6E53]) == "SunS"
    assert identify.markers["x_battery_model_id"] == 802
    power = profile.variants[0].points["power_w"]
    assert power.scale_register == "w_sf"


def test_schema_file_is_up_to_date() -> None:
    assert (PROFILES / "profile.schema.json").read_text(encoding="utf-8") == schema_text()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profiles_match_the_schema(path: Path) -> None:
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(json.dumps(load_yaml_file(path)))  # keys as strings, as an editor sees them
    jsonschema.Draft202012Validator(schema).validate(document)


def test_schema_rejects_what_editors_should_flag(write: Callable[[str], Path]) -> None:
    schema = json.loads(schema_text())
    bad = (
        BASE + "  state: {address: 20, type: enum, labels: {0: asleep}}\n  x_t: {address: 21, type: uint16}\n"
    )
    document = json.loads(json.dumps(load_yaml_file(write(bad))))
    messages = [error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(document)]
    assert messages  # the non-canonical state label and the unknown type
    assert any("uint16" in message for message in messages)


# --- bad profiles: each case names the exact line and a meaningful part of the message --------------

BAD_CASES: list[tuple[str, str, str, str]] = [
    # (id, profile text, expected "line:column" or "line", expected part of the message)
    ("unknown-top-level-key", BASE.replace("vendor:", "vendr:"), "1:1", "did you mean `vendor`"),
    (
        "unknown-type",
        BASE.replace("type: i16}", "type: int16}", 1),
        "9:32",
        "unknown type 'int16' for power_w (did you mean `i16`?)",
    ),
    (
        "negative-address",
        BASE.replace("address: 11", "address: -1"),
        "9:22",
        "address -1 of power_w is outside 0..65535",
    ),
    (
        "address-too-large",
        BASE.replace("address: 11", "address: 70000"),
        "9:22",
        "set address_notation: modicon",
    ),
    (
        "modicon-wrong-table",
        MODICON_BASE.replace("address: 30012,", "table: holding, address: 30012,"),
        "10:38",
        "30012 of power_w is in the input range (3xxxx), but the table is holding: write 4xxxx",
    ),
    ("modicon-not-an-address", MODICON_BASE.replace("30012", "20001"), "10:22", "not a Modicon address"),
    (
        "overlap",
        BASE + "  x_extra: {address: 11, type: u32}\n",
        "11:22",
        "x_extra (holding 11..12, line 11) overlaps power_w (holding 11..11, line 9)",
    ),
    (
        "write-bound-on-read-only",
        BASE.replace("type: i16}", "type: i16, max: 5}", 1),
        "9:42",
        "write bound (`max`) but is read-only",
    ),
    (
        "writable-input-register",
        BASE.replace("type: i16}", "type: i16, table: input, access: rw}", 1),
        "9:59",
        "input table, which is read-only",
    ),
    (
        "missing-required-point",
        BASE.replace("  setpoint_w: {address: 12, type: i16, access: rw, min: -100, max: 100}\n", ""),
        "7:1",
        "no `setpoint_w` point",
    ),
    (
        "missing-scale-register",
        BASE.replace("type: i16}", "type: i16, scale_register: w_sf}", 1),
        "9:53",
        "scale register 'w_sf' of power_w is not a point of this variant",
    ),
    (
        "scale-register-not-i16",
        BASE.replace("type: i16}", "type: i16, scale_register: w_sf}", 1)
        + "  w_sf: {address: 13, type: u16}\n",
        "9:53",
        "scale register 'w_sf' (line 11) is holding u16; a scale factor is an i16 register",
    ),
    (
        "scale-and-scale-register",
        BASE.replace("type: i16}", "type: i16, scale: 2, scale_register: w_sf}", 1)
        + "  w_sf: {address: 13, type: i16}\n",
        "9:47",
        "both `scale` and `scale_register`",
    ),
    (
        "overlapping-firmware-ranges",
        BASE
        + "variants:\n"
        + "  - firmware: '>=1.0,<2.0'\n"
        + "    registers: {x_a: {address: 40, type: u16}}\n"
        + "  - firmware: '>=1.5'\n"
        + "    registers: {x_b: {address: 40, type: u16}}\n",
        "14:5",
        "firmware range >=1.5.0 overlaps variant >=1.0.0,<2.0.0 (line 12)",
    ),
    ("bad-semver", BASE.replace('"1.0.0"', "1.0"), "3:18", "not a semantic version"),
    (
        "sentinel-does-not-fit",
        BASE.replace('unit: "%"}', 'unit: "%", sentinel: 0x10000}'),
        "8:58",
        "sentinel 65536 does not fit",
    ),
    ("enum-without-labels", BASE + "  state: {address: 20, type: enum}\n", "11:30", "enum without `labels`"),
    ("str-without-length", BASE.replace("type: str, length: 4", "type: str"), "6:34", "str without `length`"),
    (
        "bit-outside-width",
        BASE + "  alarms: {address: 20, type: bits, labels: {3: a, 16: b}}\n",
        "11:52",
        "bit 16 of alarms does not exist",
    ),
    (
        "non-canonical-state",
        BASE + "  state: {address: 20, type: enum, labels: {0: off, 1: asleep}}\n",
        "11:56",
        "state label 'asleep' is not canonical",
    ),
    (
        "max-registers-per-read",
        BASE + "comms:\n  max_registers_per_read: 200\n",
        "12:27",
        "`max_registers_per_read` must be a whole number 1..125, not 200",
    ),
    ("yaml-syntax", BASE.replace("model: box", "model: [box"), "3:", "YAML syntax error"),
    (
        "missing-firmware",
        BASE.replace("firmware: {address: 0", "serial: {address: 0"),
        "5:3",
        "identify has no `firmware` point",
    ),
    (
        "past-the-address-space",
        BASE + "  x_wide: {address: 65535, type: u32}\n",
        "11:21",
        "past the last address 65535",
    ),
    ("unknown-point-name", BASE + "  soc: {address: 30, type: u16}\n", "11:3", "did you mean `soc_pct`"),
    (
        "duplicate-key",
        BASE + "  soc_pct: {address: 31, type: u16}\n",
        "11:3",
        "duplicate key 'soc_pct' (first written at line 8)",
    ),
    (
        "comma-in-flow-mapping",
        BASE + "  x_note: {address: 40, type: u16, description: a, b}\n",
        "11:52",
        "put text with commas in quotes",
    ),
    ("unit-mismatch", BASE.replace("type: i16}", "type: i16, unit: kW}", 1), "9:43", "convert with `scale`"),
]


@pytest.mark.parametrize(
    ("text", "where", "fragment"), [case[1:] for case in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_profile(write: Callable[[str], Path], text: str, where: str, fragment: str) -> None:
    path = write(text)
    problems = validate_profile(path)
    rendered = [str(problem) for problem in problems]
    assert any(line.startswith(f"{path}:{where}") and fragment in line for line in rendered), rendered
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value) == "\n".join(rendered)


def test_every_problem_is_reported_at_once(write: Callable[[str], Path]) -> None:
    text = (
        BASE.replace("vendor:", "vendr:").replace("type: i16}", "type: int16}", 1)
        + "  x_a: {address: 10, type: u16}\n"
    )
    problems = validate_profile(write(text))
    assert [problem.mark.line for problem in problems] == [1, 1, 9, 11]
    assert any("has no `vendor`" in problem.message for problem in problems)


def test_firmware_range_parsing() -> None:
    assert str(parse_version_range(">=1.0,<2.0")) == ">=1.0.0,<2.0.0"
    assert str(parse_version_range("<2")) == ">=0.0.0,<2.0.0"
    assert str(parse_version_range("*")) == ">=0.0.0"
    for bad in ("==1.0", ">=2.0,<1.0", ">=1,>=2", ""):
        with pytest.raises(ValueError):
            parse_version_range(bad)


def test_library_finds_profiles_by_key(tmp_path: Path, write: Callable[[str], Path]) -> None:
    write(BASE)
    library = ProfileLibrary([tmp_path, PROFILES])
    assert library.keys() == ["acme/box", "microstore/mp2000", "rackcell/rbms-x", "sunspec/battery-802"]
    assert library.get("acme/box").key == "acme/box"
    assert library.get("rackcell/rbms-x") is library.get("rackcell/rbms-x")
    with pytest.raises(ProfileError, match="did you mean `microstore/mp2000`"):
        library.get("microstore/mp200")
    misplaced = tmp_path / "other" / "name.yaml"
    misplaced.parent.mkdir()
    misplaced.write_text(BASE, encoding="utf-8")
    with pytest.raises(ProfileError, match=r"declares 'acme/box' but lives at other/name\.yaml"):
        ProfileLibrary([tmp_path]).get("other/name")


def test_worked_example_in_the_guide_is_valid(tmp_path: Path) -> None:
    guide = (ROOT / "docs" / "profile-authoring.md").read_text(encoding="utf-8")
    example = guide.rsplit("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "acme" / "box.yaml"
    path.parent.mkdir()
    path.write_text(example, encoding="utf-8")
    profile = load_profile(path)
    assert profile.variants[0].points["setpoint_w"].address == 19  # 40020 in Modicon numbering
