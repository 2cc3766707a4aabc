"""The balancing bench: the claims it measures about the balancer, checked on the real physics.

Every run goes through `gateway.sim.physics` and the real `dispatch` (and its two alternatives) in quick
mode (10 s cycles). The bounds are the measured values with a margin, each explained where it is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.balancing import (
    QUICK_CYCLE_S,
    ScenarioResult,
    main,
    random_fleets,
    run_scenario,
    scenarios,
)

SCENARIOS = {scenario.name: scenario for scenario in scenarios()}


@pytest.fixture(scope="module")
def results() -> dict[str, ScenarioResult]:
    names = ("a-four-one-low", "b-big-small", "d-dropout", "e-pv-charge")
    return {name: run_scenario(SCENARIOS[name], QUICK_CYCLE_S) for name in names}


def headline(result: ScenarioResult, strategy: str) -> float:
    return result.runs[strategy].metrics.recovered_first_bound_pct


@pytest.mark.parametrize("name", ["a-four-one-low", "b-big-small"])
def test_ours_recovers_the_energy_above_reserve_before_the_first_pack_stops(
    results: dict[str, ScenarioResult], name: str
) -> None:
    # Discharge ∝ energy above reserve makes every pack reach reserve together; what is left is the
    # 0.1 % SOC resolution and one cycle's overshoot (measured: 99.9 % and 100.0 %).
    assert headline(results[name], "socgw") >= 99.0


def test_equal_split_strands_the_fuller_packs_energy_when_one_pack_is_low(
    results: dict[str, ScenarioResult],
) -> None:
    # 50/50/50/35 % at equal power: when the 35 % pack reaches 10 % the others still hold 15 % each,
    # 4.5 of the 14.5 kWh above reserve, so 69.0 % (measured 69.0 %); the "~80 %" is loose.
    assert headline(results["a-four-one-low"], "equal_split") <= 72.0


def test_soc_proportional_strands_energy_of_a_big_and_a_small_pack(
    results: dict[str, ScenarioResult],
) -> None:
    # Both at 60 %, 100 + 50 kWh: shares ∝ SOC make the small pack's SOC fall twice as fast relative to
    # its share, so soc_small = soc_big² / 60; it reaches 10 % when the big one is at 24.5 %, leaving
    # 14.5 of 75 kWh (19.3 %) stranded. Measured: 80.6 % recovered, 19.4 % stranded; we assert >= 18 %.
    assert headline(results["b-big-small"], "soc_proportional") <= 82.0
    assert (
        headline(results["b-big-small"], "socgw") - headline(results["b-big-small"], "soc_proportional")
        > 15.0
    )


@pytest.mark.parametrize("name", ["a-four-one-low", "b-big-small", "d-dropout", "e-pv-charge"])
def test_ours_never_flips_a_setpoints_sign(results: dict[str, ScenarioResult], name: str) -> None:
    assert results[name].runs["socgw"].metrics.sign_flips_total == 0


def test_ours_absorbs_a_dropout_without_stranding_energy(results: dict[str, ScenarioResult]) -> None:
    # While pack-02 is away the others carry the request; back, it gets its share of the energy left,
    # so every pack still reaches reserve together (measured 99.9 %, no shortfall).
    metrics = results["d-dropout"].runs["socgw"].metrics
    assert metrics.recovered_first_bound_pct >= 99.0
    assert metrics.dropout_shortfall_kwh == 0.0


def test_ours_fills_every_pack_to_the_ceiling_together(results: dict[str, ScenarioResult]) -> None:
    result = results["e-pv-charge"]
    assert headline(result, "socgw") >= 99.0  # measured 99.9 %
    assert headline(result, "equal_split") <= 60.0  # measured 57.1 %: the 5 kWh pack fills first


def test_ours_beats_both_alternatives_on_random_fleets() -> None:
    for fleet in random_fleets(3, seed=7, cycle_s=QUICK_CYCLE_S):
        ours = fleet.headline_pct("socgw")
        assert 0.0 <= ours <= 100.0
        assert ours >= fleet.headline_pct("equal_split"), fleet.scenario
        assert ours >= fleet.headline_pct("soc_proportional"), fleet.scenario
        # Balanced packs run out together, and writes stay paced.
        ours_spread = fleet.metrics["socgw"].first_bound_spread_pct
        assert ours_spread <= fleet.metrics["equal_split"].first_bound_spread_pct, fleet.scenario
        assert 0.0 < fleet.metrics["socgw"].writes_per_node_per_min <= 60.0 / QUICK_CYCLE_S


def test_command_writes_tables_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--out", str(tmp_path), "--scenario", "b-big-small"]) == 0

    printed = capsys.readouterr().out
    assert "| metric | socgw (ours) | equal split | ∝ SOC |" in printed
    document = json.loads((tmp_path / "balancing.json").read_text(encoding="utf-8"))
    (scenario,) = document["scenarios"]
    assert scenario["name"] == "b-big-small"
    assert set(scenario["results"]) == {"socgw", "equal_split", "soc_proportional"}
    assert (tmp_path / "balancing.md").read_text(encoding="utf-8").startswith("# Balancing")
    assert (tmp_path / scenario["plot"]).read_bytes().startswith(b"\x89PNG")


def test_random_mode_prints_the_distribution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--random", "2", "--seed", "3", "--out", str(tmp_path)]) == 0

    printed = capsys.readouterr().out
    assert "| metric | strategy | min | p10 | median | p90 | max |" in printed
    assert "| SOC spread when the first pack reached reserve (%) | socgw (ours) |" in printed
    assert "| setpoint writes per node per minute | equal split |" in printed
    document = json.loads((tmp_path / "balancing-random.json").read_text(encoding="utf-8"))
    assert len(document["fleets"]) == 2
    for fleet in document["fleets"]:
        assert len(fleet["dropouts"]) == 1
        assert set(fleet["results"]) == {"socgw", "equal_split", "soc_proportional"}
        assert 0.0 <= fleet["socgw_without_dropout_pct"] <= 100.0
