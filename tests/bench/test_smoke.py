"""bench/pipeline.py's quick mode runs end to end at N = 10 and writes the fields the report reads.

No timing assertions: speed lives in bench/, this only checks that the benchmark works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_pipeline_quick_run_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    command = [sys.executable, "-m", "bench.pipeline", "--quick", "--packs", "10", "--seconds", "3"]
    command += ["--profile-seconds", "1", "--json", str(out)]
    # The benchmark stops its simulator and gateway processes itself; the timeout only bounds a hang.
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=100, check=False)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document = json.loads(out.read_text())
    assert document["machine"]["cpus"] >= 1
    (result,) = document["results"]
    assert result["packs"] == 10
    for name in CYCLE_FIELDS + RUN_FIELDS:
        assert name in result, name
    assert result["cycles"] > 0
    thirds = result["thirds"]
    assert len(thirds) == 3
    assert sum(t["cycles"] for t in thirds) == result["cycles"]
    assert sum(t["overruns"] for t in thirds) == result["overruns"]
    assert max(t["cycle_p99_ms"] for t in thirds) <= result["cycle_max_ms"]
    assert result["not_good_node_cycles"] == 0
    assert set(result["steps_ms"]) == {"poll", "dispatch", "write", "publish", "total"}
    assert result["profile"]["top_own_time"]
