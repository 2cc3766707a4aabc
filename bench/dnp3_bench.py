"""DNP3 outstation timings: integrity poll of the full map, publish cost, unsolicited latency, event rate.

    python -m bench.dnp3_bench [--packs 200] [--polls 10] [--latency-packs 8] [--latency-samples 20]
                               [--event-rate-s 120] [--dispatch-step-s 10] [--json bench/results/dnp3.json]

Method (this process is always the master, dnp3py, as a SCADA master is another machine):
1. Integrity poll: `socgw simulate --packs N --base-port 0` and `socgw run -c` against it, both as
   subprocesses, DNP3 on a free loopback port with the default map. Once every node is online, `polls`
   integrity polls back to back: wall time per poll (median, p90), fragments and points. dnp3py is
   pure Python, so its own parsing is part of the figure. The gateway's publish step (p50/p99 per
   cycle, from `socgw status --json`) is the point table's cost at N packs inside the real loop.
2. Publish CPU: the adapter in this process at N packs, fed synthetic snapshots in which every pack's
   power, current, voltage, SOC and temperature change every cycle; thread CPU time per publish
   (the machine's other load does not count).
3. Unsolicited latency: a simulator with `latency_packs` packs in this process (its state is changed
   directly), `socgw run` as a subprocess with unsolicited allowed, the master enables unsolicited.
   Each sample sets pack-01's SOC far beyond the deadband and times until the master has decoded the
   unsolicited event of AI961 with the new value: up to one 100 ms cycle of waiting for the next poll,
   the poll, publish, and the unsolicited response.
4. Event rate: `event_rate_packs` packs at real-time speed, half the fleet's discharge power requested;
   class polls every second for `event_rate_s`, once steady and once with the master moving the power
   target every `dispatch_step_s`; events per minute per type, and how long the default event buffers
   last at that rate (and scaled to N packs: per-pack points dominate).
Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import opendnp3
import uvloop
from dnp3.master import CommandBuilder, DefaultSOEHandler, Master, MasterConfig, MasterTcpRunner
from dnp3.master.handler import AnalogValue, BinaryValue, ResponseInfo

from gateway.balancer import BalancerParams, SiteCommand, dispatch
from gateway.commands.demo import running_simulator
from gateway.config import load_config
from gateway.fleet import FleetState, NodeState
from gateway.mapping.dnp3 import DEFAULT_MAP, LARGE_MAP, find_map, load_dnp3_map
from gateway.northbound.dnp3 import create
from gateway.northbound.dnp3.settings import EventBuffers
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import Endpoint, FleetThread
from gateway.sim.scenario import uniform_fleet
from gateway.snapshot import CycleSnapshot
from gateway.status import read_status

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
BANK1_SOC = 955 + 6
START_TIMEOUT_S = 120.0
PACK_MAX_POWER_W = 1200.0  # microstore/mp2000, the simulator's default pack
IDLE_BASELINE_S = 3.0
DEFAULT_MAP_NODES = load_dnp3_map(find_map(DEFAULT_MAP, REPO)).max_nodes  # above: the large map


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else 0.0


class CountingHandler(DefaultSOEHandler):
    """Keeps dnp3py's last values, and counts every value received per type (events in class polls)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = {"analog": 0, "binary": 0, "analog_output_status": 0, "binary_output_status": 0}
        self.arrivals: list[tuple[float, int, float]] = []  # (perf_counter, index, value) of analogs

    def on_analog_input(self, values: list[AnalogValue], info: ResponseInfo) -> None:
        super().on_analog_input(values, info)
        now = time.perf_counter()
        self.counts["analog"] += len(values)
        self.arrivals.extend((now, value.index, value.value) for value in values)

    def on_binary_input(self, values: list[BinaryValue], info: ResponseInfo) -> None:
        super().on_binary_input(values, info)
        self.counts["binary"] += len(values)

    def on_analog_output(self, values: list[AnalogValue], info: ResponseInfo) -> None:
        super().on_analog_output(values, info)
        self.counts["analog_output_status"] += len(values)

    def on_binary_output(self, values: list[BinaryValue], info: ResponseInfo) -> None:
        super().on_binary_output(values, info)
        self.counts["binary_output_status"] += len(values)


def master(port: int) -> tuple[CountingHandler, MasterTcpRunner]:
    handler = CountingHandler()
    runner = MasterTcpRunner(
        master=Master(config=MasterConfig(address=1, outstation_address=10), handler=handler),
        host=LOOPBACK,
        port=port,
        response_timeout=30.0,
    )
    return handler, runner


@contextlib.contextmanager
def running_gateway(
    directory: Path, endpoints: Sequence[Endpoint], dnp3: dict[str, Any], request_w: float = 0.0
) -> Iterator[Path]:
    """`socgw run` for these packs (subprocess) until every node is online; yields its status socket."""
    status = directory / "status.sock"
    config = {
        "nodes": [
            {"id": e.pack_id, "host": e.host, "port": e.port, "unit": e.unit_id, "profile": e.profile_key}
            for e in endpoints
        ],
        "command": {"default_request_w": request_w, "timeout_s": 3600},
        "logging": {"level": "warning", "balancing_log": None},
        "status": {"socket": str(status)},
        "northbound": {"dnp3": dnp3},
    }
    path = directory / "gateway.yaml"
    path.write_text(json.dumps(config))
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(path)], cwd=REPO)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                nodes = read_status(status).get("nodes") or []
                online = isinstance(nodes, list) and len(nodes) == len(endpoints)
                if online and all(node["quality"] == "good" for node in nodes):
                    break
            if process.poll() is not None:
                raise RuntimeError(f"socgw run exited with {process.returncode}")
            time.sleep(0.2)
        else:
            raise RuntimeError("the gateway's nodes did not all come online")
        time.sleep(1.0)  # a few cycles with every node published
        yield status
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- 1. integrity poll ----------------------------------------------------------------------------


async def _polls(port: int, polls: int) -> dict[str, Any]:
    handler, runner = master(port)
    await runner.open()
    try:
        durations, fragments = [], 0
        cpu_started = time.process_time()
        for _ in range(polls):
            started = time.perf_counter()
            fragments = len(await runner.integrity_poll())
            durations.append((time.perf_counter() - started) * 1000.0)
        master_cpu_ms = (time.process_time() - cpu_started) * 1000.0 / polls
        points = {
            "AI": len(handler.analog_inputs),
            "BI": len(handler.binary_inputs),
            "AO": len(handler.analog_outputs),
            "BO": len(handler.binary_outputs),
        }
    finally:
        await runner.close()
    return {
        "poll_median_ms": statistics.median(durations),
        "poll_p90_ms": percentile(durations, 0.9),
        "master_cpu_ms_per_poll": master_cpu_ms,
        "fragments": fragments,
        "static_points": points,
    }


class PollTimes(opendnp3.IMasterApplication):  # type: ignore[misc]
    """The compiled master's application: stamps each user task's end (on opendnp3's I/O thread, once
    per poll; the values themselves stay in C++: no Python per point)."""

    def __init__(self) -> None:
        super().__init__()
        self.completed: queue.Queue[tuple[float, str]] = queue.Queue()
        self.startup_done = threading.Event()

    def OnTaskComplete(self, info: opendnp3.TaskInfo) -> None:
        if info.type == opendnp3.MasterTaskType.USER_TASK:
            self.completed.put((time.perf_counter(), info.result.name))
        elif info.type == opendnp3.MasterTaskType.STARTUP_INTEGRITY_POLL:
            self.startup_done.set()


class FragmentCount(opendnp3.ISOEHandler):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.fragments = 0

    def BeginFragment(self, info: opendnp3.ResponseInfo) -> None:
        self.fragments += 1


def compiled_polls(port: int, polls: int) -> dict[str, Any]:
    """Integrity polls by opendnp3's own master (yadnp3, C++): wall time from the request to the task's
    completion, the response parsed in C++; its values are not handed to Python."""
    manager = opendnp3.DNP3Manager(1)
    try:
        channel = manager.AddTCPClient(
            "bench-master",
            opendnp3.levels.NOTHING,
            opendnp3.ChannelRetry.Default(),
            [opendnp3.IPEndpoint(LOOPBACK, port)],
            "0.0.0.0",
            None,
        )
        config = opendnp3.MasterStackConfig()
        config.master.responseTimeout = opendnp3.TimeDuration.Seconds(30)
        config.master.disableUnsolOnStartup = True
        config.link.LocalAddr, config.link.RemoteAddr = 1, 10
        times, fragments = PollTimes(), FragmentCount()
        session = channel.AddMaster("bench-master", fragments, times, config)
        session.Enable()
        if not times.startup_done.wait(60.0):
            raise RuntimeError("the compiled master's startup integrity poll did not complete in 60 s")
        durations = []
        cpu_started = time.process_time()
        for _ in range(polls):
            fragments.fragments = 0
            started = time.perf_counter()
            session.ScanClasses(opendnp3.ClassField.AllClasses(), fragments)
            ended, result = times.completed.get(timeout=60.0)
            if result != "SUCCESS":
                raise RuntimeError(f"the compiled master's integrity poll ended with {result}")
            durations.append((ended - started) * 1000.0)
        master_cpu_ms = (time.process_time() - cpu_started) * 1000.0 / polls
        session.Disable()
        return {
            "poll_median_ms": statistics.median(durations),
            "poll_p90_ms": percentile(durations, 0.9),
            "master_cpu_ms_per_poll": master_cpu_ms,
            "fragments": fragments.fragments,
        }
    finally:
        manager.Shutdown()  # from this (main) thread, once (../shared notes: dnp3.md)


def threads_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of a process, to the nanosecond (schedstat; /proc/PID/stat
    counts in 10 ms ticks, too coarse for polls of a few milliseconds)."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
    return found


def busy_beyond_idle_s(
    before: Mapping[int, float], after: Mapping[int, float], idle_rates: Mapping[int, float], seconds: float
) -> float:
    """CPU seconds the threads spent beyond their idle rate over `seconds`, thread by thread (each
    thread's excess counted alone: the main thread's frames do not hide the I/O thread's poll work)."""
    return sum(
        max(0.0, spent - before.get(tid, 0.0) - idle_rates.get(tid, 0.0) * seconds)
        for tid, spent in after.items()
    )


def dnp3_map_for(packs: int) -> str:
    """The map the docs advise for this many packs (the default has room for 256)."""
    return LARGE_MAP if packs > DEFAULT_MAP_NODES else DEFAULT_MAP


def dnp3py_polls(port: int, polls: int) -> dict[str, Any]:
    return uvloop.run(_polls(port, polls))


def adapter_pid(status: Path, section: str) -> int:
    adapters = read_status(status).get("adapters") or []
    return int(next(a["pid"] for a in adapters if a["section"] == section))


def integrity_poll(packs: int, polls: int) -> dict[str, Any]:
    """Both masters in turn against one `socgw run`; the DNP3 child's CPU per poll during each (what
    the outstation spends), and its share of the compiled master's poll time."""
    command = [sys.executable, "-m", "gateway.cli", "simulate", "--packs", str(packs), "--base-port", "0"]
    port = free_port()
    dnp3_map = dnp3_map_for(packs)
    result: dict[str, Any] = {"map": dnp3_map}
    with (
        tempfile.TemporaryDirectory(prefix="dnp3-bench-") as temp,
        running_simulator(command) as endpoints,
        running_gateway(Path(temp), endpoints, {"port": port, "map": dnp3_map}) as status,
    ):
        child = adapter_pid(status, "dnp3")
        # What the child spends with no master (each cycle's frame), taken off what it spends polled.
        idle_before, idle_started = threads_cpu_s(child), time.monotonic()
        time.sleep(IDLE_BASELINE_S)
        idle_after, idle_s = threads_cpu_s(child), time.monotonic() - idle_started
        idle_rates = {tid: (s - idle_before.get(tid, 0.0)) / idle_s for tid, s in idle_after.items()}
        result["outstation_idle_cpu_pct"] = 100.0 * sum(idle_rates.values())
        masters: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
            ("compiled", functools.partial(compiled_polls, port, polls)),
            ("dnp3py", functools.partial(dnp3py_polls, port, polls)),
        )
        for name, run in masters:
            outstation_before, started = threads_cpu_s(child), time.monotonic()
            result[name] = run()
            spent_s = busy_beyond_idle_s(
                outstation_before, threads_cpu_s(child), idle_rates, time.monotonic() - started
            )
            outstation_ms = spent_s * 1000.0 / polls
            result[name]["outstation_cpu_ms_per_poll"] = outstation_ms
            result[name]["outstation_share_of_poll"] = outstation_ms / result[name]["poll_median_ms"]
        if adapter_pid(status, "dnp3") != child:
            raise RuntimeError("the DNP3 child restarted during the polls: its CPU count is lost")
        publish = read_status(status)["timing"]["steps_ms"]["publish"]
        result["gateway_publish_p50_ms"] = publish["p50"]
        result["gateway_publish_p99_ms"] = publish["p99"]
    result["dnp3py_over_compiled"] = result["dnp3py"]["poll_median_ms"] / result["compiled"]["poll_median_ms"]
    return result


# --- 2. publish CPU -------------------------------------------------------------------------------


def publish_cpu(packs: int, cycles: int = 100) -> dict[str, float]:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="dnp3-bench-") as temp:
        directory = Path(temp)
        document = {
            "nodes": [
                {
                    "id": f"pack-{i:03d}",
                    "host": LOOPBACK,
                    "port": 30000 + i,
                    "unit": 1,
                    "profile": "microstore/mp2000",
                }
                for i in range(packs)
            ],
            "status": {"socket": str(directory / "status.sock")},
            "northbound": {"dnp3": {"port": free_port(), "map": dnp3_map_for(packs)}},
        }
        (directory / "gateway.yaml").write_text(json.dumps(document))
        site = load_config(directory / "gateway.yaml", [REPO / "profiles"])
    adapter = create(site, lambda update, apply=True: None)
    assert adapter is not None
    params, memory = BalancerParams(), None
    snapshots = []
    for cycle in range(cycles):
        nodes = tuple(
            NodeState(
                f"pack-{i:03d}",
                soc_pct=30.0 + i % 60 - cycle * 0.01 + rng.random() * 0.01,
                soh_pct=97.0,
                capacity_wh=2048.0,
                voltage_v=51.2 + rng.random() * 0.2,
                current_a=10.0 + rng.random(),
                power_w=500.0 + rng.random() * 30.0,
                temp_c=25.0 + rng.random() * 0.3,
                temp_max_c=27.0 + rng.random(),
                temp_min_c=24.0,
                cell_voltage_min_v=3.2 + rng.random() * 0.01,
                cell_voltage_max_v=3.25 + rng.random() * 0.01,
                charge_limit_w=PACK_MAX_POWER_W,
                discharge_limit_w=PACK_MAX_POWER_W,
                setpoint_w=500.0,
                enabled=True,
                state="discharging",
            )
            for i in range(packs)
        )
        fleet = FleetState(nodes, cycle * 0.1)
        command = SiteCommand(request_w=500.0 * packs)
        decision = dispatch(fleet, command, params, memory, cycle * 0.1)
        memory = decision.memory
        snapshots.append(CycleSnapshot(cycle, datetime.now(UTC), fleet, command, decision, params))
    adapter.start()
    try:
        cpu_ms = []
        for snapshot in snapshots:
            started = time.thread_time()
            adapter.publish(snapshot)
            cpu_ms.append((time.thread_time() - started) * 1000.0)
    finally:
        adapter.stop()
    steady = cpu_ms[1:]  # the first publish sets every point
    return {
        "points": float(len(adapter.points)),
        "first_publish_cpu_ms": cpu_ms[0],
        "publish_cpu_median_ms": statistics.median(steady),
        "publish_cpu_p90_ms": percentile(steady, 0.9),
    }


# --- 3. unsolicited latency -----------------------------------------------------------------------


async def _latency(port: int, fleet: FleetThread, samples: int) -> list[float]:
    rng = random.Random(7)
    handler, runner = master(port)
    await runner.open()
    latencies = []
    try:
        await runner.integrity_poll()
        await runner.enable_unsolicited()
        for sample in range(samples):
            target = 40.0 if sample % 2 else 60.0  # 20 % steps: far beyond the 0.5 % deadband
            handler.arrivals.clear()
            started = time.perf_counter()
            fleet.update_state("pack-01", soc_pct=target)
            deadline = started + 5.0
            arrived = None
            while arrived is None and time.perf_counter() < deadline:
                await runner.listen_unsolicited(timeout=max(0.01, deadline - time.perf_counter()))
                arrived = next(
                    (
                        t
                        for t, index, value in handler.arrivals
                        if index == BANK1_SOC and value == target * 10
                    ),
                    None,
                )
            if arrived is None:
                raise RuntimeError(f"sample {sample}: no unsolicited event for AI{BANK1_SOC} within 5 s")
            latencies.append((arrived - started) * 1000.0)
            await asyncio.sleep(rng.uniform(0.05, 0.25))  # a random phase of the 100 ms cycle
    finally:
        await runner.close()
    return latencies


def unsolicited_latency(packs: int, samples: int) -> dict[str, float]:
    profile = ProfileLibrary([REPO / "profiles"]).get("microstore/mp2000")
    port = free_port()
    with (
        FleetThread(uniform_fleet(packs, profile, base_port=0, speed=0.0)) as fleet,
        tempfile.TemporaryDirectory(prefix="dnp3-bench-") as temp,
        running_gateway(Path(temp), fleet.endpoints, {"port": port, "unsolicited": True}),
    ):
        latencies = uvloop.run(_latency(port, fleet, samples))
    return {
        "latency_median_ms": statistics.median(latencies),
        "latency_p90_ms": percentile(latencies, 0.9),
        "latency_max_ms": max(latencies),
        "latency_min_ms": min(latencies),
    }


# --- 4. event rate --------------------------------------------------------------------------------


async def _count_events(port: int, seconds: float, step_s: float | None) -> dict[str, int]:
    """Events per type over `seconds`; with `step_s`, the master moves the power target (AO93)
    between 25 % and 50 % of the rated power every `step_s`, as a dispatching SCADA would."""
    handler, runner = master(port)
    await runner.open()
    try:
        await runner.integrity_poll()  # the static picture, and the buffer emptied
        for key in handler.counts:
            handler.counts[key] = 0
        started = time.monotonic()
        next_step, target = started, 500
        while (now := time.monotonic()) < started + seconds:
            if step_s is not None and now >= next_step:
                target = 750 - target  # 500 <-> 250 (0.1 % of rated power)
                operate = CommandBuilder().add_analog(93, target).build_direct_operate()
                await runner.request(runner.master.build_direct_operate(operate))
                next_step += step_s
            await asyncio.sleep(min(1.0, max(0.0, started + seconds - time.monotonic())))
            await runner.class_poll()
        return dict(handler.counts)
    finally:
        await runner.close()


def event_rate(packs: int, seconds: float, step_s: float | None) -> dict[str, float]:
    command = [sys.executable, "-m", "gateway.cli", "simulate", "--packs", str(packs), "--base-port", "0"]
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="dnp3-bench-") as temp,
        running_simulator(command) as endpoints,
        running_gateway(Path(temp), endpoints, {"port": port}, request_w=packs * PACK_MAX_POWER_W / 2),
    ):
        counts = uvloop.run(_count_events(port, seconds, step_s))
    return {f"{kind}_per_min": count * 60.0 / seconds for kind, count in counts.items()}


def coverage(rates: dict[str, float], packs: int, measured_packs: int) -> dict[str, float]:
    """Minutes of master outage the default buffers cover at the measured rate scaled to `packs`."""
    buffers = EventBuffers()
    scale = packs / measured_packs
    return {
        kind: getattr(buffers, kind) / (rates[f"{kind}_per_min"] * scale)
        for kind in ("analog", "binary")
        if rates[f"{kind}_per_min"] > 0
    }


def print_polls(packs: int, polls: Mapping[str, Any]) -> None:
    """Both masters' integrity polls side by side, with the outstation's share of each."""
    print(f"integrity poll, {packs} packs ({polls['map']} map), medians:", flush=True)
    print(f"{'':<34}{'compiled (opendnp3)':>20}{'dnp3py':>12}{'ratio':>8}", flush=True)
    for label, key in (
        ("poll wall time ms", "poll_median_ms"),
        ("poll p90 ms", "poll_p90_ms"),
        ("outstation CPU ms per poll", "outstation_cpu_ms_per_poll"),
        ("outstation share of the poll", "outstation_share_of_poll"),
        ("master CPU ms per poll", "master_cpu_ms_per_poll"),
    ):
        compiled, python = float(polls["compiled"][key]), float(polls["dnp3py"][key])
        ratio = f"{python / compiled:.2f}" if compiled else "-"
        print(f"{label:<34}{compiled:>20.2f}{python:>12.2f}{ratio:>8}", flush=True)
    print(
        f"fragments {polls['compiled']['fragments']}, points {polls['dnp3py']['static_points']}, "
        f"outstation idle {polls['outstation_idle_cpu_pct']:.1f} % of a core (taken off), gateway publish "
        f"p50/p99 {polls['gateway_publish_p50_ms']}/{polls['gateway_publish_p99_ms']} ms",
        flush=True,
    )


def write_json(path: Path | None, results: Mapping[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--packs", type=int, default=500)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument(
        "--integrity-only", action="store_true", help="only the integrity polls (both masters)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 packs, 3 polls, integrity only")
    parser.add_argument("--latency-packs", type=int, default=8)
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--event-rate-packs", type=int, default=8)
    parser.add_argument("--event-rate-s", type=float, default=120.0)
    parser.add_argument("--dispatch-step-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.packs, args.polls, args.integrity_only = 10, 3, True
    print(f"dnp3_bench: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, Any] = {"packs": args.packs, "load_average_at_start": list(os.getloadavg())}
    results["integrity_poll"] = integrity_poll(args.packs, args.polls)
    print_polls(args.packs, results["integrity_poll"])
    if args.integrity_only:
        write_json(args.json, results)
        return 0
    results["publish_cpu"] = publish_cpu(args.packs)
    print(f"publish CPU, {args.packs} packs: {json.dumps(results['publish_cpu'])}", flush=True)
    results["unsolicited"] = unsolicited_latency(args.latency_packs, args.latency_samples)
    print(
        f"unsolicited latency, {args.latency_packs} packs: {json.dumps(results['unsolicited'])}", flush=True
    )
    for scenario, step_s in (("steady", None), ("dispatch", args.dispatch_step_s)):
        if args.event_rate_s <= 0:
            break
        rates = event_rate(args.event_rate_packs, args.event_rate_s, step_s)
        results[f"event_rate_{scenario}"] = {"packs": args.event_rate_packs, "step_s": step_s, **rates}
        results[f"buffer_minutes_{scenario}"] = {
            f"{args.event_rate_packs}_packs": coverage(rates, args.event_rate_packs, args.event_rate_packs),
            f"{args.packs}_packs": coverage(rates, args.packs, args.event_rate_packs),
        }
        print(f"event rate, {scenario}: {json.dumps(results[f'event_rate_{scenario}'])}", flush=True)
        print(
            f"default buffers cover (minutes): {json.dumps(results[f'buffer_minutes_{scenario}'])}",
            flush=True,
        )
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
