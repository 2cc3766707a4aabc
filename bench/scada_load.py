"""SCADA load: what masters reading hard cost the gateway, and whether the control loop keeps its cycle.

    python -m bench.scada_load [--packs 200 500] [--polls 10] [--seconds 15] [--clients 2] [--quick]
                               [--json bench/results/scada_load.json]

Method, per N: the full pipeline of bench.pipeline (simulators pinned to CPU 1, the recording gateway
with the DNP3 outstation and the IEC 61850 server pinned to CPU 0, site request stepping every 10 s).
This process is the SCADA side, on CPU 1 with the simulators, in three phases, side by side in one run:
1. baseline: `--seconds` with no master connected;
2. DNP3: `--polls` integrity polls (class 0 of the full map) back to back with the independent master
   dnp3py (bench.dnp3_bench's poll code): wall time per poll, fragments, points, and this process's
   CPU per poll (dnp3py is pure Python: its parsing is most of the wall time; the rest is the
   outstation and the wire);
3. MMS: `--clients` libiec61850 client processes (tests/northbound/iec61850/client.py `hammer`) read every
   logical device's ZBAT1 measurements back to back for `--seconds`: MMS reads per second in total.
For each phase the gateway's cycle p50/p99/max and overruns over the cycles that ended inside it.
Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from bench.dnp3_bench import _polls
from bench.pipeline import (
    LOOPBACK,
    PACKS_PER_SIMULATOR,
    cpu_split,
    cycle_summary,
    free_port,
    gateway_process,
    machine,
    window_samples,
)
from bench.poll_scale import Simulators

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "northbound" / "iec61850" / "client.py"
CONNECT_S = 2.0  # the hammer clients connect and list the devices before they read


def hammer(port: int, clients: int, seconds: float) -> tuple[dict[str, Any], tuple[float, float]]:
    """MMS reads by `clients` processes for `seconds`; the window in which they all read."""
    command = [sys.executable, str(CLIENT), "--port", str(port), "hammer", "--seconds", str(seconds)]
    launched = time.monotonic()
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(clients)
    ]
    reads = errors = 0
    for process in processes:
        out, _ = process.communicate(timeout=seconds + 120)
        documents = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        last = documents[-1] if documents else {}
        if "reads" not in last:
            raise RuntimeError(f"an MMS client failed: {out.strip() or process.returncode}")
        reads += int(last["reads"])
        errors += int(last.get("errors", 0))
    result = {
        "clients": clients,
        "reads_per_s": round(reads / seconds, 1),
        "read_errors": errors,
        "read": "one MMS read of <device>/ZBAT1 [MX] per logical device, back to back",
    }
    return result, (launched + CONNECT_S, launched + seconds)


def phase(samples: Sequence[dict[str, Any]], window: tuple[float, float], packs: int) -> dict[str, Any]:
    summary = cycle_summary(window_samples(samples, window), packs)
    keys = ("cycles", "cycle_p50_ms", "cycle_p99_ms", "cycle_max_ms", "overruns")
    return {key: summary[key] for key in keys} | {"publish_p99_ms": summary["steps_ms"]["publish"]["p99_ms"]}


def run_one(packs: int, polls: int, seconds: float, clients: int) -> dict[str, Any]:
    gateway_cpus, other_cpus = cpu_split()
    if other_cpus:
        os.sched_setaffinity(0, other_cpus)
    with (
        tempfile.TemporaryDirectory(prefix="socgw-scada-load-") as temp,
        Simulators(packs, PACKS_PER_SIMULATOR, other_cpus) as simulators,
    ):
        # Picked once the simulators listen, so their ports cannot take these.
        dnp3_port, mms_port = free_port(), free_port()
        northbound = {
            "dnp3": {"host": LOOPBACK, "port": dnp3_port},
            "iec61850": {"host": LOOPBACK, "port": mms_port},
        }
        with gateway_process(Path(temp), simulators.endpoints, northbound, gateway_cpus) as gateway:
            baseline = (time.monotonic(), time.monotonic() + seconds)
            time.sleep(seconds)
            polled_from, cpu_before = time.monotonic(), time.process_time()
            dnp3 = uvloop.run(_polls(dnp3_port, polls))
            dnp3["master_cpu_per_poll_ms"] = round((time.process_time() - cpu_before) * 1000.0 / polls, 1)
            dnp3_window = (polled_from, time.monotonic())
            mms, mms_window = hammer(mms_port, clients, seconds)
    samples = gateway.result()["samples"]
    return {
        "packs": packs,
        "dnp3_integrity_poll": {
            "polls": polls,
            "median_ms": round(dnp3["poll_median_ms"], 1),
            "p90_ms": round(dnp3["poll_p90_ms"], 1),
            "fragments": dnp3["fragments"],
            "static_points": dnp3["static_points"],
            "master_cpu_per_poll_ms": dnp3["master_cpu_per_poll_ms"],
        },
        "mms": mms,
        "gateway_cycle": {
            "baseline": phase(samples, baseline, packs),
            "during_dnp3_polls": phase(samples, dnp3_window, packs),
            "during_mms_reads": phase(samples, mms_window, packs),
        },
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packs", type=int, nargs="+", help="fleet sizes (default 200 500)")
    parser.add_argument("--polls", type=int, help="integrity polls per N (default 10)")
    parser.add_argument("--seconds", type=float, help="baseline and MMS phases (default 15 s each)")
    parser.add_argument("--clients", type=int, default=2, help="MMS reader processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 10, 2 polls, 3 s phases")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    packs = args.packs or ([10] if args.quick else [200, 500])
    polls = args.polls or (2 if args.quick else 10)
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    about = machine()
    print(f"scada_load: {about['cpus']} CPU(s), load average {about['load_average_at_start']}", flush=True)
    results = []
    for n in packs:
        result = run_one(n, polls, seconds, args.clients)
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"benchmark": "scada_load", "method": __doc__, "machine": about, "quick": args.quick}
        args.json.write_text(json.dumps({**document, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
