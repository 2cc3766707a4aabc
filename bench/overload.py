"""Graceful overload: the gateway at twice the fleet it sustains, beside the fleet it sustains.

    python -m bench.overload [--sustainable N] [--factor 2] [--seconds 120] [--request-step-s 20]
                             [--pollers K] [--quick] [--json bench/results/overload.json]

N defaults to the largest N without overrun in bench/results/pipeline.json (`make bench` runs the
pipeline first). Method: bench.pipeline's run (simulator processes, the recording gateway in its own
process with both adapters, the site request stepping between 25 % and 50 % of the fleet's rated power
every `--request-step-s`), first at N = `--sustainable` (the steady state: the budget's reference) and then
at `--factor` × N, with the same window. What overload must not do (issue 14), from the counters the
core's sessions keep, read at the window's start and end: setpoint writes per pack per minute (mean and
the busiest pack; the budget is 6), reconnects of packs (0: every simulated pack is healthy), timeouts of
packs whose answer then came (`late_answers`, 0), and, to show the case occurred, the timeouts not
declared because the answer was already waiting in the socket buffer (`answers_waiting`). Beside them:
cycle p50/p99, overruns, the period the core stretched to, node-cycles not good, the core's and each
child's CPU per pack-cycle, the simulators' share. With `site.pollers` the nodes are polled in other
processes whose sessions the core may not hold: the counters the core cannot see print as None.
Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.pipeline import ADAPTERS, PACKS_PER_SIMULATOR, RESULTS, Plan, machine, print_row, run_one

PIPELINE_RESULTS = RESULTS / "pipeline.json"

WRITES_BUDGET_PER_MIN = 6.0  # setpoint writes per pack per minute, steady state (issue 14)
# (label, result key, the aim at overload): what the side-by-side table shows.
COLUMNS = (
    ("writes/pack/min", "writes_per_pack_per_min", f"≤ {WRITES_BUDGET_PER_MIN:g}"),
    ("busiest pack", "writes_per_pack_per_min_max", f"≤ {WRITES_BUDGET_PER_MIN:g}"),
    ("reconnects", "reconnects", "0"),
    ("late answers", "late_answers", "0"),
    ("answers waiting", "answers_waiting", "> 0 shows the case"),
    ("not-good node-cycles", "not_good_node_cycles", "0"),
    ("overruns", "overruns", ""),
    ("cycles", "cycles", ""),
    ("cycle p50 ms", "cycle_p50_ms", ""),
    ("cycle p99 ms", "cycle_p99_ms", ""),
    ("period at end ms", "cycle_period_ms_at_end", "stretched"),
    ("core µs/pack-cycle", "cpu_us_per_pack_cycle", ""),
    ("simulators % core", "simulators_cpu_pct_of_one_core", ""),
)


def measured_sustainable() -> int | None:
    """The largest N the last bench.pipeline run carried with no overrun, if it wrote one."""
    try:
        found = json.loads(PIPELINE_RESULTS.read_text()).get("largest_n_without_overrun")
    except (OSError, ValueError):
        return None
    return found if isinstance(found, int) else None


def verdict(result: Mapping[str, Any]) -> dict[str, bool | None]:
    """Each aim of the overload run: met, missed, or None when the counter was not known."""

    def zero(key: str) -> bool | None:
        return None if result.get(key) is None else result[key] == 0

    return {
        "writes_within_budget": result["writes_per_pack_per_min_max"] <= WRITES_BUDGET_PER_MIN,
        "no_reconnects": zero("reconnects"),
        "no_timeouts_of_answering_packs": zero("late_answers"),
        "no_not_good_node_cycles": result["not_good_node_cycles"] == 0,
    }


def ratio(loaded: Any, steady: Any) -> str:
    if not isinstance(loaded, int | float) or not isinstance(steady, int | float) or steady == 0:
        return "-"
    return f"{loaded / steady:.2f}"


def print_side_by_side(runs: Sequence[Mapping[str, Any]]) -> None:
    print("\nside by side:", flush=True)
    head = f"{'':<22}" + "".join(f"{str(run['packs']) + ' packs':>14}" for run in runs)
    print(head + (f"{'ratio':>8}" if len(runs) == 2 else "") + "  aim at overload", flush=True)
    for label, key, aim in COLUMNS:
        values = [run.get(key) for run in runs]
        line = f"{label:<22}" + "".join(f"{'-' if v is None else v:>14}" for v in values)
        if len(runs) == 2:
            line += f"{ratio(values[1], values[0]):>8}"
        print(f"{line}  {aim}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sustainable",
        type=int,
        help="packs the gateway carries with no overrun (default: bench/results/pipeline.json's largest)",
    )
    parser.add_argument("--factor", type=float, default=2.0, help="overload = factor × sustainable")
    parser.add_argument("--seconds", type=float, help="window per run (default 120)")
    parser.add_argument("--request-step-s", type=float, default=20.0, help="site request step (20 s)")
    parser.add_argument("--pollers", type=int, default=1, help="site.pollers (default 1)")
    parser.add_argument("--overload-only", action="store_true", help="skip the run at N")
    parser.add_argument("--packs-per-sim", type=int, default=PACKS_PER_SIMULATOR)
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 5, 5 s windows")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sustainable = args.sustainable or (5 if args.quick else measured_sustainable())
    if sustainable is None:
        parser.error(
            f"--sustainable N is needed: {PIPELINE_RESULTS} names no N without overrun "
            "(run `python -m bench.pipeline --json` first, or give the N)"
        )
    seconds = args.seconds or (5.0 if args.quick else 120.0)
    plan = Plan(
        seconds,
        0.0,
        args.packs_per_sim,
        ADAPTERS,
        pollers=args.pollers,
        request_step_s=args.request_step_s,
    )
    about = machine()
    overloaded = round(sustainable * args.factor)
    sizes = [overloaded] if args.overload_only else [sustainable, overloaded]
    print(
        f"overload: {about['cpus']} CPU(s), load average {about['load_average_at_start']}; "
        f"{' then '.join(map(str, sizes))} packs, {seconds:g} s window each",
        flush=True,
    )
    runs = []
    for packs in sizes:
        try:
            runs.append(run_one(packs, plan))
        except RuntimeError as error:
            print(f"{packs} packs failed: {error}", flush=True)
            return 1
        print_row(runs[-1])
    print_side_by_side(runs)
    checks = verdict(runs[-1])
    print(f"at {overloaded} packs: {checks}", flush=True)
    if args.json is not None:
        document = {
            "benchmark": "overload",
            "method": __doc__,
            "machine": about,
            "quick": args.quick,
            "sustainable": sustainable,
            "factor": args.factor,
            "window_s": seconds,
            "request_step_s": args.request_step_s,
            "pollers": args.pollers,
            "writes_budget_per_pack_per_min": WRITES_BUDGET_PER_MIN,
            "results": runs,
            "overload_checks": checks,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
