"""Freshness: from a register change inside the simulator to the value decoded by each SCADA client.

    python -m bench.freshness [--packs 200 500] [--samples 60] [--iec61850-map default|large]
                              [--watch first|last] [--variants gateway issue-start ...] [--rounds R]
                              [--quick] [--json bench/results/freshness.json]

Method, per N: the watched pack is simulated in this process (`FleetThread`, a microstore/mp2000 pack at
real-time speed) so the bench can change its state directly, the N - 1 others in `socgw simulate`
processes of 125 packs (as bench.pipeline: serving N packs inside this process, beside dnp3py decoding
their events, made the simulator's answers wait for its GIL and the core's polls for them); `socgw
run -c` runs as its own process (the core, with its DNP3, IEC 61850 and MQTT children) through
bench.stages; the core is pinned to CPU 0 and its adapter processes run on any CPU (variant
`children-with-core`: pinned with the core), while this process, the simulators, the clients and a
Mosquitto broker started here on a free loopback port stay on the other CPUs. Three independent
clients watch one pack at once (`--watch`: pack-01, polled first, or the last):
- DNP3: the master dnp3py with unsolicited responses enabled; its handler stamps every analog value as
  it decodes it (the pack's AN2018 bank SOC in 0.1 %, AI961 for pack-01).
- IEC 61850: a libiec61850 client process (tests/northbound/iec61850/client.py `report`) with the pack's
  buffered report `brcbMeas` enabled (the map's buffer time); with the large map (the advice above 256
  packs: no buffered report per pack) its unbuffered `urcbMeas`. Each report is stamped when this
  process reads the client's line (ZBAT1.Soc).
- MQTT: Eclipse Tahu's Sparkplug decoder in Node.js (tests/northbound/mqtt/peer) subscribed to the
  pack's DDATA through the broker; each decoded message is stamped when this process reads it.
Each sample sets the pack's SOC to 40 % or 60 % in turn (far beyond every deadband) and takes the time
until each client has the new value; a random pause of 0.3-0.7 s puts the next change at a random phase
of the 100 ms cycle. The aim (issue 14/15): p99 ≤ cycle + 20 ms.

Where the time goes (bench.stages stamps the watched pack in every process, on one clock; `STAGES`):
simulator (the change made), wait_poll (until the pack's next poll starts), request (until the
simulator serves it), answer (until the core hands the state to the adapter supervisor), batch (until
its NODES frame goes), channel (until the child has decoded it), handover (to the stack's thread),
apply (the stack has it), client (the client has decoded it); p50/p99 of each, and which frame of its
poll carried the value. `--variants` runs configurations alternated `--rounds` times in one run
(`VARIANTS`: the adapters' CPUs, the NODES schedule, the IEC 61850 buffer time, site.pollers), each
with its load average. Beside: the core's cycle timings and overruns over the samples (from `socgw
status`), the core's and each child's CPU per pack-cycle, the watched report block's reports per second.
Tests never assert speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import uvloop

from bench.dnp3_bench import BANK1_SOC, master
from bench.pipeline import (
    CYCLE_MS,
    GATEWAY_STOP_S,
    LOOPBACK,
    PACK_RATED_W,
    PACKS_PER_SIMULATOR,
    children_cpu_s,
    children_us_per_pack_cycle,
    cpu_split,
    free_port,
    machine,
    process_cpu_s,
    site_maps,
    start_pinned,
    write_site_config,
)
from bench.poll_scale import Simulators
from bench.stages import STAGES_VARIABLE, VARIANT_VARIABLE, Recorder
from gateway.commands.demo import stop_process
from gateway.mapping.dnp3 import LARGE_MAP
from gateway.mapping.iec61850 import find_map as find_iec61850_map
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.faults import Faults
from gateway.sim.fleet import Endpoint, FleetThread
from gateway.sim.scenario import uniform_fleet
from gateway.status import read_status
from gateway.timing import percentile
from tests.northbound.mqtt.support import Broker, Decoder

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "tests" / "northbound" / "iec61850" / "client.py"
BANK_STRIDE = 27  # AN2018 battery banks: AI955 + 27 per pack in both DNP3 maps (mappings/dnp3/)


@dataclass(frozen=True)
class Watched:
    """The pack whose SOC the samples change: the first of the poll order or the last."""

    position: int  # 1-based, in the site config's `nodes:` (the poll's order)

    @property
    def node_id(self) -> str:
        return f"pack-{self.position:02d}"  # as uniform_fleet names them

    @property
    def soc_index(self) -> int:
        return BANK1_SOC + BANK_STRIDE * (self.position - 1)

    def report_block(self, iec61850_map: str) -> str:
        domain = f"SOCGWPACK_{self.position:02d}"
        return f"{domain}/LLN0.RP.urcbMeas" if iec61850_map == LARGE_MAP else f"{domain}/LLN0.BR.brcbMeas"


GROUP, EDGE = "bench", "freshness"
SAMPLE_TIMEOUT_S = 5.0
SETTLE_S = 5.0  # from the IEC 61850 report block's enabling to the first sample
START_TIMEOUT_S = 300.0
TARGETS_PCT = (40.0, 60.0)
CLIENTS = ("dnp3_unsolicited", "iec61850_report", "mqtt_ddata")
CLIENT_SECTIONS = {"dnp3_unsolicited": "dnp3", "iec61850_report": "iec61850", "mqtt_ddata": "mqtt"}
SOC_TOLERANCE_PCT = 0.05
# From one mark to the next (bench.stages): the simulator makes the change; the pack's next poll
# starts; the simulator serves its (last) request; the answer reaches the adapter supervisor; the frame
# carrying it is encoded and offered to the children; the child decodes it; the adapter's stack thread
# takes it (DNP3: at once, on the child's loop); the stack has it; the client has decoded it.
STAGES = ("simulator", "wait_poll", "request", "answer", "batch", "channel", "handover", "apply", "client")


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
    count: int = 0  # reports received
    started: float = field(default_factory=time.perf_counter)  # when its block was enabled
    ready: threading.Event = field(default_factory=threading.Event)
    problem: str = ""

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            arrived = time.perf_counter()
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if "ready" in document:
                    self.started = arrived
                    self.ready.set()
                elif document.get("values"):
                    self.count += 1
                    soc = first_float(document["values"][0])
                    if soc is not None:
                        self.arrivals.append((arrived, soc))
                elif "error" in document or "connect_error" in document:
                    self.problem = line.strip()
                    self.ready.set()


@contextlib.contextmanager
def report_client(port: int, block: str, seconds: float) -> Iterator[ReportClient]:
    command = [sys.executable, str(CLIENT), "--port", str(port), "report", block, "--seconds", str(seconds)]
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


class StampedDecoder(Decoder):
    """Tahu's decoder (tests/northbound/mqtt/support.py), each pack-01 SOC stamped as its line is read."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.arrivals: list[tuple[float, float]] = []  # (perf_counter, soc_pct); before the reader starts
        super().__init__(port, topic_filter)

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            arrived = time.perf_counter()
            message = json.loads(line)
            for metric in message.get("payload", {}).get("metrics", []):
                if metric.get("name") == "soc_pct" and isinstance(metric.get("value"), int | float):
                    self.arrivals.append((arrived, float(metric["value"])))
            self.lines.put(message)


@dataclass
class SocgwRun:
    """`socgw run -c` in its own process, pinned to the gateway's CPUs."""

    process: subprocess.Popen[bytes]
    status: Path

    def read(self) -> dict[str, Any]:
        return read_status(self.status, timeout_s=5.0)


@contextlib.contextmanager
def socgw_run(
    config: Path, status: Path, packs: int, cpus: set[int] | None, environment: Mapping[str, str]
) -> Iterator[SocgwRun]:
    """`socgw run` through bench.stages (its stage records and variant in `environment`)."""
    command = [sys.executable, "-m", "bench.stages", "run", "-c", str(config)]
    process = start_pinned(command, cpus, environment)
    running = SocgwRun(process, status)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"socgw run exited with status {process.returncode}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                document = running.read()
                nodes = document.get("nodes") or []
                adapters = document.get("adapters") or []
                good = len(nodes) == packs and all(node["quality"] == "good" for node in nodes)
                if good and adapters and all(a["state"] == "running" for a in adapters):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not all {packs} nodes and adapters came up within {START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.5)
        yield running
    finally:
        stop_process(process, GATEWAY_STOP_S)


def arrived_at(arrivals: Sequence[tuple[float, float]], target: float, tolerance: float) -> float | None:
    return next((t for t, value in list(arrivals) if abs(value - target) <= tolerance), None)


@dataclass
class Sample:
    """One change: when it was asked and when the simulator had made it, its SOC, each client's arrival."""

    asked: float
    made: float
    target_pct: float
    arrived: dict[str, float | None]


def placed(own: Endpoint, others: Sequence[Endpoint], watched: Watched) -> list[Endpoint]:
    """The site's packs in poll order, named pack-01, pack-02...: the watched one (simulated in this
    process) at its position, the others (simulator processes) around it."""
    ordered = list(others)
    ordered.insert(watched.position - 1, own)
    return [dataclasses.replace(e, pack_id=f"pack-{n:02d}") for n, e in enumerate(ordered, start=1)]


async def take_samples(
    dnp3_port: int,
    fleet: FleetThread,
    reports: ReportClient,
    decoder: StampedDecoder,
    samples: int,
    *,
    pack_id: str,
    watched: Watched,
) -> list[Sample]:
    rng = random.Random(11)
    handler, runner = master(dnp3_port)
    await runner.open()
    taken: list[Sample] = []
    try:
        await runner.integrity_poll()
        await runner.enable_unsolicited()
        # The first samples of a run met a one-off IEC 61850 model update of 1.5 s at 200 packs just
        # after the clients connected (the report block enabled, the integrity poll): a start-up cost,
        # not the steady state measured here.
        while time.perf_counter() - reports.started < SETTLE_S:
            await runner.listen_unsolicited(timeout=0.1)
        for sample in range(samples):
            target = TARGETS_PCT[sample % 2]
            handler.arrivals.clear()
            reports.arrivals.clear()
            decoder.arrivals.clear()
            started = time.perf_counter()
            fleet.update_state(pack_id, soc_pct=target)
            arrived: dict[str, float | None] = dict.fromkeys(CLIENTS)
            taken.append(Sample(started, time.perf_counter(), target, arrived))
            deadline = started + SAMPLE_TIMEOUT_S
            while None in arrived.values() and time.perf_counter() < deadline:
                await runner.listen_unsolicited(timeout=0.02)
                soc_points = [
                    (t, value) for t, index, value in handler.arrivals if index == watched.soc_index
                ]
                arrived["dnp3_unsolicited"] = arrived["dnp3_unsolicited"] or arrived_at(
                    soc_points, target * 10, 5
                )
                arrived["iec61850_report"] = arrived["iec61850_report"] or arrived_at(
                    reports.arrivals, target, 0.5
                )
                arrived["mqtt_ddata"] = arrived["mqtt_ddata"] or arrived_at(decoder.arrivals, target, 0.05)
            await asyncio.sleep(rng.uniform(0.3, 0.7))
    finally:
        await runner.close()
    return taken


def record_served(fleet: FleetThread, pack_id: str, record: Recorder) -> None:
    """Stamp each request of the watched pack as the simulator serves it (on the fleet's thread)."""
    server = fleet.fleet._server(pack_id)
    respond = server.respond

    def recorded(unit_id: int, pdu: bytes, faults: Faults) -> bytes:
        record("served", None)
        return respond(unit_id, pdu, faults)

    server.respond = recorded  # type: ignore[method-assign]


def read_stages(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def first_record(
    records: Sequence[Mapping[str, Any]], stage: str, target: float, after: float, role: str = "core"
) -> float | None:
    """When `stage` first had the target SOC after `after` (bench.stages' records are in time order per
    process, not across them)."""
    times = [
        r["t"]
        for r in records
        if r["stage"] == stage
        and r["role"] == role
        and r["t"] >= after
        and r["soc"] is not None
        and abs(r["soc"] - target) <= SOC_TOLERANCE_PCT
    ]
    return min(times, default=None)


def stage_times(sample: Sample, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Each client's stages for one sample, in milliseconds; a client whose chain has a gap is left out."""
    answered = first_record(records, "answered", sample.target_pct, sample.asked)
    if answered is None:
        return {}
    polled = max((r["t"] for r in records if r["stage"] == "polled" and r["t"] <= answered), default=None)
    served = max((r["t"] for r in records if r["stage"] == "served" and r["t"] <= answered), default=None)
    sent = first_record(records, "sent", sample.target_pct, answered)
    if polled is None or served is None or sent is None:
        return {}
    found: dict[str, dict[str, float]] = {}
    for client, section in CLIENT_SECTIONS.items():
        received = first_record(records, "received", sample.target_pct, answered, section)
        applying = first_record(records, "applying", sample.target_pct, sample.asked, section)
        applied = first_record(records, "applied", sample.target_pct, sample.asked, section)
        decoded = sample.arrived[client]
        if received is None or applying is None or applied is None or decoded is None:
            continue
        marks = [
            sample.asked,
            sample.made,
            polled,
            served,
            answered,
            sent,
            received,
            applying,
            applied,
            decoded,
        ]
        found[client] = {
            stage: (end - start) * 1000.0 for stage, start, end in zip(STAGES, marks, marks[1:], strict=False)
        }
        found[client]["total"] = (decoded - sample.asked) * 1000.0
    return found


def breakdown(runs: Sequence[Run]) -> dict[str, Any]:
    """Per client: p50/p99 of each stage over the runs' samples whose every stage was recorded."""
    per_client: dict[str, dict[str, list[float]]] = {c: {s: [] for s in (*STAGES, "total")} for c in CLIENTS}
    for run in runs:
        for sample in run.samples:
            for client, stages in stage_times(sample, run.records).items():
                for stage, ms in stages.items():
                    per_client[client][stage].append(ms)
    return {
        client: {
            "samples": len(stages["total"]),
            **{
                stage: [round(statistics.median(ms), 1), round(percentile(ms, 0.99), 1)]
                for stage, ms in stages.items()
                if ms
            },
        }
        for client, stages in per_client.items()
    }


def carrying_frames(runs: Sequence[Run]) -> dict[str, Any]:
    """Which frame of its poll first carried each sample's value (1: the first NODES frame, 0: the
    cycle's snapshot) and how many node states it held."""
    carried: list[tuple[int, int]] = []
    for run in runs:
        for sample in run.samples:
            answered = first_record(run.records, "answered", sample.target_pct, sample.asked)
            if answered is None:
                continue
            sent = [
                r
                for r in run.records
                if r["stage"] == "sent" and r["t"] >= answered and "index" in r
                and abs(r["soc"] - sample.target_pct) <= SOC_TOLERANCE_PCT
            ]  # fmt: skip
            if sent:
                first = min(sent, key=lambda r: r["t"])
                carried.append((first["index"], first["states"]))
    if not carried:
        return {}
    indexes = [index for index, _ in carried]
    return {
        "samples": len(carried),
        "by_frame_of_poll": {str(i): indexes.count(i) for i in sorted(set(indexes))},
        "states_p50": statistics.median(states for _, states in carried),
    }


def stack_updates(runs: Sequence[Run]) -> dict[str, dict[str, list[float]]]:
    """How long each adapter's hand-over to its stack took, every call that carried the watched pack
    (its node frames and every snapshot), p50/p99/max in ms, by section and call."""
    durations: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        started: dict[tuple[str, str], float] = {}
        for r in sorted(run.records, key=lambda r: r["t"]):
            if r["stage"] not in {"applying", "applied"}:
                continue
            key = (r["section"], r["via"])
            if r["stage"] == "applying":
                started[key] = r["t"]
            elif key in started:
                ms = (r["t"] - started.pop(key)) * 1000.0
                durations.setdefault(key[0], {}).setdefault(key[1], []).append(ms)
    return {
        section: {
            via: [round(statistics.median(ms), 2), round(percentile(ms, 0.99), 1), round(max(ms), 1)]
            for via, ms in calls.items()
        }
        for section, calls in durations.items()
    }


def gc_pauses(runs: Sequence[Run]) -> dict[str, list[float]]:
    """Each adapter process's garbage collections longer than 5 ms over the runs: count, p50, max ms."""
    pauses: dict[str, list[float]] = {}
    for run in runs:
        for r in run.records:
            if r["stage"] == "gc":
                pauses.setdefault(r["section"], []).append(r["ms"])
    return {
        section: [len(ms), round(statistics.median(ms), 1), round(max(ms), 1)]
        for section, ms in pauses.items()
    }


def latencies_of(samples: Sequence[Sample]) -> tuple[dict[str, list[float]], int]:
    """Milliseconds per client, and the samples where a client's value did not arrive in time."""
    latencies: dict[str, list[float]] = {client: [] for client in CLIENTS}
    for sample in samples:
        for client, at in sample.arrived.items():
            if at is not None:
                latencies[client].append((at - sample.asked) * 1000.0)
    return latencies, sum(None in sample.arrived.values() for sample in samples)


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


@dataclass(frozen=True)
class Variant:
    """A configuration compared side by side (bench.stages applies the gateway's settings)."""

    # the adapter processes on any CPU (as the kernel places them), on the core's ("core") or on the
    # bench's ("apart"); the core itself stays on its own CPU
    children: str = "anywhere"
    pollers: int = 1  # site.pollers: above 1 nothing is pinned (bench.pipeline.cpu_split)
    batch_ms: float | None = None  # the least time between NODES frames; None: the gateway's own
    doubling_batches: bool = False  # the batch schedule before issue 14's freshness work
    child_gc_default: bool = False  # the adapter processes keep Python's collector as it starts
    buf_time_ms: int | None = None  # the IEC 61850 map's report buffer time; None: the map's own
    # every request of a poll sent before an answer is read, and a NODES frame holding every answer read
    # in one turn of the loop (the gateway before POLL_BURST and NODE_FRAME_STATES)
    whole_bursts: bool = False
    whole_polls: bool = False  # only every request of a poll sent before an answer is read

    def gateway_settings(self, other_cpus: set[int] | None) -> dict[str, Any]:
        child_cpus = {"core": None, "apart": other_cpus, "anywhere": set(range(os.cpu_count() or 1))}
        cpus = child_cpus[self.children]
        return {
            "batch_s": None if self.batch_ms is None else self.batch_ms / 1000.0,
            "doubling_batches": self.doubling_batches,
            "child_gc_default": self.child_gc_default,
            "child_cpus": sorted(cpus) if cpus else None,
            "whole_bursts": self.whole_bursts,
            "whole_polls": self.whole_polls,
        }


VARIANTS: Final[dict[str, Variant]] = {
    "gateway": Variant(),
    # what issue 14's freshness run measured: the children pinned with the core, NODES batches of 5,
    # 10, 20, 40 ms, the maps' report buffer time of 100 ms
    "issue-start": Variant(children="core", doubling_batches=True, buf_time_ms=100),
    "children-with-core": Variant(children="core"),
    "children-apart": Variant(children="apart"),
    "children-gc-default": Variant(child_gc_default=True),
    "pollers-2": Variant(pollers=2),
    "batch-doubling": Variant(doubling_batches=True),
    "batch-2ms": Variant(batch_ms=2.0),
    "batch-10ms": Variant(batch_ms=10.0),
    "buftm-0": Variant(buf_time_ms=0),
    "buftm-10": Variant(buf_time_ms=10),
    "buftm-100": Variant(buf_time_ms=100),
    "whole-bursts": Variant(whole_bursts=True),
    "whole-polls": Variant(whole_polls=True),
}


def iec61850_map_with(name: str, buf_time_ms: int, directory: Path) -> Path:
    """A copy of the named IEC 61850 map whose reports have this buffer time."""
    text = find_iec61850_map(name, REPO).read_text()
    changed, count = re.subn(r"(?m)^(\s*buf_time_ms:) \d+", rf"\g<1> {buf_time_ms}", text)
    if count != 1:
        raise RuntimeError(f"the IEC 61850 map {name} has {count} report_defaults.buf_time_ms, expected 1")
    path = directory / f"iec61850-{name}-buftm-{buf_time_ms}.yaml"
    path.write_text(changed)
    return path


@dataclass
class Run:
    """One gateway run of one variant: its samples and stage records, and the gateway's accounts."""

    samples: list[Sample]
    records: list[dict[str, Any]]
    cycles: int
    overruns: int
    cycle_p50_ms: float
    cycle_p99_ms: float
    core_us: float  # the core process's CPU per pack-cycle
    children_us: dict[str, float]
    load: tuple[float, float]
    iec61850_reports_per_s: float  # of the watched pack's report block, every report


def run_one(packs: int, samples: int, iec61850_map: str | None, variant: Variant, watched: Watched) -> Run:
    gateway_cpus, other_cpus = cpu_split(variant.pollers)
    # this process, its threads and children (broker, clients); all of them for an unpinned gateway
    os.sched_setaffinity(0, other_cpus or set(range(os.cpu_count() or 1)))
    profile = ProfileLibrary([REPO / "profiles"]).get("microstore/mp2000")
    maps = site_maps(packs, iec61850_map)
    block = watched.report_block(maps["iec61850"])
    with (
        FleetThread(uniform_fleet(1, profile, base_port=0, speed=1.0)) as fleet,
        Simulators(packs - 1, PACKS_PER_SIMULATOR, other_cpus) as others,
        tempfile.TemporaryDirectory(prefix="socgw-freshness-") as temp,
    ):
        directory = Path(temp)
        stages = directory / "stages.jsonl"
        own_id = fleet.endpoints[0].pack_id  # the watched pack's id in this process's simulator
        record_served(fleet, own_id, Recorder(str(stages), watched.node_id, "simulator"))
        broker = Broker(directory, free_port())
        served_map = maps["iec61850"]
        if variant.buf_time_ms is not None:
            served_map = str(iec61850_map_with(served_map, variant.buf_time_ms, directory))
        try:
            dnp3_port, mms_port = free_port(), free_port()
            northbound = {
                "dnp3": {"host": LOOPBACK, "port": dnp3_port, "unsolicited": True},
                "iec61850": {"host": LOOPBACK, "port": mms_port},
                "mqtt": {
                    "brokers": [{"host": LOOPBACK, "port": broker.port}],
                    "group_id": GROUP,
                    "edge_node_id": EDGE,
                },
            }
            request_w = packs * PACK_RATED_W / 4
            config = write_site_config(
                directory,
                placed(fleet.endpoints[0], others.endpoints, watched),
                northbound,
                request_w,
                iec61850_map=served_map,
                pollers=variant.pollers,
            )
            decoder = StampedDecoder(broker.port, f"spBv1.0/{GROUP}/DDATA/{EDGE}/{watched.node_id}")
            environment = {
                STAGES_VARIABLE: f"{stages}:{watched.node_id}",
                VARIANT_VARIABLE: json.dumps(variant.gateway_settings(other_cpus)),
            }
            try:
                with (
                    socgw_run(config, directory / "status.sock", packs, gateway_cpus, environment) as gateway,
                    report_client(mms_port, block, seconds=samples * 1.5 + 60.0) as reports,
                ):
                    before, children_before = gateway.read()["timing"], children_cpu_s(gateway.process.pid)
                    core_before = process_cpu_s(gateway.process.pid)
                    load_before, reports_before, since = os.getloadavg()[0], reports.count, time.monotonic()
                    sampling = take_samples(
                        dnp3_port, fleet, reports, decoder, samples, pack_id=own_id, watched=watched
                    )
                    taken = uvloop.run(sampling)
                    reports_per_s = (reports.count - reports_before) / (time.monotonic() - since)
                    after, children_after = gateway.read()["timing"], children_cpu_s(gateway.process.pid)
                    core_s = process_cpu_s(gateway.process.pid) - core_before
            finally:
                decoder.close()
            records = read_stages(stages)
        finally:
            broker.stop()
    cycles = int(after["cycles"]) - int(before["cycles"])
    return Run(
        samples=taken,
        records=records,
        cycles=cycles,
        overruns=int(after["overruns"]) - int(before["overruns"]),
        # the engine's own percentiles over its recent cycles, read at the end
        cycle_p50_ms=after["steps_ms"]["total"]["p50"],
        cycle_p99_ms=after["steps_ms"]["total"]["p99"],
        core_us=round(core_s * 1e6 / (packs * max(1, cycles)), 1),
        children_us=children_us_per_pack_cycle(children_before, children_after, packs * max(1, cycles)),
        load=(round(load_before, 2), round(os.getloadavg()[0], 2)),
        iec61850_reports_per_s=round(reports_per_s, 1),
    )


def summarize(
    packs: int, name: str, iec61850_map: str | None, watched: Watched, runs: Sequence[Run]
) -> dict[str, Any]:
    """One variant at one N over its alternated runs: the samples pooled, the gateway's accounts summed
    or averaged over the runs, and each run on its own beside."""
    maps = site_maps(packs, iec61850_map)
    taken = [sample for run in runs for sample in run.samples]
    latencies, missed = latencies_of(taken)
    labels = {label for run in runs for label in run.children_us}
    return {
        "packs": packs,
        "variant": name,
        "settings": dataclasses.asdict(VARIANTS[name]),
        "maps": maps,
        "watched": watched.node_id,
        "iec61850_report_block": watched.report_block(maps["iec61850"]),
        **{client: distribution(latencies[client]) for client in CLIENTS},
        "stages_p50_p99_ms": breakdown(runs),
        "carrying_frame": carrying_frames(runs),
        "stack_update_p50_p99_max_ms": stack_updates(runs),
        "gc_pauses_over_5ms_count_p50_max_ms": gc_pauses(runs),
        "aim_p99_ms": CYCLE_MS + 20.0,
        "samples_missing_a_value": missed,
        "gateway_cycle": {
            "cycles": sum(run.cycles for run in runs),
            "overruns": sum(run.overruns for run in runs),
            # the engine's own percentiles over its recent cycles, read at the end of each run
            "total_p50_ms": statistics.median(run.cycle_p50_ms for run in runs),
            "total_p99_ms": max(run.cycle_p99_ms for run in runs),
        },
        "core_cpu_us_per_pack_cycle": round(statistics.mean(run.core_us for run in runs), 1),
        "children_cpu_us_per_pack_cycle": {
            label: round(statistics.mean(r.children_us[label] for r in runs if label in r.children_us), 1)
            for label in sorted(labels)
        },
        "load_average_1min": [list(run.load) for run in runs],
        "runs": [
            {
                "load_average_1min": list(run.load),
                "cycles": run.cycles,
                "overruns": run.overruns,
                "core_cpu_us_per_pack_cycle": run.core_us,
                "children_cpu_us_per_pack_cycle": run.children_us,
                "iec61850_reports_per_s": run.iec61850_reports_per_s,
                "stages_p50_p99_ms": breakdown([run]),
            }
            for run in runs
        ],
    }


def print_side_by_side(results: Sequence[Mapping[str, Any]]) -> None:
    print(f"\nside by side (ms from the register change; aim p99 ≤ {CYCLE_MS + 20.0:g}):", flush=True)
    print(
        f"{'packs':>5} {'variant':<15}"
        + " ".join(f"{c + ' p50/p99':>28}" for c in CLIENTS)
        + f" {'p99 ÷ aim':>24}"
    )
    for r in results:
        cells = [f"{r[c].get('p50_ms', '-')}/{r[c].get('p99_ms', '-')}" for c in CLIENTS]
        ratios = [
            f"{float(r[c]['p99_ms']) / (CYCLE_MS + 20.0):.2f}" if "p99_ms" in r[c] else "-" for c in CLIENTS
        ]
        label = f"{r['packs']:>5} {r['variant']:<15}"
        print(label + " ".join(f"{cell:>28}" for cell in cells) + f" {' '.join(ratios):>24}")


def print_breakdown(result: Mapping[str, Any]) -> None:
    label = f"{result['packs']} packs, {result['variant']}, watching {result['watched']}"
    print(f"\nstages at {label} (ms, p50/p99; load {result['load_average_1min']}):", flush=True)
    print(f"  frame of its poll that carried it (0: the snapshot): {result['carrying_frame']}")
    print(f"  each hand-over to a stack, p50/p99/max ms: {result['stack_update_p50_p99_max_ms']}")
    print(f"  garbage collections > 5 ms, count/p50/max ms: {result['gc_pauses_over_5ms_count_p50_max_ms']}")
    print(f"{'client':>17} {'n':>3} " + " ".join(f"{stage:>10}" for stage in (*STAGES, "total")))
    for client in CLIENTS:
        stages = result["stages_p50_p99_ms"][client]
        cells = [f"{stages[s][0]:g}/{stages[s][1]:g}" if s in stages else "-" for s in (*STAGES, "total")]
        print(f"{client:>17} {stages['samples']:>3} " + " ".join(f"{cell:>10}" for cell in cells))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packs", type=int, nargs="+", help="fleet sizes (default 200 500)")
    parser.add_argument("--samples", type=int, help="changes per N and variant (default 60)")
    parser.add_argument(
        "--iec61850-map", help="IEC 61850 map for every N (default: `default` up to 256 packs, `large` above)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        default=["gateway"],
        help="configurations compared side by side (default: the gateway as it is)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the variants this many times per N (default 1)"
    )
    parser.add_argument(
        "--watch",
        choices=("first", "last"),
        default="first",
        help="the pack whose SOC changes: the first polled (pack-01, default) or the last (pack-N)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 10, 6 samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    packs = args.packs or ([10] if args.quick else [200, 500])
    samples = args.samples or (6 if args.quick else 60)
    per_round = max(1, samples // args.rounds)

    def watched(packs: int) -> Watched:
        return Watched(1 if args.watch == "first" else packs)

    about = machine()
    print(f"freshness: {about['cpus']} CPU(s), load average {about['load_average_at_start']}", flush=True)
    results = []
    for n in packs:
        runs: dict[str, list[Run]] = {name: [] for name in args.variants}
        for round_index in range(args.rounds):
            for name in args.variants:
                run = run_one(n, per_round, args.iec61850_map, VARIANTS[name], watched(n))
                runs[name].append(run)
                print(
                    f"{n} packs, {name}, round {round_index + 1}: load {run.load}, "
                    f"{run.overruns} overruns in {run.cycles} cycles, CPU µs/pack-cycle core "
                    f"{run.core_us} children {run.children_us}, IEC 61850 reports/s "
                    f"{run.iec61850_reports_per_s}",
                    flush=True,
                )
        for name in args.variants:
            result = summarize(n, name, args.iec61850_map, watched(n), runs[name])
            results.append(result)
            print(json.dumps(result), flush=True)
        for result in results[-len(args.variants) :]:
            print_breakdown(result)
    print_side_by_side(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"benchmark": "freshness", "method": __doc__, "machine": about, "quick": args.quick}
        args.json.write_text(json.dumps({**document, "results": results}, indent=2) + "\n")
    return 0 if all(r["samples_missing_a_value"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
