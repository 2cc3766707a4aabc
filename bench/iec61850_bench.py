"""What the IEC 61850 server costs the gateway.

    python -m bench.iec61850_bench [--packs 200] [--cycles 300] [--seconds 10] [--clients 2] [--map large]

1. Publish time per cycle: the real MMS server for N packs (a shipped map, `--map`) on loopback;
   synthetic cycle snapshots (real balancer dispatch) where every pack's SOC, power, voltage, current
   and temperature move by more than their deadbands each cycle ("all moving", the worst case), only
   every tenth pack's, or none. Times `Updater.apply` (compute every published value, then write what
   changed, one data-model lock per logical device, through ctypes) on this thread, and `publish` as
   the engine calls it on the loop.
2. Loop lateness while clients read hard: a uvloop loop runs a 10 ms ticker that records how late it
   wakes: with no MMS activity, then publishing a snapshot every 100 ms as the engine does (every
   tenth pack moving), then also while K libiec61850 client processes read every device's ZBAT1
   measurements back to back.

Prints medians/percentiles as JSON. Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from gateway.balancer import BalancerParams, SiteCommand, dispatch
from gateway.config import load_config
from gateway.fleet import FleetState, NodeState
from gateway.northbound.iec61850.server import RunningServer
from gateway.northbound.iec61850.settings import load_settings
from gateway.snapshot import CycleSnapshot

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "northbound" / "iec61850" / "client.py"
CYCLE_S = 0.1
TICK_S = 0.01
PROFILE = "microstore/mp2000"  # the nodes are never polled: only their names and profile matter


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(directory: Path, packs: int, port: int, iec_map: str = "default") -> Path:
    nodes = "\n".join(
        f"  - {{id: pack-{i + 1:03d}, host: 127.0.0.1, port: {20000 + i}, unit: 1, profile: {PROFILE}}}"
        for i in range(packs)
    )
    path = directory / "gateway.yaml"
    path.write_text(
        f"nodes:\n{nodes}\nstatus:\n  socket: {directory / 'status.sock'}\n"
        f"northbound:\n  iec61850: {{host: 127.0.0.1, port: {port}, map: {iec_map}}}\n",
        encoding="utf-8",
    )
    return path


def snapshots(packs: int, cycles: int, moving_every: int) -> list[CycleSnapshot]:
    """Cycle snapshots whose packs (every `moving_every`-th one) change their measurements each cycle,
    each by more than its deadband in the shipped maps (they step back and forth)."""
    params = BalancerParams(default_charge_limit_w=2000.0, default_discharge_limit_w=2000.0)
    command = SiteCommand(request_w=packs * 300.0)
    memory = None
    result = []
    for cycle in range(cycles):
        nodes = []
        for i in range(packs):
            step = float(cycle % 2) if i % moving_every == 0 else 0.0
            nodes.append(
                NodeState(
                    f"pack-{i + 1:03d}",
                    soc_pct=80.0 - (i % 50) - step,
                    soh_pct=98.0,
                    capacity_wh=2048.0,
                    voltage_v=52.0 - step,
                    current_a=5.0 + 2.0 * step,
                    power_w=300.0 + 60.0 * step,
                    temp_c=25.0 + step,
                    temp_max_c=27.0 + step,
                    charge_limit_w=2000.0,
                    discharge_limit_w=2000.0,
                    state="discharging",
                )
            )
        fleet = FleetState(tuple(nodes), timestamp_s=cycle * CYCLE_S)
        decision = dispatch(fleet, command, params, memory, cycle * CYCLE_S)
        memory = decision.memory
        result.append(CycleSnapshot(cycle, datetime.now(UTC), fleet, command, decision, params))
    return result


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 3),
        "p99": round(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)], 3),
        "max": round(ordered[-1], 3),
    }


def bench_publish(server: RunningServer, packs: int, cycles: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, moving_every in (("all_moving", 1), ("tenth_moving", 10), ("none_moving", 10**9)):
        series = snapshots(packs, cycles, moving_every)
        server.updater.apply(series[0])  # the first cycle writes everything
        times_ms = []
        changed = []
        for snapshot in series[1:]:
            started = time.perf_counter()
            changed.append(server.updater.apply(snapshot))
            times_ms.append((time.perf_counter() - started) * 1000.0)
        results[label] = {
            "apply_ms": percentiles(times_ms),
            "changed_data_objects_per_cycle": statistics.median(changed),
        }
    offer_us = []
    for snapshot in snapshots(packs, 50, 1):
        started = time.perf_counter()
        server.updater.offer(snapshot)
        offer_us.append((time.perf_counter() - started) * 1e6)
    results["publish_on_loop_us"] = percentiles(offer_us)
    return results


async def lateness(
    server: RunningServer | None, series: Sequence[CycleSnapshot], seconds: float
) -> list[float]:
    """Ticker lateness (ms) for `seconds`, publishing a snapshot every 100 ms unless `server` is None."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    stop_at = loop.time() + seconds

    async def publisher() -> None:
        index = 0
        while server is not None and loop.time() < stop_at:
            server.updater.offer(series[index % len(series)])
            index += 1
            await asyncio.sleep(CYCLE_S)

    async def ticker() -> None:
        while loop.time() < stop_at:
            expected = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            late.append(max(0.0, loop.time() - expected) * 1000.0)

    await asyncio.gather(publisher(), ticker())
    return late


def bench_lateness(
    server: RunningServer, port: int, packs: int, seconds: float, clients: int
) -> dict[str, Any]:
    series = snapshots(packs, 100, 10)  # every tenth pack's measurements move each cycle
    quiet = uvloop.run(lateness(None, series, seconds))
    publishing = uvloop.run(lateness(server, series, seconds))
    hammers = [
        subprocess.Popen(
            [sys.executable, str(CLIENT), "--port", str(port), "hammer", "--seconds", str(seconds + 2.0)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    time.sleep(1.0)  # clients connected and reading
    loaded = uvloop.run(lateness(server, series, seconds))
    reads = 0
    for hammer in hammers:
        out, _ = hammer.communicate(timeout=seconds + 60)
        document = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        reads += int(document.get("reads", 0))
    return {
        "ticker_lateness_ms": {
            "no_mms_activity": percentiles(quiet),
            "publishing_every_cycle": percentiles(publishing),
            "publishing_and_clients_reading": percentiles(loaded),
        },
        "published": "every 100 ms, every tenth pack's measurements moving",
        "reader_processes": clients,
        "reads_per_s": round(reads / (seconds + 2.0), 1),
        "read": "one MMS read of <device>/ZBAT1 [MX] per device, back to back",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packs", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--map", default="default", help="IEC 61850 map (default, large or a path)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="socgw-iec61850-bench-") as temp:
        port = free_port()
        config = load_config(write_config(Path(temp), args.packs, port, args.map))
        loaded = load_settings(config)
        assert loaded is not None
        settings, plan = loaded
        server = RunningServer(settings, plan, lambda update, apply=True: None, datetime.now(UTC))
        try:
            report = {
                "packs": args.packs,
                "map": args.map,
                "published_data_objects": len(server.updater.publications),
                "publish": bench_publish(server, args.packs, args.cycles),
                "loop": bench_lateness(server, port, args.packs, args.seconds, args.clients),
            }
        finally:
            server.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
