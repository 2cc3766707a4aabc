"""The full gateway pipeline at scale: how many packs one core balances in a paced 100 ms cycle.

    python -m bench.pipeline [--packs 200 500 1000] [--cycles 600 | --seconds S] [--profile-seconds 10]
                             [--pollers K] [--repeat R] [--quick] [--json bench/results/pipeline.json]
                             [--northbound [dnp3 iec61850]] [--timeout-ms MS]
                             [--adapters core|anywhere|simulators]

Method, per N: ceil(N / 125) `socgw simulate --packs K --base-port 0` processes (microstore/mp2000 packs
at real-time speed, bench.poll_scale's Simulators) pinned to CPU 1, and the gateway in its own process
pinned to CPU 0 (every thread of it: the asyncio/uvloop loop, the DNP3 stack's threads, the IEC 61850
server and updater threads): `serve()` of `socgw run` (Engine.run + the DNP3 outstation + the IEC 61850
MMS server, default maps) from a generated site config. Every cycle polls every pack, dispatches,
writes changed setpoints and publishes to both adapters. The site request steps between 25 % and 50 %
of the fleet's rated discharge power every 10 s, as a dispatching SCADA would, so every pack's
setpoint moves (writes) and the published values move. The gateway records every cycle (Engine's own
step timings and overrun flag, and its process CPU time). After all nodes are good and a 5 s warm-up,
the parent marks a window of `--seconds`; inside it: cycle p50/p99/max (poll start to publish end),
per step p50/p99, overruns (a cycle ending past its deadline, Engine's definition), nodes not good,
the cycle p99 and overruns of each third of the window (how much they move on a shared machine),
CPU per pack-cycle (the core process's CPU over the window / (N x cycles); each child of the core, an
adapter (`--section X`) or a polling process, with its own children, likewise, from /proc/PID/stat),
the simulators' CPU (% of one core and of the machine), the CPU per thread (from /proc/PID/task), RSS
and its peak (/proc/PID/status), and from the core's sessions at the window's marks: setpoint writes
per pack per minute (mean and the busiest pack), reconnects, timeouts of packs whose answer came after
(`late_answers`) and timeouts not declared because the answer waited in the socket buffer
(`answers_waiting`). `--pollers K` writes `site.pollers: K` (only above 1, so a gateway without the key
still runs the bench) and then pins nothing: the pollers are there to use the second core, and the
simulators share it (their share says how much). `--repeat R` runs each N R times and keeps the run
with the median core CPU, with every run's key figures and their medians. A table at the end puts every
N side by side: the core's and each child's µs per pack-cycle, the ratio to the first N and to the
issue's 100 µs target, cycle p50/p99, overruns, the simulators' share. Then `--profile-seconds` of
cProfile on the loop thread (the numbers of that part are not in the timings): the top functions by own
time, and own time grouped by area (pymodbus, asyncio, socgw southbound/northbound/balancer, ...).
Maps as the docs advise a site: above 256 packs mappings/dnp3/large.yaml (the default has no room)
and mappings/iec61850/large.yaml (no buffered report per pack; `--iec61850-map` forces one).
With 1 CPU nothing is pinned. `--northbound` with no name runs the engine alone (no adapter process);
`--timeout-ms 1000` gives every node a 1 s request timeout, so a loaded machine times out no pack that
answers when only the core's CPU is compared. `--adapters` places the adapter processes (each of their
threads) once every pack answers: `core` (the default) leaves them pinned with the core on CPU 0;
`anywhere` unpins them, so the core alone keeps CPU 0 and they share the machine with the simulators;
`simulators` pins them beside the simulators, so CPU 0 is the core's alone: the core's process on one
core, as on an appliance with a core for the adapters. Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import uvloop

from bench.poll_scale import Simulators
from gateway.commands.demo import stop_process
from gateway.commands.run import configure_logging, serve, site_fieldbus
from gateway.config import ConfigError, load_config
from gateway.engine import Engine
from gateway.fleet import Quality
from gateway.mapping.dnp3 import DEFAULT_MAP, LARGE_MAP, find_map, load_dnp3_map
from gateway.northbound.iec61850.settings import BUFFERED_REPORT_PACKS
from gateway.sim.fleet import Endpoint
from gateway.site_command import CommandUpdate
from gateway.southbound.pollers.process import CHILD_MODULE as POLLER_MODULE
from gateway.status import read_status
from gateway.timing import CycleStats, percentile

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
LOOPBACK = "127.0.0.1"
CYCLE_MS = 100.0
PACK_RATED_W = 1200.0  # microstore/mp2000, the simulator's default pack
PACKS_PER_SIMULATOR = 125
GATEWAY_CPU = 0
ONLINE_TIMEOUT_S = 180.0
GATEWAY_STOP_S = 60.0  # a gateway writing its safe setpoints to 1000 packs on a loaded machine
WARMUP_S = 5.0
REQUEST_STEP_S = 10.0
ADAPTERS = ("dnp3", "iec61850")
STEPS = ("poll", "dispatch", "write", "publish", "total")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the gateway side (child process) ----------------------------------------------------------


@dataclass
class RecordingStats(CycleStats):
    """Engine's CycleStats, plus every cycle's (monotonic end, process CPU, steps, overrun, not good)."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    engine: Engine | None = None

    def record(self, step_ms: Mapping[str, float], overrun: bool) -> None:
        super().record(step_ms, overrun)
        last = self.engine.last if self.engine is not None else None
        not_good = 0 if last is None else sum(1 for n in last.fleet.nodes if n.quality is not Quality.GOOD)
        self.samples.append(
            {
                "t": time.monotonic(),
                "cpu": time.process_time(),
                "steps": {step: round(ms, 3) for step, ms in step_ms.items()},
                "overrun": overrun,
                "not_good": not_good,
            }
        )


class Recorder:
    """SIGUSR1 marks the window's start (thread names, write count); SIGUSR2 its end and starts cProfile
    for `profile_s`; SIGTERM writes everything to `path` as JSON and stops the gateway."""

    def __init__(self, engine: Engine, path: Path, profile_s: float) -> None:
        self.engine, self.path, self.profile_s = engine, path, profile_s
        self.stats = RecordingStats(engine=engine)
        engine.stats = self.stats
        self.marks: dict[str, Any] = {}
        self.profiler = cProfile.Profile()

    def start_window(self) -> None:
        self.marks["threads"] = {str(t.native_id): t.name for t in threading.enumerate()}
        self.marks["counters_start"] = southbound_counters(self.engine)
        self.marks["gc_start"] = [generation["collections"] for generation in gc.get_stats()]
        self.marks["cycles_start"] = self.stats.cycles

    def end_window(self) -> None:
        self.marks["counters_end"] = southbound_counters(self.engine)
        self.marks["gc_end"] = [generation["collections"] for generation in gc.get_stats()]
        self.marks["cycles_end"] = self.stats.cycles
        pace = getattr(self.engine, "pace", None)  # the stretched period, if this engine has one
        if pace is not None:
            self.marks["period_ms_end"] = round(pace.period_s * 1000.0, 1)
        if self.profile_s > 0:
            self.profiler.enable()
            asyncio.get_running_loop().call_later(self.profile_s, self.profiler.disable)

    def save(self) -> None:
        self.profiler.disable()
        document: dict[str, Any] = {"samples": self.stats.samples, **self.marks}
        if self.profile_s > 0:
            with contextlib.suppress(TypeError):  # pstats refuses an empty profile (stopped early)
                document["profile"] = profile_summary(pstats.Stats(self.profiler))
        self.path.write_text(json.dumps(document))


def southbound_counters(engine: Engine) -> dict[str, dict[str, int]]:
    """Per node: setpoint writes, connections made, answers that came after their timeout (a timeout of a
    pack that answered), timeouts not declared because the answer was waiting in the socket buffer.
    From the core's sessions; with the nodes polled in other processes (`site.pollers`) the core may hold
    none, and then only the writes the status shows are known."""
    found: dict[str, dict[str, int]] = {}
    for session in getattr(engine.fieldbus, "sessions", ()):
        link = getattr(session, "link", None)
        found[session.node_id] = {
            "writes": session.writes.writes_total,
            "connects": int(getattr(session, "connects", 0)),
            "late_answers": int(getattr(link, "late_answers", 0)),
            "answers_waiting": int(getattr(link, "answers_waiting", 0)),
        }
    if not found:
        for node in engine.status().get("nodes", []):
            found[str(node["id"])] = {"writes": int(node.get("writes") or 0)}
    return found


async def step_requests(
    engine: Engine, low_w: float, high_w: float, step_s: float, stop: asyncio.Event
) -> None:
    high = False
    while not stop.is_set():
        engine.submit(CommandUpdate(source="bench", request_w=high_w if high else low_w))
        high = not high
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=step_s)


async def serve_recorded(
    config_path: Path, record: Path, profile_s: float, requests_w: tuple[float, float], step_s: float
) -> None:
    config = load_config(config_path)
    engine = Engine(config, fieldbus=site_fieldbus(config))  # as `socgw run`: pollers when configured
    recorder = Recorder(engine, record, profile_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def save_and_stop() -> None:
        recorder.save()  # before the shutdown: a crash while stopping must not lose the measurement
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, save_and_stop)
    loop.add_signal_handler(signal.SIGINT, save_and_stop)
    loop.add_signal_handler(signal.SIGUSR1, recorder.start_window)
    loop.add_signal_handler(signal.SIGUSR2, recorder.end_window)
    stepper = asyncio.create_task(step_requests(engine, *requests_w, step_s, stop))
    try:
        await serve(engine, stop)
    finally:
        stop.set()
        await stepper


# --- where the loop's time goes (cProfile) -----------------------------------------------------

AREAS = (  # the first match of a path fragment names the area
    ("/pymodbus/", "pymodbus (Modbus client)"),
    ("/gateway/southbound/", "socgw southbound (sessions, codec use)"),
    ("/gateway/profiles/", "socgw profile codec"),
    ("/gateway/northbound/dnp3", "socgw DNP3 adapter"),
    ("/gateway/northbound/iec61850", "socgw IEC 61850 adapter"),
    ("/gateway/northbound/", "socgw northbound (shared)"),
    ("/gateway/balancer", "socgw balancer"),
    ("/gateway/fleet", "socgw fleet snapshot"),
    ("/gateway/", "socgw engine and the rest"),
    ("/asyncio/", "asyncio"),
    ("/uvloop/", "uvloop"),
    ("opendnp3", "opendnp3 binding"),
    ("pyiec61850", "libiec61850 binding"),
)


def area_of(filename: str, function: str) -> str:
    for fragment, area in AREAS:
        if fragment in filename:
            return area
    if filename == "~":  # C functions: built-ins and extension methods
        if "uvloop" in function or "Loop" in function or "socket" in function:
            return "uvloop / sockets (C)"
        return "built-ins (C)"
    return "other Python"


def profile_summary(stats: pstats.Stats, top: int = 25) -> dict[str, Any]:
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    areas: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_, calls, own_s, cumulative_s, _) in raw.items():
        area = area_of(filename, name)
        areas[area] = areas.get(area, 0.0) + own_s
        short = filename.split("site-packages/")[-1].split(f"{REPO}/")[-1]
        short = short.split(f"python{sys.version_info.major}.{sys.version_info.minor}/")[-1]
        functions.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "own_s": round(own_s, 4),
                "own_pct": round(100.0 * own_s / total, 1),
                "cumulative_s": round(cumulative_s, 4),
            }
        )
    functions.sort(key=lambda f: -float(str(f["own_s"])))
    return {
        "profiled_s": round(total, 3),
        "areas_pct": {
            a: round(100.0 * s / total, 1) for a, s in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "top_own_time": functions[:top],
    }


# --- the parent: simulators, the gateway process, the window -----------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_split(pollers: int = 1) -> tuple[set[int] | None, set[int] | None]:
    """(gateway CPUs, everything else's CPUs): CPU 0 and the rest, or (None, None) on one CPU or when
    the gateway polls from several processes (they are there to use more than one core)."""
    allowed = set(range(os.cpu_count() or 1))
    if len(allowed) < 2 or pollers > 1:
        return None, None
    return {GATEWAY_CPU}, allowed - {GATEWAY_CPU}


def site_maps(packs: int, iec61850_map: str | None = None) -> dict[str, str]:
    """The map each adapter serves for this fleet size, as the docs advise a site: the large maps above
    what the defaults are made for (DNP3: no room; IEC 61850: a buffered report per pack costs too much).
    `iec61850_map` forces the IEC 61850 one (for a side-by-side run)."""
    dnp3_default = load_dnp3_map(find_map(DEFAULT_MAP, REPO)).max_nodes
    iec61850_auto = LARGE_MAP if packs > BUFFERED_REPORT_PACKS else DEFAULT_MAP
    return {
        "dnp3": LARGE_MAP if packs > dnp3_default else DEFAULT_MAP,
        "iec61850": iec61850_map or iec61850_auto,
    }


def write_site_config(
    directory: Path,
    endpoints: Sequence[Endpoint],
    northbound: Mapping[str, Any],
    request_w: float,
    *,
    iec61850_map: str | None = None,
    pollers: int = 1,
    timeout_ms: float | None = None,
) -> Path:
    """A gateway.yaml for the simulated packs with both northbound adapters (JSON is YAML). Every
    simulator process numbers its packs from pack-01, so several of them get the ids renumbered.
    `site.pollers` is written only above 1, so the bench runs on a gateway that does not know the key;
    `timeout_ms` (each node's request timeout) only when given: the profile's own otherwise."""
    ids = [e.pack_id for e in endpoints]
    if len(set(ids)) < len(ids):
        ids = [f"pack-{i + 1:04d}" for i in range(len(ids))]
    maps = site_maps(len(ids), iec61850_map)
    northbound = {  # MQTT has no map
        name: {**section, "map": maps[name]} if name in maps else dict(section)
        for name, section in northbound.items()
    }
    site: dict[str, Any] = {"name": "bench", "cycle_ms": CYCLE_MS}
    if pollers > 1:
        site["pollers"] = pollers
    timeout = {} if timeout_ms is None else {"timeout_ms": timeout_ms}
    document = {
        "site": site,
        "nodes": [
            {"id": node_id, "host": e.host, "port": e.port, "unit": e.unit_id, "profile": e.profile_key}
            | timeout
            for node_id, e in zip(ids, endpoints, strict=True)
        ],
        "command": {"default_request_w": request_w, "timeout_s": 31_536_000},
        "logging": {"level": "warning", "balancing_log": None},
        "status": {"socket": str(directory / "status.sock")},
        "northbound": northbound,
    }
    path = directory / "gateway.yaml"
    path.write_text(json.dumps(document))
    return path


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) per thread id of a process."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            found[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a process; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def child_label(pid: int) -> str:
    """What a child of the gateway is: its northbound section (`--section X`), `poller` for a polling
    process (a second one gets `#2`), else what it runs (`-m module` or the script)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return f"pid {pid}"
    if "--section" in args[:-1]:
        return args[args.index("--section") + 1]
    rest = args[args.index("-m") + 1 :] if "-m" in args[:-1] else args[1:]
    if rest and rest[0] == POLLER_MODULE:
        return "poller"
    return (rest[0] if rest and rest[0] else "") or Path(args[0]).name


def children_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
    """(label, CPU seconds of it and its own descendants) of each child process of the gateway, by pid."""
    found: dict[int, tuple[str, float]] = {}
    for child in children_of(pid):
        family, cpu_s = [child], 0.0
        while family:
            member = family.pop()
            cpu_s += process_cpu_s(member)
            family += children_of(member)
        found[child] = (child_label(child), cpu_s)
    return found


def children_us_per_pack_cycle(
    before: Mapping[int, tuple[str, float]], after: Mapping[int, tuple[str, float]], pack_cycles: int
) -> dict[str, float]:
    """Each child's CPU over the window per pack-cycle, by label (a second child of one label gets
    `#2`). A child restarted inside the window has a new pid and is not counted: it has no start."""
    found: dict[str, float] = {}
    for pid, (label, cpu_s) in sorted(after.items()):
        if pid not in before:
            continue
        name, copy = label, 1
        while name in found:
            copy += 1
            name = f"{label} #{copy}"
        found[name] = round((cpu_s - before[pid][1]) * 1e6 / pack_cycles, 1)
    return found


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


@dataclass
class GatewayProcess:
    """The recording gateway (`python -m bench.pipeline --serve`) in its own process."""

    process: subprocess.Popen[bytes]
    status: Path
    record: Path
    nodes: int
    window: tuple[float, float] = (0.0, 0.0)
    cpu_before: dict[int, float] = field(default_factory=dict)
    cpu_after: dict[int, float] = field(default_factory=dict)
    children_before: dict[int, tuple[str, float]] = field(default_factory=dict)
    children_after: dict[int, tuple[str, float]] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, Any] = field(default_factory=dict)

    def wait_online(self, timeout_s: float = ONLINE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with status {self.process.returncode}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                nodes = read_status(self.status, timeout_s=5.0).get("nodes") or []
                if len(nodes) == self.nodes and all(node["quality"] == "good" for node in nodes):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"not all {self.nodes} nodes came online within {timeout_s:.0f} s")

    def start_window(self) -> None:
        self.cpu_before = thread_cpu_s(self.process.pid)
        self.children_before = children_cpu_s(self.process.pid)
        self.process.send_signal(signal.SIGUSR1)
        self.window = (time.monotonic(), 0.0)

    def end_window(self) -> None:
        self.window = (self.window[0], time.monotonic())
        self.cpu_after = thread_cpu_s(self.process.pid)
        self.children_after = children_cpu_s(self.process.pid)
        self.memory = memory_kib(self.process.pid)
        self.process.send_signal(signal.SIGUSR2)
        time.sleep(0.5)  # handled before a SIGTERM that may follow (the loop takes signals in any order)

    def result(self) -> dict[str, Any]:
        """What the gateway recorded (read when it stopped)."""
        if not self.recorded:
            raise RuntimeError(f"the gateway (exit status {self.process.returncode}) left no record")
        return self.recorded


def start_pinned(
    command: Sequence[str], cpus: set[int] | None, environment: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in the repository, on `cpus` (None: anywhere), with `environment` added to ours."""

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    env = None if environment is None else {**os.environ, **environment}
    return subprocess.Popen(command, cwd=REPO, preexec_fn=pin, env=env)  # noqa: PLW1509 - only sets affinity


@contextlib.contextmanager
def gateway_process(
    directory: Path,
    endpoints: Sequence[Endpoint],
    northbound: Mapping[str, Any],
    cpus: set[int] | None,
    *,
    profile_s: float = 0.0,
    request_low_w: float | None = None,
    request_high_w: float | None = None,
    iec61850_map: str | None = None,
    pollers: int = 1,
    request_step_s: float = REQUEST_STEP_S,
    timeout_ms: float | None = None,
) -> Iterator[GatewayProcess]:
    """Start the recording gateway for these packs (pinned to `cpus`) and wait until every node is good."""
    rated_w = len(endpoints) * PACK_RATED_W
    low_w = rated_w / 4 if request_low_w is None else request_low_w
    high_w = rated_w / 2 if request_high_w is None else request_high_w
    config = write_site_config(
        directory,
        endpoints,
        northbound,
        low_w,
        iec61850_map=iec61850_map,
        pollers=pollers,
        timeout_ms=timeout_ms,
    )
    record = directory / "record.json"

    command = [sys.executable, "-m", "bench.pipeline", "--serve", str(config), "--record", str(record)]
    command += ["--profile-seconds", str(profile_s), "--request-w", str(low_w), str(high_w)]
    command += ["--request-step-s", str(request_step_s)]
    process = start_pinned(command, cpus)
    gateway = GatewayProcess(process, directory / "status.sock", record, len(endpoints))
    try:
        gateway.wait_online()
        yield gateway
    finally:
        stop_process(process, GATEWAY_STOP_S)
        with contextlib.suppress(OSError, ValueError):
            gateway.recorded = json.loads(record.read_text())


def window_samples(samples: Sequence[dict[str, Any]], window: tuple[float, float]) -> list[dict[str, Any]]:
    return [s for s in samples if window[0] <= s["t"] <= window[1]]


def cycle_summary(samples: Sequence[dict[str, Any]], packs: int) -> dict[str, Any]:
    """Cycle timings, overruns and CPU per pack-cycle of the samples of one window."""
    if not samples:
        raise RuntimeError("no cycle ended inside the measured window")
    totals = [float(s["steps"]["total"]) for s in samples]
    steps = {
        step: {
            "p50_ms": round(percentile([s["steps"][step] for s in samples], 0.5), 2),
            "p99_ms": round(percentile([s["steps"][step] for s in samples], 0.99), 2),
        }
        for step in STEPS
    }
    overran = [s for s in samples if s["overrun"]]
    overrun_steps = {
        step: round(percentile([s["steps"][step] for s in overran], 0.5), 2) for step in STEPS if overran
    }
    # The window cut in three: how much the figures move from one third to the next on this shared machine.
    first_t, span_t = samples[0]["t"], max(samples[-1]["t"] - samples[0]["t"], 1e-9)
    thirds: list[list[dict[str, Any]]] = [[], [], []]
    for sample in samples:
        thirds[min(2, int(3.0 * (sample["t"] - first_t) / span_t))].append(sample)
    cycles = len(samples)
    cpu_s = samples[-1]["cpu"] - samples[0]["cpu"]
    span_s = samples[-1]["t"] - samples[0]["t"]
    return {
        "cycles": cycles,
        "cycles_per_s": round((cycles - 1) / span_s, 2) if span_s > 0 else 0.0,
        "cycle_p50_ms": round(percentile(totals, 0.5), 2),
        "cycle_p99_ms": round(percentile(totals, 0.99), 2),
        "cycle_max_ms": round(max(totals), 2),
        "overruns": sum(1 for s in samples if s["overrun"]),
        "thirds": [
            {
                "cycle_p99_ms": round(percentile([float(s["steps"]["total"]) for s in third], 0.99), 2),
                "cycles": len(third),
                "overruns": sum(1 for s in third if s["overrun"]),
            }
            for third in thirds
            if third
        ],
        "not_good_node_cycles": sum(int(s["not_good"]) for s in samples),
        "steps_ms": steps,
        "overrun_cycles_steps_p50_ms": overrun_steps,
        "cpu_us_per_pack_cycle": round(cpu_s * 1e6 / (packs * max(1, cycles - 1)), 1),
        "gateway_cpu_pct": round(100.0 * cpu_s / span_s, 1) if span_s > 0 else 0.0,
    }


def thread_split(gateway: GatewayProcess, names: Mapping[str, str]) -> dict[str, float]:
    """CPU % of one core per thread name over the window (unnamed threads are the C stacks' own)."""
    span_s = gateway.window[1] - gateway.window[0]
    split: dict[str, float] = {}
    for tid, after in gateway.cpu_after.items():
        used = after - gateway.cpu_before.get(tid, 0.0)
        if tid == gateway.process.pid:
            name = "main (asyncio loop)"
        else:
            name = names.get(str(tid), "native threads (opendnp3, libiec61850)")
        split[name] = split.get(name, 0.0) + used
    return {
        name: round(100.0 * used / span_s, 1) for name, used in sorted(split.items(), key=lambda kv: -kv[1])
    }


@dataclass(frozen=True)
class Plan:
    seconds: float
    profile_s: float
    packs_per_sim: int
    adapters: tuple[str, ...] = ADAPTERS
    iec61850_map: str | None = None  # None: as site_maps advises for the fleet size
    pollers: int = 1  # site.pollers (written only above 1)
    request_step_s: float = REQUEST_STEP_S  # the site request moves between 25 % and 50 % this often
    timeout_ms: float | None = None  # every node's request timeout (None: the profile's)
    adapters_on: str = "core"  # ADAPTER_PLACES: where the adapter processes run (the core stays on CPU 0)


# Where `--adapters` puts the adapter processes: with the core (as started), on any CPU, or beside the
# simulators (off the core's CPU).
ADAPTER_PLACES: Final = ("core", "anywhere", "simulators")


def move_children(gateway_pid: int, cpus: set[int]) -> None:
    """Every thread of each child process of the gateway runs on `cpus` (threads they start later
    inherit it); the gateway's own process stays where it is pinned."""
    for child in children_of(gateway_pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{child}/task").iterdir():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task.name), cpus)


def run_one(packs: int, plan: Plan) -> dict[str, Any]:
    gateway_cpus, other_cpus = cpu_split(plan.pollers)
    if other_cpus:
        os.sched_setaffinity(0, other_cpus)  # this process and the simulators stay off the gateway's core
    with (
        tempfile.TemporaryDirectory(prefix="socgw-pipeline-") as temp,
        Simulators(packs, plan.packs_per_sim, other_cpus) as simulators,
    ):
        # Picked once the simulators listen, so their ports cannot take these.
        northbound = {adapter: {"host": LOOPBACK, "port": free_port()} for adapter in plan.adapters}
        started = time.monotonic()
        with gateway_process(
            Path(temp),
            simulators.endpoints,
            northbound,
            gateway_cpus,
            profile_s=plan.profile_s,
            iec61850_map=plan.iec61850_map,
            pollers=plan.pollers,
            request_step_s=plan.request_step_s,
            timeout_ms=plan.timeout_ms,
        ) as gateway:
            online_s = time.monotonic() - started
            if plan.adapters_on == "anywhere":
                move_children(gateway.process.pid, set(range(os.cpu_count() or 1)))
            elif plan.adapters_on == "simulators" and other_cpus:
                move_children(gateway.process.pid, other_cpus)
            time.sleep(WARMUP_S)
            load_before = os.getloadavg()[0]
            simulators_before = sum(process_cpu_s(p.pid) for p in simulators.processes)
            gateway.start_window()
            time.sleep(plan.seconds)
            gateway.end_window()
            simulators_cpu_s = sum(process_cpu_s(p.pid) for p in simulators.processes) - simulators_before
            time.sleep(plan.profile_s + 0.5 if plan.profile_s > 0 else 0.0)
        document = gateway.result()
        simulator_processes = len(simulators.processes)
    samples = window_samples(document["samples"], gateway.window)
    pack_cycles = packs * max(1, len(samples) - 1)
    window_s = gateway.window[1] - gateway.window[0]
    children = children_us_per_pack_cycle(gateway.children_before, gateway.children_after, pack_cycles)
    maps = site_maps(packs, plan.iec61850_map)
    result: dict[str, Any] = {
        "packs": packs,
        "pollers": plan.pollers,
        "request_timeout_ms": plan.timeout_ms,
        "gateway_pinned_to_one_cpu": gateway_cpus is not None,
        "adapters_on": plan.adapters_on if gateway_cpus is not None else "anywhere",
        "simulator_processes": simulator_processes,
        "maps": {name: maps[name] for name in plan.adapters},
        "window_s": round(window_s, 1),
        "start_to_all_good_s": round(online_s, 1),
        **cycle_summary(samples, packs),
        **southbound_summary(document, window_s),
        "rss_mib": round(gateway.memory.get("VmRSS", 0) / 1024.0, 1),
        "rss_peak_mib": round(gateway.memory.get("VmHWM", 0) / 1024.0, 1),
        "thread_cpu_pct": thread_split(gateway, document.get("threads", {})),
        "adapter_cpu_us_per_pack_cycle": {
            name: us for name, us in children.items() if name.split(" #")[0] in plan.adapters
        },
        # Children that are not adapters (polling processes with `site.pollers`).
        "other_children_cpu_us_per_pack_cycle": {
            name: us for name, us in children.items() if name.split(" #")[0] not in plan.adapters
        },
        "simulators_cpu_pct_of_one_core": round(100.0 * simulators_cpu_s / window_s, 1),
        "simulators_share_of_machine_pct": round(
            100.0 * simulators_cpu_s / (window_s * (os.cpu_count() or 1)), 1
        ),
        "gc_collections_per_cycle": gc_per_cycle(document),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "gateway_exit_status": gateway.process.returncode,  # 0: it stopped cleanly on SIGTERM
    }
    if "profile" in document:
        result["profile"] = document["profile"]
    return result


def southbound_summary(document: Mapping[str, Any], window_s: float) -> dict[str, Any]:
    """What the window did to the packs, from the counters at its marks (southbound_counters): setpoint
    writes (in all, per pack per minute, and the busiest pack's), reconnects, timeouts of packs whose
    answer then came (`late_answers`: 0 is the aim), timeouts not declared because the answer was
    waiting in the socket buffer (`answers_waiting`: the loop was late, the pack was not)."""
    start: Mapping[str, Mapping[str, int]] = document.get("counters_start", {})
    end: Mapping[str, Mapping[str, int]] = document.get("counters_end", {})
    minutes = max(window_s, 1e-9) / 60.0

    def grown(key: str) -> list[int]:
        # A reconnect starts a link's own counts over: then the count since is all of it.
        return [
            after[key] - start[node][key] if after[key] >= start[node][key] else after[key]
            for node, after in end.items()
            if node in start and key in after and key in start[node]
        ]

    writes = grown("writes")
    summary: dict[str, Any] = {
        "setpoint_writes": sum(writes),
        "writes_per_pack_per_min": round(sum(writes) / max(1, len(writes)) / minutes, 2),
        "writes_per_pack_per_min_max": round(max(writes, default=0) / minutes, 2),
    }
    for name, key in (
        ("reconnects", "connects"),
        ("late_answers", "late_answers"),
        ("answers_waiting", "answers_waiting"),
    ):
        counts = grown(key)
        summary[name] = sum(counts) if counts else None  # None: not known (the nodes polled elsewhere)
    if "period_ms_end" in document:
        summary["cycle_period_ms_at_end"] = document["period_ms_end"]
    return summary


def gc_per_cycle(document: Mapping[str, Any]) -> list[float]:
    """The core's garbage collections per cycle in the window, by generation (0, 1, 2)."""
    cycles = max(1, int(document.get("cycles_end", 0)) - int(document.get("cycles_start", 0)))
    start, end = document.get("gc_start", [0, 0, 0]), document.get("gc_end", [0, 0, 0])
    return [round((after - before) / cycles, 2) for before, after in zip(start, end, strict=True)]


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 1024.0 / 1024.0
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def print_row(result: Mapping[str, Any]) -> None:
    print(
        f"{result['packs']:>5} {result['cycles']:>6} {result['cycle_p50_ms']:>8.1f} "
        f"{result['cycle_p99_ms']:>8.1f} "
        f"{result['cycle_max_ms']:>8.1f} {result['overruns']:>8} {result['cpu_us_per_pack_cycle']:>10.1f} "
        f"{result['gateway_cpu_pct']:>6.1f} {result['rss_mib']:>7.1f} {result['not_good_node_cycles']:>8} "
        f"{result['load_average_1min'][1]:>5.2f}",
        flush=True,
    )
    steps = " ".join(f"{k} {v['p50_ms']}/{v['p99_ms']}" for k, v in result["steps_ms"].items())
    print(f"      steps p50/p99 ms: {steps}; threads % of a core: {result['thread_cpu_pct']}", flush=True)
    print(
        f"      child processes, µs CPU per pack-cycle: {result['adapter_cpu_us_per_pack_cycle']} "
        f"{result['other_children_cpu_us_per_pack_cycle']}; simulators "
        f"{result['simulators_cpu_pct_of_one_core']} % of a core "
        f"({result['simulators_share_of_machine_pct']} % of the machine)",
        flush=True,
    )
    print(
        f"      writes/pack/min {result['writes_per_pack_per_min']} "
        f"(busiest {result['writes_per_pack_per_min_max']}), "
        f"reconnects {result['reconnects']}, timeouts of answering packs {result['late_answers']}, "
        f"answers found waiting {result['answers_waiting']}",
        flush=True,
    )
    if "profile" in result:
        print(f"      loop profile (own time): {result['profile']['areas_pct']}", flush=True)


# The figures a repeated run gives as medians (with their spread), and the side-by-side table's columns.
REPEATED = (
    "cpu_us_per_pack_cycle",
    "cycle_p50_ms",
    "cycle_p99_ms",
    "overruns",
    "simulators_cpu_pct_of_one_core",
)
CORE_TARGET_US = 100.0  # issue 14: the core's CPU per pack-cycle at 500 packs


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median core CPU, with every run's key figures and their medians beside it."""
    ordered = sorted(runs, key=lambda r: float(r["cpu_us_per_pack_cycle"]))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["repeats"] = [{key: r[key] for key in REPEATED} for r in runs]
        chosen["medians_over_repeats"] = {
            key: round(statistics.median(float(r[key]) for r in runs), 2) for key in REPEATED
        }
        chosen["overruns_max_over_repeats"] = max(int(r["overruns"]) for r in runs)
    return chosen


def print_side_by_side(results: Sequence[Mapping[str, Any]]) -> None:
    """Every N in one table: the core and each child per pack-cycle, the ratios to the first N and to
    the core's target, and what the simulators took."""
    if not results:
        return
    first = float(results[0]["cpu_us_per_pack_cycle"]) or 1.0
    children = sorted(
        {
            name
            for r in results
            for name in (*r["adapter_cpu_us_per_pack_cycle"], *r["other_children_cpu_us_per_pack_cycle"])
        }
    )
    print("\nside by side (µs CPU per pack-cycle; medians of the cycles in each window):", flush=True)
    head = f"{'packs':>5} {'core':>7} " + " ".join(f"{name[:12]:>12}" for name in children)
    print(
        head + f" {'×first N':>8} {'÷target':>7} {'p50 ms':>7} {'p99 ms':>7} {'overruns':>8} {'sims %':>6}",
        flush=True,
    )
    for r in results:
        spent = {**r["adapter_cpu_us_per_pack_cycle"], **r["other_children_cpu_us_per_pack_cycle"]}
        core = float(r["cpu_us_per_pack_cycle"])
        print(
            f"{r['packs']:>5} {core:>7.1f} "
            + " ".join(f"{spent.get(name, float('nan')):>12.1f}" for name in children)
            + f" {core / first:>8.2f} {core / CORE_TARGET_US:>7.2f} {r['cycle_p50_ms']:>7.1f} "
            f"{r['cycle_p99_ms']:>7.1f} {r['overruns']:>8} {r['simulators_cpu_pct_of_one_core']:>6.1f}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packs", type=int, nargs="+", help="fleet sizes (default 200 500 1000)")
    parser.add_argument(
        "--cycles", type=int, default=600, help="window per N in cycles of 100 ms (default 600: 60 s)"
    )
    parser.add_argument("--seconds", type=float, help="measured window per N (overrides --cycles)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N; medians over them (default 1)")
    parser.add_argument(
        "--pollers",
        type=int,
        default=1,
        help="site.pollers: polling processes (default 1; above 1 nothing is pinned)",
    )
    parser.add_argument(
        "--profile-seconds", type=float, help="cProfile after each window (default 10, 0: none)"
    )
    parser.add_argument("--packs-per-sim", type=int, default=PACKS_PER_SIMULATOR)
    parser.add_argument(
        "--northbound",
        nargs="*",
        choices=ADAPTERS,
        default=list(ADAPTERS),
        help="adapters to run (default both; `--northbound` with none: the engine alone, no adapter process)",
    )
    parser.add_argument(
        "--timeout-ms",
        type=float,
        help="every node's request timeout (default the profile's; 1000 keeps a loaded machine from "
        "timing out packs that answer, when only the CPU is compared)",
    )
    parser.add_argument(
        "--adapters",
        choices=ADAPTER_PLACES,
        default="core",
        help="where the adapter processes run: pinned with the core on CPU 0 (default), on any CPU, or "
        "beside the simulators (CPU 0 then the core's alone)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N = 10 and 50, 5 s each, 2 s profile"
    )
    parser.add_argument(
        "--iec61850-map",
        help="IEC 61850 map for every N (default: `default` up to 256 packs, `large` above)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    # The gateway side, started by the parent.
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--request-w", type=float, nargs=2, default=(0.0, 0.0), help=argparse.SUPPRESS)
    parser.add_argument("--request-step-s", type=float, default=REQUEST_STEP_S, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        configure_logging("warning")
        requests_w = (float(args.request_w[0]), float(args.request_w[1]))
        profile = args.profile_seconds or 0.0
        try:
            uvloop.run(serve_recorded(args.serve, args.record, profile, requests_w, args.request_step_s))
        except ConfigError as error:  # e.g. `site.pollers` on a gateway that does not know it yet
            print(f"the generated site config was refused: {error}", file=sys.stderr)
            return 2
        return 0
    packs = args.packs or ([10, 50] if args.quick else [200, 500, 1000])
    seconds = args.seconds or (5.0 if args.quick else args.cycles * CYCLE_MS / 1000.0)
    profile_s = args.profile_seconds if args.profile_seconds is not None else (2.0 if args.quick else 10.0)
    plan = Plan(
        seconds,
        profile_s,
        args.packs_per_sim,
        tuple(args.northbound),
        args.iec61850_map,
        args.pollers,
        timeout_ms=args.timeout_ms,
        adapters_on=args.adapters,
    )
    about = machine()
    pinning = (
        f"gateway pinned to CPU {GATEWAY_CPU}, simulators ({args.packs_per_sim} packs each) to the others"
        if cpu_split(plan.pollers)[0]
        else f"nothing pinned (site.pollers {plan.pollers})"
    )
    print(
        f"pipeline: {about['cpus']} CPU(s) ({about['cpu_model']}), "
        f"load average {about['load_average_at_start']}; {pinning}; {seconds:g} s window per N",
        flush=True,
    )
    print(
        f"{'packs':>5} {'cycles':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'overruns':>8} "
        f"{'µs/pack-cyc':>10} {'CPU %':>6} {'RSS MiB':>7} {'not good':>8} {'load':>5}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for n in packs:
        runs = []
        for _ in range(max(1, args.repeat)):
            try:
                runs.append(run_one(n, plan))
            except RuntimeError as error:  # one N that cannot run must not lose the others
                print(f"{n:>5} failed: {error}", flush=True)
                failed.append({"packs": n, "error": str(error)})
                continue
            print_row(runs[-1])
        if not runs:
            continue
        results.append(median_run(runs))
        fitting = [r["packs"] for r in results if r["overruns"] == 0]
        document = {
            "benchmark": "pipeline",
            "method": __doc__,
            "machine": about,
            "cycle_ms": CYCLE_MS,
            "window_s": seconds,
            "pollers": plan.pollers,
            "repeat": args.repeat,
            "northbound": list(plan.adapters),
            "iec61850_map": plan.iec61850_map,
            "quick": args.quick,
            "largest_n_without_overrun": max(fitting) if fitting else None,
            "results": results,
            "failed": failed,
        }
        if args.json is not None:  # after every N, so a long run leaves what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(document, indent=2) + "\n")
    print_side_by_side(results)
    return 0 if results and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
