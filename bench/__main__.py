"""`make bench`: every benchmark in turn, results in bench/results/ (JSON, Markdown, PNG).

Each benchmark prints how it measures. Run one alone with `python -m bench.<name> --help`.
"""

from __future__ import annotations

import datetime
import importlib
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (label, module, arguments): the order runs the cheap, self-contained ones first.
BENCHMARKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("balancing", "bench.balancing", ("--out", str(RESULTS))),
    (
        "balancing random fleets",
        "bench.balancing",
        ("--out", str(RESULTS), "--random", "50", "--seed", "1", "--quick"),
    ),
    ("sim_capacity", "bench.sim_capacity", ("--json", str(RESULTS / "sim_capacity.json"))),
    ("poll_scale", "bench.poll_scale", ("--json", str(RESULTS / "poll_scale.json"))),
    ("pipeline", "bench.pipeline", ("--json", str(RESULTS / "pipeline.json"))),
    # Two polling processes (site.pollers: 2) on this machine's cores, nothing pinned: the largest N.
    (
        "pipeline pollers 2",
        "bench.pipeline",
        ("--pollers", "2", "--profile-seconds", "0", "--json", str(RESULTS / "pipeline-pollers-2.json")),
    ),
    # Twice the largest N the pipeline carried without overrun (read from pipeline.json), beside it.
    ("overload", "bench.overload", ("--json", str(RESULTS / "overload.json"))),
    # The same without the IEC 61850 server, to show what it costs the loop's core.
    (
        "pipeline dnp3 only",
        "bench.pipeline",
        (
            *("--packs", "200", "500", "--seconds", "30", "--profile-seconds", "0"),
            *("--northbound", "dnp3", "--json", str(RESULTS / "pipeline-variant.json")),
        ),
    ),
    # The default IEC 61850 map where the large one is advised: what a buffered report per pack costs.
    (
        "pipeline IEC 61850 default map",
        "bench.pipeline",
        (
            *("--packs", "500", "--seconds", "30", "--profile-seconds", "0", "--iec61850-map", "default"),
            *("--json", str(RESULTS / "pipeline-iec61850-default.json")),
        ),
    ),
    ("freshness", "bench.freshness", ("--json", str(RESULTS / "freshness.json"))),
    (
        "dnp3 integrity poll",
        "bench.dnp3_bench",
        ("--integrity-only", "--json", str(RESULTS / "dnp3-integrity.json")),
    ),
    ("scada_load", "bench.scada_load", ("--json", str(RESULTS / "scada_load.json"))),
    ("frontdoor", "bench.frontdoor", ("--json", str(RESULTS / "frontdoor.json"))),
    # Last: collects every JSON above (run.json included) into summary.md and its plots.
    ("report", "bench.report", ("--results", str(RESULTS))),
)


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_started = time.monotonic()
    # Rewritten after each benchmark, so the report (the last step) can say how long the run took.
    steps: list[dict[str, object]] = []
    record: dict[str, object] = {
        "started_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "steps": steps,
        "total_s": 0.0,
    }
    failures = 0
    for label, module_name, arguments in BENCHMARKS:
        print(f"\n=== python -m {module_name} {' '.join(arguments)}", flush=True)
        started = time.monotonic()
        status = importlib.import_module(module_name).main(list(arguments))
        seconds = time.monotonic() - started
        print(f"=== {module_name}: exit {status} after {seconds:.0f} s", flush=True)
        failures += status != 0
        if module_name != "bench.report":
            steps.append({"name": label, "seconds": round(seconds, 1), "exit": status})
            record["total_s"] = round(time.monotonic() - run_started, 1)
            (RESULTS / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"=== make bench: {(time.monotonic() - run_started) / 60.0:.1f} min", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
