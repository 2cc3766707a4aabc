"""Scenario files: the shipped ones load, and every mistake is reported with file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.profiles.loader import ProfileLibrary
from gateway.sim.faults import ExceptionCode
from gateway.sim.physics import Chemistry
from gateway.sim.scenario import ScenarioError, load_scenario, uniform_fleet
from tests.conftest import SCENARIOS


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path, profile_library: ProfileLibrary) -> None:
    scenario = load_scenario(path, profile_library.get)
    assert scenario.packs
    assert all(pack.port > 0 for pack in scenario.packs)


def test_default_scenario_mixes_profiles_capacities_and_socs(profile_library: ProfileLibrary) -> None:
    scenario = load_scenario(SCENARIOS / "default.yaml", profile_library.get)
    assert len(scenario.packs) == 8
    assert {p.profile.key for p in scenario.packs} == {
        "microstore/mp2000",
        "rackcell/rbms-x",
        "sunspec/battery-802",
    }
    assert [p.port for p in scenario.packs] == list(range(15020, 15028))
    assert len({p.params.capacity_wh for p in scenario.packs}) >= 3
    socs = [p.initial.soc_pct for p in scenario.packs]
    assert max(socs) - min(socs) > 50
    rack = scenario.packs_by_id["rack-06"]
    assert (str(rack.firmware), rack.params.chemistry) == ("1.5.0", Chemistry.NMC)
    assert scenario.packs_by_id["pack-01"].params.standby_w == 6.0  # the main unit
    assert scenario.packs_by_id["pack-02"].params.standby_w == 2.0
    assert scenario.packs_by_id["pack-02"].params.usable_wh == pytest.approx(2048 * 0.91)


def test_troubled_scenario_carries_its_faults(profile_library: ProfileLibrary) -> None:
    scenario = load_scenario(SCENARIOS / "troubled.yaml", profile_library.get)
    assert scenario.speed == 10.0
    assert scenario.packs_by_id["slow-02"].faults.delay_ms == 120.0
    busy = scenario.packs_by_id["busy-05"].faults
    assert busy.max_connections == 1
    assert busy.exceptions[0].code is ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
    assert scenario.packs_by_id["faulted-07"].initial.fault_flags == frozenset({"contactor_error"})


def test_uniform_fleet_spreads_soc(profile_library: ProfileLibrary) -> None:
    scenario = uniform_fleet(5, profile_library.get("microstore/mp2000"), base_port=16000)
    assert [p.initial.soc_pct for p in scenario.packs] == [85.0, 70.0, 55.0, 40.0, 25.0]
    assert [p.port for p in scenario.packs] == [16000, 16001, 16002, 16003, 16004]
    assert [p.pack_id for p in scenario.packs][:2] == ["pack-01", "pack-02"]
    assert str(scenario.packs[0].firmware) == "1.4.0"


BAD_SCENARIOS = [
    ("packs:\n  - id: a\n    colour: red\n", "3:5", "unknown key `colour` in a pack"),
    ("speed: 1\nflavour: x\npacks: [{id: a}]\n", "2:1", "unknown key `flavour` in the scenario"),
    ("packs:\n  - id: a\n    chemistry: lead\n", "3:16", "`chemistry` must be one of lfp, nmc"),
    ("packs:\n  - id: a\n    soc_pct: 150\n", "2:5", "soc_pct 150.0 must be between 0 and 100"),
    ("packs:\n  - id: a\n  - id: a\n", "3:5", "pack id 'a' is used twice"),
    (
        "base_port: 0\npacks:\n  - {id: a, port: 15000}\n  - {id: b, port: 15000}\n",
        "4:5",
        "already taken by a",
    ),
    (
        "packs:\n  - id: a\n    profile: rackcell/rbms-x\n    firmware: 0.5\n",
        "2:5",
        "no variant for firmware 0.5.0",
    ),
    ("packs:\n  - id: a\n    firmware: one\n", "3:15", "'one' is not a version"),
    ("packs:\n  - id: a\n    faults: {delay: 3}\n", "3:13", "unknown fault knob(s) delay"),
    ("packs:\n  - id: a\n    capacity_wh: -5\n", "2:5", "capacity_wh > 0"),
    ("speed: 0\npacks: [{id: a}]\n", "1:8", "`speed` must be a number > 0"),
    ("packs: []\n", "1:8", "non-empty list"),
    ("packs:\n  - soc_pct: 3\n", "2:5", "pack without an id"),
    ("packs:\n  - id: a\n   bad indent: 1\n", "3:", "YAML syntax error"),
]


@pytest.mark.parametrize(("text", "where", "message"), BAD_SCENARIOS)
def test_mistakes_name_file_line_and_column(
    tmp_path: Path, profile_library: ProfileLibrary, text: str, where: str, message: str
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, profile_library.get)
    assert str(caught.value).startswith(f"{path}:{where}"), str(caught.value)
    assert message in str(caught.value)


def test_unknown_profile_lists_the_known_ones(tmp_path: Path, profile_library: ProfileLibrary) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("packs:\n  - {id: a, profile: acme/x1}\n", encoding="utf-8")
    with pytest.raises(
        ScenarioError, match=r"scenario\.yaml:2:22: pack a: no profile 'acme/x1'.*microstore/mp2000"
    ):
        load_scenario(path, profile_library.get)
