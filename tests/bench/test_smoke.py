"""Each process-level benchmark's quick mode runs end to end and writes the fields its report reads:
bench.pipeline, bench.overload, bench.freshness and bench.dnp3_bench's integrity polls.

No timing assertions: speed lives in bench/, this only checks that the benchmarks work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.freshness import STAGES
from bench.pipeline import write_site_config
from gateway.sim.fleet import Endpoint
from tests.conftest import REPO

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

CYCLE_FIELDS = (
    "cycles",
    "cycle_p50_ms",
    "cycle_p99_ms",
    "cycle_max_ms",
    "overruns",
    "cpu_us_per_pack_cycle",
    "thirds",
)
RUN_FIELDS = ("steps_ms", "rss_mib", "rss_peak_mib", "thread_cpu_pct", "writes_per_pack_per_min", "profile")
# What the core's sessions counted over the window (bench.overload reads them).
COUNTER_FIELDS = (
    "setpoint_writes",
    "writes_per_pack_per_min_max",
    "reconnects",
    "late_answers",
    "answers_waiting",
)
# The benchmark's own processes stop themselves; the timeout only bounds a hang.
HANG_S = 300


def run_bench(module: str, *arguments: str) -> None:
    command = [sys.executable, "-m", module, *arguments]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=HANG_S, check=False)
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_pipeline_quick_run_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    run_bench(
        "bench.pipeline",
        "--quick",
        "--packs",
        "10",
        "--seconds",
        "3",
        "--profile-seconds",
        "1",
        "--json",
        str(out),
    )
    document = json.loads(out.read_text())
    assert document["machine"]["cpus"] >= 1
    (result,) = document["results"]
    assert result["packs"] == 10
    for name in CYCLE_FIELDS + RUN_FIELDS + COUNTER_FIELDS:
        assert name in result, name
    # Each adapter child of the core measured on its own, and the simulators beside them.
    assert set(result["adapter_cpu_us_per_pack_cycle"]) == {"dnp3", "iec61850"}
    assert all(us > 0 for us in result["adapter_cpu_us_per_pack_cycle"].values())
    assert result["other_children_cpu_us_per_pack_cycle"] == {}
    assert result["simulators_cpu_pct_of_one_core"] >= 0
    assert isinstance(result["reconnects"], int)  # counted from the core's sessions
    assert result["pollers"] == 1
    assert result["cycles"] > 0
    thirds = result["thirds"]
    assert len(thirds) == 3
    assert sum(t["cycles"] for t in thirds) == result["cycles"]
    assert sum(t["overruns"] for t in thirds) == result["overruns"]
    assert max(t["cycle_p99_ms"] for t in thirds) <= result["cycle_max_ms"]
    assert result["not_good_node_cycles"] == 0
    assert set(result["steps_ms"]) == {"poll", "dispatch", "write", "publish", "total"}
    assert result["profile"]["top_own_time"]


def site_section(path: Path) -> dict[str, Any]:
    section: dict[str, Any] = json.loads(path.read_text())["site"]
    return section


def test_the_pipeline_writes_site_pollers_only_above_one(tmp_path: Path) -> None:
    """A gateway without the key still runs the bench at one poller."""
    endpoints = [Endpoint("pack-01", "microstore/mp2000", "1.0", "127.0.0.1", 15020, 1)]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert "pollers" not in site_section(write_site_config(one, endpoints, {}, 0.0))
    assert site_section(write_site_config(two, endpoints, {}, 0.0, pollers=2))["pollers"] == 2


def test_overload_quick_run_counts_what_overload_must_not_do(tmp_path: Path) -> None:
    out = tmp_path / "overload.json"
    run_bench("bench.overload", "--quick", "--seconds", "3", "--json", str(out))
    document = json.loads(out.read_text())
    steady, loaded = document["results"]
    assert (steady["packs"], loaded["packs"]) == (5, 10)
    for name in COUNTER_FIELDS:
        assert isinstance(loaded[name], int | float), name
    assert set(document["overload_checks"]) == {
        "writes_within_budget",
        "no_reconnects",
        "no_timeouts_of_answering_packs",
        "no_not_good_node_cycles",
    }


def test_freshness_quick_run_times_all_three_clients(tmp_path: Path) -> None:
    out = tmp_path / "freshness.json"
    run_bench("bench.freshness", "--quick", "--samples", "3", "--json", str(out))
    (result,) = json.loads(out.read_text())["results"]
    assert result["samples_missing_a_value"] == 0
    for client in ("dnp3_unsolicited", "iec61850_report", "mqtt_ddata"):
        assert result[client]["samples"] == 3, client
        assert 0 < result[client]["p50_ms"] <= result[client]["p99_ms"], client
    assert set(result["children_cpu_us_per_pack_cycle"]) == {"dnp3", "iec61850", "mqtt"}
    assert result["gateway_cycle"]["cycles"] > 0
    # every sample's path stamped in the core, each child and the simulator (bench.stages)
    for client, stages in result["stages_p50_p99_ms"].items():
        assert stages["samples"] == 3, client
        assert set(STAGES) | {"total"} <= set(stages), client
    assert result["carrying_frame"]["samples"] == 3


def test_dnp3_bench_quick_run_polls_with_both_masters(tmp_path: Path) -> None:
    out = tmp_path / "dnp3.json"
    run_bench("bench.dnp3_bench", "--quick", "--json", str(out))
    polls = json.loads(out.read_text())["integrity_poll"]
    for master in ("compiled", "dnp3py"):
        assert polls[master]["poll_median_ms"] > 0, master
        assert polls[master]["outstation_cpu_ms_per_poll"] >= 0, master
    assert polls["compiled"]["fragments"] > 1  # the full map takes several fragments
