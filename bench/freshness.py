"""Freshness: from a register change inside the simulator to the value decoded by SCADA.

    python -m bench.freshness [--packs 10 200] [--samples 60] [--quick] [--json bench/results/freshness.json]

Method, per N: the simulator runs in this process (`FleetThread`, N microstore/mp2000 packs at real-time
speed) so the bench can change a pack's state directly; this process and the SCADA clients are pinned
to CPU 1, the gateway to CPU 0 (the recording gateway of bench.pipeline: Engine + DNP3 outstation with
unsolicited responses + IEC 61850 server, site request stepping every 10 s). Two clients watch pack-01
at the same time: the independent DNP3 master dnp3py (unsolicited enabled; its handler stamps every
analog value when decoded) and a libiec61850 client process (tests/northbound/iec61850/client.py
`report`) with pack-01's buffered report block `brcbMeas` enabled (buffer time 100 ms, the map's
default); each report line is stamped when this process reads it from the client's stdout. Each
sample sets pack-01's SOC to 40 % or 60 % in turn (far beyond every deadband) and takes the time until
the DNP3 master decoded AI961
(bank 1 SOC, 0.1 %) with the new value, and until a report carried ZBAT1.Soc with it. Between samples a
random pause of 0.3-0.7 s puts the change at a random phase of the 100 ms cycle. What is measured: up to
one cycle of waiting for the next poll, the poll, dispatch and write, the publish, then DNP3: the
outstation's event and unsolicited response, the master's parsing; IEC 61850: the updater thread's
write into the model, the report buffer time, the report, the client's decoding and its stdout pipe.
The gateway's cycle timings during the samples are reported too. Tests never assert speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from bench.dnp3_bench import BANK1_SOC, master
from bench.pipeline import (
    LOOPBACK,
    cpu_split,
    cycle_summary,
    free_port,
    gateway_process,
    machine,
    window_samples,
)
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import uniform_fleet
from gateway.timing import percentile

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "northbound" / "iec61850" / "client.py"
WATCHED = "pack-01"
REPORT_BLOCK = "SOCGWPACK_01/LLN0.BR.brcbMeas"
SAMPLE_TIMEOUT_S = 5.0
TARGETS_PCT = (40.0, 60.0)


def first_float(value: Any) -> float | None:
    """The first number in a report member (an MV is [[mag.f], q, t]); None when left out."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        for item in value:
            found = first_float(item)
            if found is not None:
                return found
    return None


@dataclass
class ReportClient:
    """A libiec61850 client process with one report block enabled; its reports stamped on arrival."""

    process: subprocess.Popen[str]
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (perf_counter, ZBAT1.Soc)
    ready: threading.Event = field(default_factory=threading.Event)
    problem: str = ""

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            arrived = time.perf_counter()
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if "ready" in document:
                    self.ready.set()
                elif document.get("values"):
                    soc = first_float(document["values"][0])
                    if soc is not None:
                        self.arrivals.append((arrived, soc))
                elif "error" in document or "connect_error" in document:
                    self.problem = line.strip()
                    self.ready.set()


@contextlib.contextmanager
def report_client(port: int, seconds: float) -> Iterator[ReportClient]:
    command = [
        sys.executable,
        str(CLIENT),
        "--port",
        str(port),
        "report",
        REPORT_BLOCK,
        "--seconds",
        str(seconds),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    client = ReportClient(process)
    reader = threading.Thread(target=client.read, name="report-reader", daemon=True)
    reader.start()
    try:
        if not client.ready.wait(30.0) or client.problem:
            raise RuntimeError(f"the IEC 61850 report client did not start: {client.problem or 'timeout'}")
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)


async def sample_latencies(
    dnp3_port: int, fleet: FleetThread, reports: ReportClient, samples: int
) -> tuple[list[float], list[float], int]:
    """(DNP3 ms, IEC 61850 ms, samples where one of them did not arrive in time)."""
    rng = random.Random(11)
    handler, runner = master(dnp3_port)
    await runner.open()
    dnp3_ms: list[float] = []
    iec_ms: list[float] = []
    missed = 0
    try:
        await runner.integrity_poll()
        await runner.enable_unsolicited()
        for sample in range(samples):
            target = TARGETS_PCT[sample % 2]
            handler.arrivals.clear()
            reports.arrivals.clear()
            started = time.perf_counter()
            fleet.update_state(WATCHED, soc_pct=target)
            deadline = started + SAMPLE_TIMEOUT_S
            dnp3_at = iec_at = None
            while (dnp3_at is None or iec_at is None) and time.perf_counter() < deadline:
                await runner.listen_unsolicited(timeout=0.02)
                dnp3_at = dnp3_at or next(
                    (
                        t
                        for t, index, value in handler.arrivals
                        if index == BANK1_SOC and abs(value - target * 10) <= 5
                    ),
                    None,
                )
                iec_at = iec_at or next(
                    (t for t, soc in list(reports.arrivals) if abs(soc - target) <= 0.5), None
                )
            if dnp3_at is None or iec_at is None:
                missed += 1
            if dnp3_at is not None:
                dnp3_ms.append((dnp3_at - started) * 1000.0)
            if iec_at is not None:
                iec_ms.append((iec_at - started) * 1000.0)
            await asyncio.sleep(rng.uniform(0.3, 0.7))
    finally:
        await runner.close()
    return dnp3_ms, iec_ms, missed


def distribution(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p90_ms": round(percentile(values, 0.9), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "min_ms": round(min(values), 1),
        "max_ms": round(max(values), 1),
    }


def run_one(packs: int, samples: int) -> dict[str, Any]:
    gateway_cpus, other_cpus = cpu_split()
    if other_cpus:
        os.sched_setaffinity(0, other_cpus)
    profile = ProfileLibrary([REPO / "profiles"]).get("microstore/mp2000")
    dnp3_port, mms_port = free_port(), free_port()
    northbound = {
        "dnp3": {"host": LOOPBACK, "port": dnp3_port, "unsolicited": True},
        "iec61850": {"host": LOOPBACK, "port": mms_port},
    }
    with (
        FleetThread(uniform_fleet(packs, profile, base_port=0, speed=1.0)) as fleet,
        tempfile.TemporaryDirectory(prefix="socgw-freshness-") as temp,
        gateway_process(Path(temp), fleet.endpoints, northbound, gateway_cpus) as gateway,
        report_client(mms_port, seconds=samples * 1.5 + 60.0) as reports,
    ):
        gateway.start_window()
        dnp3_ms, iec_ms, missed = uvloop.run(sample_latencies(dnp3_port, fleet, reports, samples))
        gateway.end_window()
    cycles = cycle_summary(window_samples(gateway.result()["samples"], gateway.window), packs)
    return {
        "packs": packs,
        "dnp3_unsolicited": distribution(dnp3_ms),
        "iec61850_report": distribution(iec_ms),
        "samples_missing_a_value": missed,
        "gateway_cycle": {k: cycles[k] for k in ("cycles", "cycle_p50_ms", "cycle_p99_ms", "overruns")},
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packs", type=int, nargs="+", help="fleet sizes (default 10 200)")
    parser.add_argument("--samples", type=int, help="changes per N (default 60)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 10, 6 samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    packs = args.packs or ([10] if args.quick else [10, 200])
    samples = args.samples or (6 if args.quick else 60)
    about = machine()
    print(f"freshness: {about['cpus']} CPU(s), load average {about['load_average_at_start']}", flush=True)
    results = []
    for n in packs:
        result = run_one(n, samples)
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"benchmark": "freshness", "method": __doc__, "machine": about, "quick": args.quick}
        args.json.write_text(json.dumps({**document, "results": results}, indent=2) + "\n")
    return 0 if all(r["samples_missing_a_value"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
