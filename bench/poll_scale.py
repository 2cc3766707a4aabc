"""How many units the southbound adapter polls in a paced 100 ms cycle, and what each costs the client.

    python -m bench.poll_scale [--units 10 50 200 500] [--cycles 300] [--packs-per-sim 125]
                               [--write-paths callbacks awaited] [--rounds R]

Method: for each N, start ceil(N / packs-per-sim) `socgw simulate --packs K --base-port 0` processes
(the real simulator, microstore/mp2000 packs, uvloop). This process is the gateway side and uses exactly
what the engine uses: one `ModbusSession` per unit, `connect_all`, then per cycle `poll_all` (the
profile's planned block reads: 4 requests per unit for the mp2000) and `write_all` with a setpoint that
changes every cycle by more than the deadband (1 write per unit), paced on deadlines every 100 ms like
`Engine.run`. `gc.freeze()` after connecting, as the engine does. With 2+ CPUs the client is pinned to
CPU 0 and the simulators to the others, so the client's numbers are its own.

Printed per N: the active part of the cycle (poll + write) p50/p99/max, overruns (active part longer
than the period), readings that were not good, the client's CPU time (time.process_time) per
unit-cycle, and the write step's own p50/p99 and CPU per unit-cycle. `--write-paths callbacks awaited`
runs each N once per write path, alternating `--rounds` times (side by side in one run): `callbacks`,
what the engine does (a unit alone on its connection writes without a coroutine, `send_writes_soon`),
and `awaited`, every unit's writes on a coroutine of its own (`send_writes`, the path before).
Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import uvloop

from gateway.fleet import Quality
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import Endpoint
from gateway.southbound.poller import close_all, connect_all, poll_all, write_all
from gateway.southbound.session import ModbusSession, SessionOptions
from gateway.southbound.writer import WriteOutcome, WritePlan
from gateway.timing import percentile

REPO = Path(__file__).resolve().parents[1]
PERIOD_S = 0.1
PROFILE = "microstore/mp2000"
START_TIMEOUT_S = 60.0


@dataclass
class Result:
    units: int
    write_path: str
    simulators: int
    cycles: int
    active_p50_ms: float
    active_p99_ms: float
    active_max_ms: float
    overruns: int
    not_good_readings: int
    failed_writes: int
    cpu_us_per_unit_cycle: float
    requests_per_unit_cycle: float
    write_p50_ms: float
    write_p99_ms: float
    write_cpu_us_per_unit_cycle: float


class Simulators:
    """`socgw simulate` processes serving `units` packs between them; stopped on exit."""

    def __init__(self, units: int, per_process: int, cpus: set[int] | None) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        self.endpoints: list[Endpoint] = []
        self._units, self._per_process, self._cpus = units, per_process, cpus

    def __enter__(self) -> Simulators:
        remaining = self._units
        while remaining > 0:
            count = min(remaining, self._per_process)
            remaining -= count
            cpus = self._cpus

            def pin_simulator(cpus: set[int] | None = cpus) -> None:
                if cpus:
                    os.sched_setaffinity(0, cpus)

            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "simulate", "--packs", str(count), "--base-port", "0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=REPO,
                preexec_fn=pin_simulator,  # noqa: PLW1509 - only sets the CPU affinity
            )
            self.processes.append(process)
            self.endpoints.extend(self._announced(process))
        return self

    @staticmethod
    def _announced(process: subprocess.Popen[str]) -> list[Endpoint]:
        assert process.stdout is not None
        endpoints: list[Endpoint] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        for line in process.stdout:
            if line.startswith("serving "):
                return endpoints
            endpoints.append(Endpoint.parse(line))
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"the simulator did not start (exit status {process.poll()})")

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


class AwaitedWritesSession(ModbusSession):
    """A session whose writes always go on a coroutine of their own (`send_writes`): the write path
    before `send_writes_soon`, for the side-by-side."""

    def send_writes_soon(
        self, plan: WritePlan, now: float, done: Callable[[list[WriteOutcome]], None]
    ) -> bool:
        return False


WRITE_PATHS = {"callbacks": ModbusSession, "awaited": AwaitedWritesSession}


@dataclass(frozen=True)
class Plan:
    cycles: int
    warmup: int
    packs_per_sim: int
    pin: bool
    options: SessionOptions
    write_path: str = "callbacks"


async def measure(
    endpoints: Sequence[Endpoint], plan: Plan
) -> tuple[list[float], list[float], dict[str, int]]:
    cycles, warmup = plan.cycles, plan.warmup
    library = ProfileLibrary([REPO / "profiles"])
    profile = library.get(PROFILE)
    session_type = WRITE_PATHS[plan.write_path]
    sessions = [  # each at its place in the fleet, as the engine builds them
        session_type(f"u{i}", e.host, e.port, e.unit_id, profile, options=plan.options, place=i)
        for i, e in enumerate(endpoints)
    ]
    failures = await connect_all(sessions, time.monotonic())
    if failures:
        raise RuntimeError(f"{len(failures)} unit(s) did not connect, e.g. {next(iter(failures.values()))}")
    gc.collect()
    gc.freeze()
    active_ms: list[float] = []
    write_ms: list[float] = []
    counts = {"not_good": 0, "failed_writes": 0, "requests": 0, "cpu_ns": 0, "write_cpu_ns": 0}
    requests_before = cpu_before = 0
    deadline = time.monotonic()
    for cycle in range(warmup + cycles):
        if cycle == warmup:
            requests_before = sum(s.link.requests for s in sessions)
            cpu_before = time.process_time_ns()
        started = time.monotonic()
        readings = await poll_all(sessions, started)
        setpoint = 100.0 if cycle % 2 else 200.0  # more than the deadband apart: one write per unit-cycle
        setpoints = {s.node_id: {"setpoint_w": setpoint} for s in sessions}
        write_started, write_cpu = time.monotonic(), time.process_time_ns()
        outcomes = await write_all(sessions, setpoints, started)
        finished = time.monotonic()
        if cycle >= warmup:
            counts["write_cpu_ns"] += time.process_time_ns() - write_cpu
            write_ms.append((finished - write_started) * 1000.0)
            active_ms.append((finished - started) * 1000.0)
            counts["not_good"] += sum(1 for r in readings if r.quality is not Quality.GOOD)
            counts["failed_writes"] += sum(1 for o in outcomes.values() for w in o if w.error is not None)
        deadline = max(deadline + PERIOD_S, finished)  # skip missed slots, as the engine does
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    counts["cpu_ns"] = time.process_time_ns() - cpu_before
    counts["requests"] = sum(s.link.requests for s in sessions) - requests_before
    await close_all(sessions)
    gc.unfreeze()
    return active_ms, write_ms, counts


def run_one(units: int, plan: Plan) -> Result:
    cpus = set(range(os.cpu_count() or 1))
    sim_cpus = cpus - {0} if plan.pin and len(cpus) > 1 else None
    if sim_cpus:
        os.sched_setaffinity(0, {0})
    with Simulators(units, plan.packs_per_sim, sim_cpus) as simulators:
        active_ms, write_ms, counts = uvloop.run(measure(simulators.endpoints, plan))
        processes = len(simulators.processes)
    cycles = plan.cycles
    unit_cycles = units * cycles
    return Result(
        units=units,
        write_path=plan.write_path,
        simulators=processes,
        cycles=cycles,
        active_p50_ms=round(percentile(active_ms, 0.5), 2),
        active_p99_ms=round(percentile(active_ms, 0.99), 2),
        active_max_ms=round(max(active_ms), 2),
        overruns=sum(1 for ms in active_ms if ms > PERIOD_S * 1000.0),
        not_good_readings=counts["not_good"],
        failed_writes=counts["failed_writes"],
        cpu_us_per_unit_cycle=round(counts["cpu_ns"] / 1000.0 / unit_cycles, 1),
        requests_per_unit_cycle=round(counts["requests"] / unit_cycles, 2),
        write_p50_ms=round(percentile(write_ms, 0.5), 2),
        write_p99_ms=round(percentile(write_ms, 0.99), 2),
        write_cpu_us_per_unit_cycle=round(counts["write_cpu_ns"] / 1000.0 / unit_cycles, 1),
    )


def print_row(result: Result) -> None:
    print(
        f"{result.units:>5} {result.write_path:>9} {result.simulators:>4} {result.active_p50_ms:>7.2f} "
        f"{result.active_p99_ms:>7.2f} {result.active_max_ms:>7.2f} "
        f"{result.overruns:>4}/{result.cycles:<3} "
        f"{result.not_good_readings + result.failed_writes:>8} {result.cpu_us_per_unit_cycle:>17.1f} "
        f"{result.requests_per_unit_cycle:>14.2f} "
        f"{f'{result.write_p50_ms:.2f}/{result.write_p99_ms:.2f}':>16} "
        f"{result.write_cpu_us_per_unit_cycle:>12.1f}",
        flush=True,
    )


def print_write_paths(results: Sequence[Result], paths: Sequence[str]) -> None:
    """Per N, each write path's medians over its rounds, and their ratio to the first path's."""
    print("\nwrite paths side by side (medians of the rounds):")
    for units in sorted({r.units for r in results}):
        first: Result | None = None
        for path in paths:
            runs = [r for r in results if r.units == units and r.write_path == path]
            median = sorted(runs, key=lambda r: r.write_cpu_us_per_unit_cycle)[len(runs) // 2]
            first = first or median
            ratio = median.write_cpu_us_per_unit_cycle / max(first.write_cpu_us_per_unit_cycle, 1e-9)
            print(
                f"{units:>5} {path:>9}: write CPU {median.write_cpu_us_per_unit_cycle:.1f} µs/unit-cycle "
                f"(×{ratio:.2f}), write p50/p99 {median.write_p50_ms:.2f}/{median.write_p99_ms:.2f} ms, "
                f"client CPU {median.cpu_us_per_unit_cycle:.1f} µs/unit-cycle"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, nargs="+", default=[10, 50, 200, 500])
    parser.add_argument("--cycles", type=int, default=300, help="measured cycles per N (default 300 = 30 s)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--packs-per-sim", type=int, default=125, help="packs per simulator process")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and simulators to CPUs")
    parser.add_argument(
        "--slow-poll-every",
        type=int,
        default=SessionOptions.for_node().slow_poll_every,
        help="read the points outside FAST_POINTS every Nth poll (1: the whole map every cycle)",
    )
    parser.add_argument(
        "--write-paths",
        nargs="+",
        choices=sorted(WRITE_PATHS),
        default=["callbacks"],
        help="run each N once per write path (callbacks: the engine's; awaited: a coroutine per unit)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternate the write paths this many times")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    header = (
        f"{'units':>5} {'writes':>9} {'sims':>4} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'overruns':>8} "
    )
    header += f"{'not good':>8} {'CPU µs/unit-cycle':>17} {'req/unit-cycle':>14} "
    print(header + f"{'write p50/p99 ms':>16} {'write CPU µs':>12}", flush=True)
    options = replace(SessionOptions.for_node(), slow_poll_every=args.slow_poll_every)
    for units in args.units:
        for _ in range(args.rounds):
            for path in args.write_paths:
                plan = Plan(args.cycles, args.warmup, args.packs_per_sim, not args.no_pin, options, path)
                result = run_one(units, plan)
                results.append(result)
                print_row(result)
    if len(args.write_paths) > 1:
        print_write_paths(results, args.write_paths)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(math.isfinite(r.active_p99_ms) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
