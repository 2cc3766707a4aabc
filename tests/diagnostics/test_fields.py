"""The one field checker: every kind of value, its message style, hints, and the named-file lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.diagnostics import SEMVER, Checker, find_named_file, load_yaml, named_files
from gateway.diagnostics.fields import Field, choice, flag, number, text, version, whole

FIELDS: dict[str, Field] = {
    "port": whole("", 1, 65535),
    "ratio": number("", 0, 1),
    "power_w": number("", above=0, unit="W"),
    "name": text(""),
    "enabled": flag(""),
    "level": choice("", ["debug", "info"]),
    "map_version": version(""),
}


def read(yaml_text: str, key: str) -> tuple[Any, list[str]]:
    checker = Checker()
    value = checker.value(load_yaml(yaml_text, "f.yaml"), key, FIELDS[key], "default")
    return value, [str(problem) for problem in checker.problems]


@pytest.mark.parametrize(
    ("text_", "key", "expected"),
    [
        ("port: 502", "port", 502),
        ("ratio: 1", "ratio", 1.0),
        ("power_w: 0.5", "power_w", 0.5),
        ("name: a", "name", "a"),
        ("enabled: false", "enabled", False),
        ("level: info", "level", "info"),
        ('map_version: "0.10.2"', "map_version", "0.10.2"),
        ("other: 1", "port", "default"),  # absent: the default, no problem
    ],
)
def test_good_values_come_back_typed(text_: str, key: str, expected: object) -> None:
    value, problems = read(text_, key)
    assert value == expected and type(value) is type(expected)
    assert problems == []


@pytest.mark.parametrize(
    ("text_", "key", "message"),
    [
        ("port: 70000", "port", "f.yaml:1:7: `port` must be a whole number 1..65535, not 70000"),
        ("port: true", "port", "f.yaml:1:7: `port` must be a whole number 1..65535, not True"),
        ("port: 5.0", "port", "`port` must be a whole number 1..65535, not 5.0"),
        ("ratio: true", "ratio", "`ratio` must be a number 0..1, not True"),  # a bool is no number
        ("ratio: .nan", "ratio", "`ratio` must be a number 0..1, not nan"),
        ("power_w: 0", "power_w", "`power_w` must be a number > 0 W, not 0"),
        ("name: ' '", "name", "`name` must be text, not ' '"),
        ("enabled: yes", "enabled", "`enabled` must be true or false, not 'yes'"),  # YAML 1.2: a string
        ("level: inf", "level", "`level` must be one of debug, info, not 'inf' (did you mean `info`?)"),
        ("map_version: 01.0.0", "map_version", "`map_version` must be a semantic version"),
        ("port: {a: 1}", "port", "not a mapping"),
    ],
)
def test_wrong_values_are_reported_in_one_style(text_: str, key: str, message: str) -> None:
    value, problems = read(text_, key)
    assert value == "default"
    assert len(problems) == 1 and message in problems[0], problems


def test_the_semantic_version_is_strict() -> None:
    assert SEMVER.match("1.0.0") and SEMVER.match("0.10.0")
    assert not any(SEMVER.match(bad) for bad in ("01.0.0", "1.00.0", "1.0", "1.0.0-rc1", "v1.0.0"))


def test_a_missing_required_key_says_what_to_add() -> None:
    checker = Checker()
    checker.value(load_yaml("other: 1", "f.yaml"), "port", FIELDS["port"], where="the section")
    assert [str(p) for p in checker.problems] == [
        "f.yaml:1:1: the section has no `port`: add `port: <1..65535>`"
    ]


def test_unknown_keys_get_a_hint_and_the_valid_keys() -> None:
    checker = Checker()
    checker.known_keys(load_yaml("prot: 1\nzzz: 2\n", "f.yaml"), FIELDS, "`dnp3`")
    first, second = (str(problem) for problem in checker.problems)
    assert first.startswith(
        "f.yaml:1:1: unknown key `prot` in `dnp3` (did you mean `port`?); valid keys: port,"
    )
    assert second.startswith("f.yaml:2:1: unknown key `zzz` in `dnp3`; valid keys:")


def test_named_files_are_found_by_folder_first_directory_first(tmp_path: Path) -> None:
    first, second = tmp_path / "etc", tmp_path / "usr"
    for directory, names in ((first, ["site"]), (second, ["site", "default"])):
        (directory / "dnp3").mkdir(parents=True)
        for name in names:
            (directory / "dnp3" / f"{name}.yaml").write_text("{}\n")
    assert named_files([first, second], "dnp3") == {
        "site": first / "dnp3" / "site.yaml",
        "default": second / "dnp3" / "default.yaml",
    }
    assert (
        find_named_file("site", tmp_path, "dnp3", "DNP3 map", [first, second]) == first / "dnp3" / "site.yaml"
    )
    assert (
        find_named_file("etc/dnp3/site.yaml", tmp_path, "dnp3", "DNP3 map", [])
        == first / "dnp3" / "site.yaml"
    )
    with pytest.raises(FileNotFoundError) as missing:
        find_named_file("defualt", tmp_path, "dnp3", "DNP3 map", [first, second])
    assert "no DNP3 map named `defualt` (did you mean `default`?)" in str(missing.value)
    assert "known: default, site" in str(missing.value)
    with pytest.raises(FileNotFoundError, match=r"DNP3 map file .*nowhere\.yaml does not exist"):
        find_named_file("nowhere.yaml", tmp_path, "dnp3", "DNP3 map", [first])
