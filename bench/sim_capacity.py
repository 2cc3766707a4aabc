"""How many packs one simulator process serves when each is polled every 100 ms.

    python -m bench.sim_capacity [--packs 50 100 200 400] [--runs 3] [--duration-s 10]

Method: each run starts a fresh `socgw simulate --packs N --base-port 0` process (the real command,
uvloop, microstore/mp2000 packs). This process is the client: one persistent connection per pack;
every 100 ms (packs spread evenly over the period) it reads the profile's whole planned map, one
request after the other as the gateway's poller does. After a warm-up it measures for a fixed window:
- achieved requests/s against the target (N × 10 polls/s × requests per poll);
- the simulator's CPU from /proc/PID/stat (user + system ticks) over the window, as % of one core
  and as µs per request;
- request round-trip latency p50/p99 and whole-poll latency p99; overruns (a poll that started more
  than one period late) and errors (exceptions, timeouts, closed connections).
Each figure is the median over the runs. Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop

from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Table, Version
from gateway.profiles.plan import ReadBlock, plan_reads
from gateway.sim.fleet import Endpoint

REPO = Path(__file__).resolve().parents[1]
PERIOD_S = 0.1
REQUEST_TIMEOUT_S = 1.0
PROFILE = "microstore/mp2000"
FUNCTION = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}
_MBAP = struct.Struct(">HHHB")
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class RunResult:
    packs: int
    requests_per_poll: int
    target_rps: float
    achieved_rps: float
    sim_cpu_pct: float
    sim_cpu_us_per_request: float
    client_cpu_pct: float
    latency_p50_ms: float
    latency_p99_ms: float
    poll_p99_ms: float
    overruns: int
    errors: int


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class _Link(asyncio.Protocol):
    """A minimal Modbus TCP client connection, one request outstanding at a time.

    Hand-written because pymodbus's client costs ~56 µs CPU per request (notes/modbus.md) and
    would make this process, not the simulator, the bottleneck on a 2-core machine.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: asyncio.Future[bytes] | None = None
        self.transaction = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 6:
            length = int.from_bytes(self.buffer[4:6], "big")
            if len(self.buffer) < 6 + length:
                return
            pdu = bytes(self.buffer[7 : 6 + length])
            del self.buffer[: 6 + length]
            if self.waiting is not None and not self.waiting.done():
                self.waiting.set_result(pdu)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(ConnectionError("connection lost"))

    async def request(self, pdu: bytes) -> bytes:
        assert self.transport is not None
        self.transaction = (self.transaction + 1) & 0xFFFF
        self.waiting = asyncio.get_running_loop().create_future()
        self.transport.write(_MBAP.pack(self.transaction, 0, len(pdu) + 1, 1) + pdu)
        return await asyncio.wait_for(self.waiting, REQUEST_TIMEOUT_S)


@dataclass
class _Tally:
    latencies_s: list[float]
    polls_s: list[float]
    requests: int = 0
    overruns: int = 0
    errors: int = 0


@dataclass(frozen=True)
class _Window:
    start: float  # perf_counter() of the first poll period
    measure_from: float  # end of the warm-up
    end: float


async def _poll_pack(
    endpoint: Endpoint, requests: Sequence[bytes], offset_s: float, window: _Window, tally: _Tally
) -> None:
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(_Link, endpoint.host, endpoint.port)
    next_poll = window.start + offset_s
    try:
        while next_poll < window.end:
            await asyncio.sleep(max(0.0, next_poll - time.perf_counter()))
            poll_start = time.perf_counter()
            measuring = poll_start >= window.measure_from
            if measuring and poll_start - next_poll > PERIOD_S:
                tally.overruns += 1
            for pdu in requests:
                sent = time.perf_counter()
                try:
                    response = await link.request(pdu)
                except (TimeoutError, ConnectionError):
                    tally.errors += measuring
                    continue
                if measuring:
                    tally.latencies_s.append(time.perf_counter() - sent)
                    tally.requests += 1
                    tally.errors += response[0] & 0x80 != 0
            if measuring:
                tally.polls_s.append(time.perf_counter() - poll_start)
            next_poll += PERIOD_S
            while next_poll < time.perf_counter() - PERIOD_S:  # hopelessly late: skip missed periods
                next_poll += PERIOD_S
    finally:
        if link.transport is not None:
            link.transport.close()


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the full line)


def _start_simulator(packs: int) -> tuple[subprocess.Popen[str], list[Endpoint]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--packs", str(packs), "--base-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # a line or two; read only when it fails
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stderr is not None
    endpoints: list[Endpoint] = []
    for line in process.stdout:
        if line.startswith("serving "):
            return process, endpoints
        endpoints.append(Endpoint.parse(line))
    raise RuntimeError(f"the simulator exited with {process.wait()} before serving: {process.stderr.read()}")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _requests(blocks: Sequence[ReadBlock]) -> list[bytes]:
    return [struct.pack(">BHH", FUNCTION[b.table], b.start, b.count) for b in blocks]


async def _measure(
    endpoints: Sequence[Endpoint], requests: Sequence[bytes], pid: int, warmup_s: float, duration_s: float
) -> RunResult:
    tally = _Tally([], [])
    start = time.perf_counter() + 0.5  # time to connect
    window = _Window(start, start + warmup_s, start + warmup_s + duration_s)
    spread = PERIOD_S / len(endpoints)
    tasks = [
        asyncio.create_task(_poll_pack(e, requests, i * spread, window, tally))
        for i, e in enumerate(endpoints)
    ]
    await asyncio.sleep(max(0.0, window.measure_from - time.perf_counter()))
    ticks_before = _cpu_ticks(pid)
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    window_start = time.perf_counter()
    await asyncio.gather(*tasks)
    window_s = time.perf_counter() - window_start
    ticks = _cpu_ticks(pid) - ticks_before
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu_s = (client_after.ru_utime + client_after.ru_stime) - (
        client_before.ru_utime + client_before.ru_stime
    )
    sim_cpu_s = ticks / CLOCK_TICKS_PER_S
    return RunResult(
        packs=len(endpoints),
        requests_per_poll=len(requests),
        target_rps=len(endpoints) * len(requests) / PERIOD_S,
        achieved_rps=tally.requests / duration_s,
        sim_cpu_pct=100.0 * sim_cpu_s / window_s,
        sim_cpu_us_per_request=1e6 * sim_cpu_s / max(1, tally.requests),
        client_cpu_pct=100.0 * client_cpu_s / window_s,
        latency_p50_ms=1e3 * percentile(tally.latencies_s, 0.5),
        latency_p99_ms=1e3 * percentile(tally.latencies_s, 0.99),
        poll_p99_ms=1e3 * percentile(tally.polls_s, 0.99),
        overruns=tally.overruns,
        errors=tally.errors,
    )


def run_once(packs: int, requests: Sequence[bytes], warmup_s: float, duration_s: float) -> RunResult:
    process, endpoints = _start_simulator(packs)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_measure(endpoints, requests, process.pid, warmup_s, duration_s))
    finally:
        _stop(process)


def median_result(results: Sequence[RunResult]) -> RunResult:
    fields = asdict(results[0])
    return RunResult(**{name: statistics.median(asdict(r)[name] for r in results) for name in fields})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--packs", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the medians here as JSON")
    args = parser.parse_args(argv)

    profile = ProfileLibrary([REPO / "profiles"]).get(PROFILE)
    variant = profile.variant_for(Version(1, 4))
    assert variant is not None
    blocks = plan_reads(variant.points.values(), profile.comms)
    requests = _requests(blocks)
    plan = ", ".join(f"{b.table} {b.start}+{b.count}" for b in blocks)
    print(
        f"sim_capacity: one `socgw simulate` process per run ({PROFILE} packs); each pack polled "
        f"every {PERIOD_S * 1000:.0f} ms with its planned map ({len(requests)} requests: {plan}), "
        "sequentially on one connection, by a uvloop client in another process. CPU from /proc/PID/stat. "
        f"Medians of {args.runs} run(s) of {args.duration_s:g} s after {args.warmup_s:g} s warm-up; "
        f"{os.cpu_count()} CPU(s)."
    )
    header = (
        f"{'packs':>5} {'target/s':>9} {'achieved/s':>10} {'sim CPU %':>9} {'µs/req':>7} "
        f"{'client %':>8} {'p50 ms':>7} {'p99 ms':>7} {'poll p99':>8} {'overruns':>8} {'errors':>6}"
    )
    print(header)
    medians = []
    for packs in args.packs:
        results = [run_once(packs, requests, args.warmup_s, args.duration_s) for _ in range(args.runs)]
        m = median_result(results)
        medians.append(m)
        print(
            f"{m.packs:>5} {m.target_rps:>9.0f} {m.achieved_rps:>10.0f} {m.sim_cpu_pct:>9.1f} "
            f"{m.sim_cpu_us_per_request:>7.1f} {m.client_cpu_pct:>8.1f} {m.latency_p50_ms:>7.2f} "
            f"{m.latency_p99_ms:>7.2f} {m.poll_p99_ms:>8.2f} {m.overruns:>8.0f} {m.errors:>6.0f}",
            flush=True,
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(m) for m in medians], indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
