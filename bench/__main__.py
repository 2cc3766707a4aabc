"""`make bench`: every benchmark in turn, results in bench/results/ (JSON, Markdown, PNG).

Each benchmark prints how it measures. Run one alone with `python -m bench.<name> --help`.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (module, arguments): the order runs the cheap, self-contained ones first.
BENCHMARKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bench.balancing", ("--out", str(RESULTS))),
    ("bench.balancing", ("--out", str(RESULTS), "--random", "50", "--seed", "1", "--quick")),
    ("bench.sim_capacity", ("--json", str(RESULTS / "sim_capacity.json"))),
    ("bench.poll_scale", ("--json", str(RESULTS / "poll_scale.json"))),
    ("bench.pipeline", ("--json", str(RESULTS / "pipeline.json"))),
    # The same without the IEC 61850 server, to show what it costs the loop's core.
    (
        "bench.pipeline",
        (
            *("--packs", "200", "500", "--seconds", "30", "--profile-seconds", "0"),
            *("--northbound", "dnp3", "--json", str(RESULTS / "pipeline-variant.json")),
        ),
    ),
    ("bench.freshness", ("--json", str(RESULTS / "freshness.json"))),
    ("bench.scada_load", ("--json", str(RESULTS / "scada_load.json"))),
    # Last: collects every JSON above into summary.md and its plots.
    ("bench.report", ("--results", str(RESULTS))),
)


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    failures = 0
    for module_name, arguments in BENCHMARKS:
        print(f"\n=== python -m {module_name} {' '.join(arguments)}", flush=True)
        started = time.monotonic()
        status = importlib.import_module(module_name).main(list(arguments))
        print(f"=== {module_name}: exit {status} after {time.monotonic() - started:.0f} s", flush=True)
        failures += status != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
