"""Collect bench/results/*.json into bench/results/summary.md (tables, targets) and PNG plots.

    python -m bench.report [--results bench/results]

Reads what the benchmarks wrote (pipeline, freshness, scada_load, balancing, balancing-random,
poll_scale, sim_capacity); a missing file leaves its section out and says so. Nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
CYCLE_MS = 100.0
STRATEGIES = (("socgw", "socgw"), ("equal_split", "equal split"), ("soc_proportional", "∝ SOC"))


def load(results: Path, name: str) -> Any:
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def table(header: Sequence[str], rows: Sequence[Sequence[object]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


# --- plots ---------------------------------------------------------------------------------------


def plot_pipeline(results: Sequence[dict[str, Any]], out: Path) -> None:
    packs = [r["packs"] for r in results]
    figure, (cycle_axes, cpu_axes) = plt.subplots(1, 2, figsize=(11, 4))
    cycle_axes.plot(packs, [r["cycle_p50_ms"] for r in results], "o-", label="p50")
    cycle_axes.plot(packs, [r["cycle_p99_ms"] for r in results], "s-", label="p99")
    cycle_axes.axhline(CYCLE_MS, color="red", linestyle="--", label="cycle (100 ms)")
    cycle_axes.set(
        xscale="log", yscale="log", xlabel="packs", ylabel="cycle (ms)", title="Full pipeline cycle"
    )
    cycle_axes.legend()
    cpu_axes.plot(packs, [r["gateway_cpu_pct"] for r in results], "o-", color="tab:green")
    cpu_axes.axhline(100.0, color="red", linestyle="--", label="one core")
    cpu_axes.set(xscale="log", xlabel="packs", ylabel="gateway CPU (% of one core)", title="Gateway CPU")
    twin = cpu_axes.twinx()
    twin.plot(packs, [r["cpu_us_per_pack_cycle"] for r in results], "s--", color="tab:purple")
    twin.set_ylabel("µs CPU per pack-cycle (dashed)")
    cpu_axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


FRESHNESS_PATHS = (
    ("dnp3_unsolicited", "DNP3 unsolicited"),
    ("iec61850_report", "IEC 61850 report"),
    ("mqtt_ddata", "MQTT DDATA"),
)


def freshness_variant(result: dict[str, Any]) -> str:
    """A freshness result's configuration beside its N, unless it is the gateway as it is."""
    variant = result.get("variant", "gateway")
    return "" if variant == "gateway" else f" ({variant})"


def plot_freshness(results: Sequence[dict[str, Any]], out: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    labels, p50, p99 = [], [], []
    for result in results:
        for key, name in FRESHNESS_PATHS:
            if key not in result:  # MQTT was measured from bench.freshness's third client on
                continue
            labels.append(f"{name}\nN={result['packs']}{freshness_variant(result)}")
            p50.append(result[key].get("p50_ms", 0.0))
            p99.append(result[key].get("p99_ms", 0.0))
    positions = range(len(labels))
    axes.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50")
    axes.bar([p + 0.2 for p in positions], p99, width=0.4, label="p99")
    axes.axhline(CYCLE_MS + 20.0, color="red", linestyle="--", label="target (cycle + 20 ms)")
    axes.set_xticks(list(positions), labels)
    axes.set(ylabel="register change → decoded (ms)", title="Freshness")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_random(fleets: Sequence[dict[str, Any]], out: Path) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    data = [[f["results"][key]["recovered_first_bound_pct"] for f in fleets] for key, _ in STRATEGIES]
    axes.boxplot(data, whis=(0, 100))
    axes.set_xticks(range(1, len(STRATEGIES) + 1), [name for _, name in STRATEGIES])
    axes.axhline(99.0, color="green", linestyle="--", label="99 % target")
    axes.axhline(80.0, color="red", linestyle=":", label="80 %")
    axes.set(ylabel="% of usable energy before first pack at reserve", title=f"{len(fleets)} random fleets")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


# --- sections ------------------------------------------------------------------------------------


def pipeline_section(document: dict[str, Any], out_dir: Path) -> tuple[list[str], list[str]]:
    results = document["results"]
    plot_pipeline(results, out_dir / "pipeline-cycle.png")
    lines = [
        "## 1. Full pipeline at scale (`python -m bench.pipeline`)",
        "",
        f"Paced {document['cycle_ms']:g} ms cycle: poll → dispatch → write → DNP3 + IEC 61850 publish, "
        f"{document['window_s']:g} s window per N, gateway process pinned to CPU 0, simulators to CPU 1. "
        "Cycle = poll start to publish end; overrun = the cycle ended past its deadline.",
        "",
    ]
    rows = [
        (
            r["packs"],
            r["cycles"],
            r["cycle_p50_ms"],
            r["cycle_p99_ms"],
            r["cycle_max_ms"],
            f"{r['overruns']} / {r['cycles']}",
            r["cpu_us_per_pack_cycle"],
            r["gateway_cpu_pct"],
            r["rss_mib"],
            r["writes_per_pack_per_min"],
            r["not_good_node_cycles"],
            " · ".join(f"{t['cycle_p99_ms']:.0f} ({t['overruns']})" for t in r.get("thirds", ())),
        )
        for r in results
    ]
    header = ["packs", "cycles", "p50 ms", "p99 ms", "max ms", "overruns", "CPU µs/pack-cycle"]
    header += ["gateway CPU % of a core", "RSS MiB", "writes/pack/min", "node-cycles not good"]
    header += ["p99 ms (overruns) per third of the window"]
    lines += table(header, rows)
    lines += ["Per step (p50 / p99 ms):", ""]
    steps = ("poll", "dispatch", "write", "publish")
    lines += table(
        ["packs", *steps],
        [
            (r["packs"], *(f"{r['steps_ms'][s]['p50_ms']} / {r['steps_ms'][s]['p99_ms']}" for s in steps))
            for r in results
        ],
    )
    lines += ["CPU per thread over the window (% of one core):", ""]
    names = sorted({name for r in results for name in r["thread_cpu_pct"]})
    lines += table(
        ["packs", *names], [(r["packs"], *(r["thread_cpu_pct"].get(n, 0.0) for n in names)) for r in results]
    )
    lines += ["![cycle and CPU vs N](pipeline-cycle.png)", ""]
    fitting = document.get("largest_n_without_overrun")
    profiled = [r for r in results if "profile" in r]
    fits = [r for r in profiled if r["overruns"] == 0]
    chosen = fits[-1] if fits else None
    if chosen is not None:
        why = (
            "largest N without an overrun"
            if chosen["packs"] == fitting
            else "largest profiled N without an overrun"
        )
        lines += profile_lines(chosen, why)
    if profiled and chosen is not profiled[-1]:
        lines += profile_lines(profiled[-1], "the largest N measured")
    if "note" in document:
        lines += [f"Note: {document['note']}", ""]
    for failure in document.get("failed", []):
        lines += [f"N = {failure['packs']} did not run: {failure['error']}", ""]
    return lines, pipeline_targets(results, fitting)


def variant_label(variant: dict[str, Any]) -> str:
    """What a side-by-side pipeline run changed: the adapters, or the IEC 61850 map it forced."""
    if variant.get("iec61850_map"):
        return f"IEC 61850 map `{variant['iec61850_map']}`"
    return " + ".join(variant.get("northbound") or ["no northbound adapter"]) + " only"


def variant_section(both: dict[str, Any], variant: dict[str, Any]) -> list[str]:
    """A side-by-side pipeline run (other adapters, or another map), next to the full one, N by N."""
    label = variant_label(variant)
    full = {r["packs"]: r for r in both["results"]}
    rows = []
    for r in variant["results"]:
        f = full.get(r["packs"])
        if f is None:
            continue
        rows.append(
            (
                r["packs"],
                f"{f['cycle_p99_ms']} / {f['overruns']} of {f['cycles']} / {f['gateway_cpu_pct']}",
                f"{r['cycle_p99_ms']} / {r['overruns']} of {r['cycles']} / {r['gateway_cpu_pct']}",
            )
        )
    if not rows:
        return []
    return [
        f"The same pipeline with {label} (a separate run), next to the full one (maps as advised for the "
        "fleet size): cycle p99 ms / overruns of cycles / gateway CPU % of a core:",
        "",
        *table(["packs", "DNP3 + IEC 61850", label], rows),
    ]


def profile_lines(result: dict[str, Any], why: str) -> list[str]:
    profile = result["profile"]
    lines = [
        f"Where the loop thread's time goes at N = {result['packs']}{f' ({why})' if why else ''}: "
        f"cProfile of the main (asyncio) thread for {profile['profiled_s']:.1f} s of own time, after the "
        "measured window:",
        "",
    ]
    lines += table(["area", "% of own time"], list(profile["areas_pct"].items()))
    lines += table(
        ["function (top 12 by own time)", "calls", "own s", "% own"],
        [(f"`{f['function']}`", f["calls"], f["own_s"], f["own_pct"]) for f in profile["top_own_time"][:12]],
    )
    return lines


def pipeline_reading(results: Sequence[dict[str, Any]], variant: Any) -> list[str]:
    """Where the core goes at the first N that overran, from the measured thread split and profile."""
    over = next((r for r in results if r["overruns"] > 0), None)
    if over is None:
        return []
    threads = over["thread_cpu_pct"]
    loop = threads.get("main (asyncio loop)", 0.0)
    updater = threads.get("socgw-iec61850-updater", 0.0)
    lines = [
        f"Reading it: at N = {over['packs']} the gateway used {over['gateway_cpu_pct']} % of its core, "
        f"{loop} % in the asyncio loop (poll, dispatch, write, publish) and {updater} % in the IEC 61850 "
        "updater thread, which shares that core and preempts the loop. Southbound polling is "
        f"{over['steps_ms']['poll']['p50_ms']} ms of the {over['cycle_p50_ms']} ms median cycle.",
    ]
    profile = next((r["profile"] for r in reversed(results) if "profile" in r), None)
    if profile is not None:
        areas = profile["areas_pct"]
        southbound = sum(
            areas.get(a, 0.0)
            for a in (
                "pymodbus (Modbus client)",
                "socgw southbound (sessions, codec use)",
                "socgw profile codec",
            )
        )
        lines[-1] += (
            f" In the loop, {southbound:.0f} % of the own time is Modbus (pymodbus, the sessions and the "
            f"profile codec) and {areas.get('asyncio', 0.0):.0f} % asyncio."
        )
    if variant is not None:
        same = next((r for r in variant["results"] if r["packs"] == over["packs"]), None)
        if same is not None:
            verdict = (
                f"still overran {same['overruns']} times in {same['cycles']} cycles (p99 "
                f"{same['cycle_p99_ms']} ms): the loop's own work alone exceeds the cycle at times"
                if same["overruns"]
                else f"did not overrun in {same['cycles']} cycles (p99 {same['cycle_p99_ms']} ms)"
            )
            lines[-1] += (
                f" Without the IEC 61850 server the same N took {same['gateway_cpu_pct']} % of the core and "
                f"{verdict}."
            )
    return [*lines, ""]


def pipeline_targets(results: Sequence[dict[str, Any]], fitting: int | None) -> list[str]:
    by_n = {r["packs"]: r for r in results}
    lines = []
    at_500 = by_n.get(500)
    if at_500 is not None:
        met = at_500["overruns"] == 0 and at_500["cycle_p99_ms"] < CYCLE_MS
        lines.append(
            f"N = 500 at 100 ms, p99 under the cycle, no overruns, one core: {verdict(met)}: p99 "
            f"{at_500['cycle_p99_ms']} ms, {at_500['overruns']} overruns in {at_500['cycles']} cycles, "
            f"gateway {at_500['gateway_cpu_pct']} % of one core."
        )
    first_over = next((r["packs"] for r in results if r["overruns"] > 0), None)
    lines.append(
        f"Largest N measured without an overrun: {fitting}; first overrun at N = {first_over}."
        if first_over is not None
        else f"No overrun up to N = {results[-1]['packs']}."
    )
    return lines


def freshness_section(document: dict[str, Any], out_dir: Path) -> tuple[list[str], list[str]]:
    results = document["results"]
    plot_freshness(results, out_dir / "freshness.png")
    lines = [
        "## 2. Freshness (`python -m bench.freshness`)",
        "",
        "Register change inside the simulator (pack-01's SOC 40 ↔ 60 %) → value decoded by the DNP3 master "
        "dnp3py (unsolicited), by a libiec61850 client (pack-01's report, the map's buffer time) and by "
        "Eclipse Tahu's Sparkplug decoder (DDATA through Mosquitto), the same change timed for all, at a "
        "random phase of the cycle; `socgw run` in its own process.",
        "",
    ]
    rows = []
    for r in results:
        for key, name in FRESHNESS_PATHS:
            if key not in r:
                continue
            d = r[key]
            rows.append(
                (
                    f"{r['packs']}{freshness_variant(r)}",
                    name,
                    d.get("samples", 0),
                    d.get("p50_ms"),
                    d.get("p90_ms"),
                    d.get("p99_ms"),
                    d.get("max_ms"),
                )
            )
    lines += table(["packs", "path", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows, right_from=2)
    lines += ["![freshness](freshness.png)", ""]
    targets = []
    for r in results:
        for key, name in FRESHNESS_PATHS:
            p99 = r.get(key, {}).get("p99_ms")
            if p99 is not None:
                targets.append(
                    f"Register change → {name} p99 within one cycle + 20 ms (120 ms) at N = "
                    f"{r['packs']}{freshness_variant(r)}: "
                    f"{verdict(p99 <= CYCLE_MS + 20.0)}: {p99} ms (p99 of {r[key]['samples']} samples)."
                )
    return lines, targets


def scada_section(document: dict[str, Any]) -> tuple[list[str], list[str]]:
    results = document["results"]
    rows: list[tuple[object, ...]]
    lines = [
        "## 3. SCADA load (`python -m bench.scada_load`)",
        "",
        "Integrity poll (class 0, the full map) with dnp3py back to back, then MMS readers hammering every "
        "pack's ZBAT1 [MX], with the gateway's cycle measured in each phase of the same run.",
        "",
    ]
    rows = []
    for r in results:
        poll = r["dnp3_integrity_poll"]
        points = sum(poll["static_points"].values())
        rows.append(
            (
                r["packs"],
                points,
                poll["fragments"],
                poll["median_ms"],
                poll["p90_ms"],
                poll["master_cpu_per_poll_ms"],
            )
        )
    header = [
        "packs",
        "static points (AI+BI+AO+BO)",
        "fragments",
        "poll median ms",
        "poll p90 ms",
        "master CPU ms/poll",
    ]
    lines += table(header, rows)
    rows = []
    for r in results:
        for phase, name in (
            ("baseline", "no SCADA"),
            ("during_dnp3_polls", "DNP3 polls"),
            ("during_mms_reads", "MMS reads"),
        ):
            c = r["gateway_cycle"][phase]
            extra = (
                f"{r['mms']['reads_per_s']} reads/s ({r['mms']['clients']} clients)"
                if phase == "during_mms_reads"
                else ""
            )
            rows.append(
                (
                    r["packs"],
                    name,
                    c["cycles"],
                    c["cycle_p50_ms"],
                    c["cycle_p99_ms"],
                    c["cycle_max_ms"],
                    c["overruns"],
                    extra,
                )
            )
    lines += table(
        ["packs", "phase", "cycles", "p50 ms", "p99 ms", "max ms", "overruns", "MMS"], rows, right_from=2
    )
    targets = []
    for r in results:
        if r["packs"] == 500:
            median = r["dnp3_integrity_poll"]["median_ms"]
            targets.append(
                f"Full-map integrity poll at N = 500 under 100 ms: {verdict(median < 100.0)}: "
                f"median {median} ms with dnp3py, of which "
                f"{r['dnp3_integrity_poll']['master_cpu_per_poll_ms']} ms is the master's own CPU."
            )
    return lines, targets


RANDOM_METRICS = (
    ("recovered_first_bound_pct", "% delivered before the first reserve"),
    ("first_bound_spread_pct", "SOC spread at the first reserve (%)"),
    ("writes_per_node_per_min", "writes/node/min"),
)


def miss_reason(fleet: dict[str, Any]) -> str:
    """Why socgw fell short on a random fleet, from what the run recorded."""
    offline = fleet["results"]["socgw"]["first_bound_offline"]
    without = fleet["socgw_without_dropout_pct"]
    undisturbed = f"{without:.1f} % without the dropout"
    if offline:
        return f"{', '.join(offline)} offline when the first pack reached reserve; {undisturbed}"
    return undisturbed


def balancing_section(scenarios: Any, random: Any, out_dir: Path) -> tuple[list[str], list[str]]:
    lines = ["## 4. Balancing quality (`python -m bench.balancing`)", ""]
    targets = []
    if scenarios is not None:
        rows = []
        for s in scenarios["scenarios"]:
            res = s["results"]
            rows.append(
                (
                    s["title"],
                    *(round(res[key]["recovered_first_bound_pct"], 1) for key, _ in STRATEGIES),
                    *(round(res[key]["final_spread_pct"], 2) for key, _ in STRATEGIES),
                    round(res["socgw"]["writes_per_node_per_min"], 2),
                )
            )
            ours, equal = (
                res["socgw"]["recovered_first_bound_pct"],
                res["equal_split"]["recovered_first_bound_pct"],
            )
            ceiling = ""
            if ours < 99.0:
                best = max(res[key]["recovered_end_pct"] for key, _ in STRATEGIES)
                ceiling = (
                    f"; no strategy recovered more than {best:.1f} % by the end of its run, when the fleet "
                    "could no longer serve the request"
                )
            targets.append(
                f"Scenario {s['title']}: socgw ≥ 99 % {verdict(ours >= 99.0)} ({ours:.1f} %), "
                f"equal split ≤ 80 % {'yes' if equal <= 80.0 else 'no'} ({equal:.1f} %){ceiling}."
            )
        header = [
            "scenario",
            *(f"% delivered: {n}" for _, n in STRATEGIES),
            *(f"final spread %: {n}" for _, n in STRATEGIES),
        ]
        lines += [
            "Energy delivered before the first pack reaches reserve, % of usable energy above reserve:",
            "",
        ]
        lines += table([*header, "writes/node/min (socgw)"], rows)
    if random is not None:
        fleets = random["fleets"]
        plot_random(fleets, out_dir / "balancing-random-distribution.png")
        rows = []
        for metric, label in RANDOM_METRICS:
            for key, name in STRATEGIES:
                values = sorted(f["results"][key][metric] for f in fleets)
                deciles = statistics.quantiles(values, n=10)
                rows.append(
                    (
                        label,
                        name,
                        *(round(v, 1) for v in (values[0], deciles[0], statistics.median(values))),
                        *(round(v, 1) for v in (deciles[-1], values[-1])),
                    )
                )
        lines += [
            f"{len(fleets)} random fleets (seed {random.get('seed')}): capacities 5–200 kWh, SOC 20–90 %, "
            "SOH 70–100 %, temperatures, one dropout each; every run to its end:",
            "",
        ]
        lines += table(["metric", "strategy", "min", "p10", "median", "p90", "max"], rows)

        def headline(fleet: dict[str, Any], key: str) -> float:
            return float(fleet["results"][key]["recovered_first_bound_pct"])

        below = [f for f in fleets if headline(f, "socgw") < 99.0]
        equal_ok = sum(1 for f in fleets if headline(f, "equal_split") <= 80.0)
        misses = "; ".join(f"{f['name']} {headline(f, 'socgw'):.1f} % ({miss_reason(f)})" for f in below)
        targets.append(
            f"Random fleets: socgw ≥ 99 % in {len(fleets) - len(below)} of {len(fleets)} "
            f"({verdict(not below)}{f': {misses}' if misses else ''}); equal split ≤ 80 % in {equal_ok} "
            f"of {len(fleets)}."
        )
        lines += ["![random fleets](balancing-random-distribution.png)", ""]
    return lines, targets


def southbound_section(poll_scale: Any, sim_capacity: Any) -> list[str]:
    lines = ["## Southbound alone (`python -m bench.poll_scale`, `python -m bench.sim_capacity`)", ""]
    if poll_scale is not None:
        lines += table(
            ["units", "p50 ms", "p99 ms", "overruns", "CPU µs/unit-cycle"],
            [
                (
                    r["units"],
                    r["active_p50_ms"],
                    r["active_p99_ms"],
                    f"{r['overruns']} / {r['cycles']}",
                    r["cpu_us_per_unit_cycle"],
                )
                for r in poll_scale
            ],
        )
    if sim_capacity is not None:
        lines += table(
            ["packs per simulator", "achieved req/s", "simulator CPU %", "µs/request", "p99 ms"],
            [
                (
                    r["packs"],
                    round(r["achieved_rps"]),
                    round(r["sim_cpu_pct"], 1),
                    round(r["sim_cpu_us_per_request"], 1),
                    round(r["latency_p99_ms"], 2),
                )
                for r in sim_capacity
            ],
        )
    return lines


def machine_lines(documents: Sequence[Any]) -> list[str]:
    machine = next((d["machine"] for d in documents if isinstance(d, dict) and "machine" in d), None)
    if machine is None:
        return []
    loads = [
        d["machine"]["load_average_at_start"][0] for d in documents if isinstance(d, dict) and "machine" in d
    ]
    return [
        f"Machine: {machine['cpus']} vCPU {machine['cpu_model']}, {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}, Python {machine['python']}; shared with other jobs (1-minute load average "
        f"at the start of each benchmark: {', '.join(f'{x:.2f}' for x in loads)}).",
        "",
    ]


def run_lines(run: Any) -> list[str]:
    """How long the last `make bench` took, from the record bench/__main__.py keeps."""
    if not isinstance(run, dict) or not run.get("steps"):
        return []
    steps = ", ".join(f"{step['name']} {step['seconds'] / 60.0:.1f}" for step in run["steps"])
    failed = [step["name"] for step in run["steps"] if step["exit"] != 0]
    return [
        f"This `make bench` (started {run['started_utc']}) took {run['total_s'] / 60.0:.1f} minutes before "
        f"this report (per benchmark, minutes: {steps})"
        + (f"; failed: {', '.join(failed)}." if failed else "."),
        "",
    ]


def summary(results: Path) -> str:
    pipeline, freshness, scada = (load(results, n) for n in ("pipeline", "freshness", "scada_load"))
    variant, iec_default = load(results, "pipeline-variant"), load(results, "pipeline-iec61850-default")
    balancing, random = load(results, "balancing"), load(results, "balancing-random")
    lines = [
        "# Performance",
        "",
        "Reproduce with `make bench` (all of `bench/`; results in `bench/results/`), or one benchmark with "
        "`python -m bench.<name> [--quick]`. Each benchmark's JSON carries its method.",
        "",
        *run_lines(load(results, "run")),
        *machine_lines([pipeline, freshness, scada]),
    ]
    targets: list[str] = []
    sections: list[tuple[Any, Callable[[], tuple[list[str], list[str]]]]] = [
        (pipeline, lambda: pipeline_section(pipeline, results)),
        (pipeline and variant, lambda: (variant_section(pipeline, variant), [])),
        (pipeline and iec_default, lambda: (variant_section(pipeline, iec_default), [])),
        (pipeline, lambda: (pipeline_reading(pipeline["results"], variant), [])),
        (freshness, lambda: freshness_section(freshness, results)),
        (scada, lambda: scada_section(scada)),
        (balancing or random, lambda: balancing_section(balancing, random, results)),
    ]
    body: list[str] = []
    for document, render in sections:
        if document is None:
            continue
        section, found = render()
        body += section
        targets += found
    lines += ["## Targets", ""] + [f"- {t}" for t in targets] + [""]
    lines += body
    poll_scale, sim_capacity = load(results, "poll_scale"), load(results, "sim_capacity")
    if poll_scale is not None or sim_capacity is not None:
        lines += southbound_section(poll_scale, sim_capacity)
    ours = (("pipeline", pipeline), ("freshness", freshness), ("scada_load", scada))
    quick = [name for name, document in ours if document is not None and document.get("quick")]
    if quick:
        lines += [f"Smoke-run figures (--quick), not for quoting: {', '.join(quick)}.", ""]
    missing = [
        n for n, d in (("pipeline", pipeline), ("freshness", freshness), ("scada_load", scada)) if d is None
    ]
    if missing:
        lines += [f"Not run: {', '.join(missing)}.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = summary(args.results)
    (args.results / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
