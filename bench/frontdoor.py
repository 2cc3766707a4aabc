"""What the front door's splice adds to DNP3: a small request and a full-map integrity poll, with and
without the front door, side by side.

    python -m bench.frontdoor [--packs 200 500] [--requests 400] [--polls 20] [--quick]
                              [--json bench/results/frontdoor.json]

Method: one server process (`python -m bench.frontdoor serve`) holds two DNP3 outstations built from
the same site config (N packs; the default map, `large` above 256 packs as the docs advise): one
listens on its own port (no front door), the other on its private port behind a front door in the
same process and loop, as in the gateway's DNP3 child. No values are published: every point keeps
its initial value and flags, so a response has the size it has in service. This process is the
master (dnp3py), and alternates between the two in blocks (so load drift hits both alike):
`requests` class 1/2/3 polls with no events pending (a request and a short response: the splice's
per-request cost), then `polls` integrity polls of the whole map. Reported: p50 and p99 per mode
and the difference. dnp3py is pure Python, so its own parsing is in both figures alike. Tests never
assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from bench.dnp3_bench import LOOPBACK, REPO, free_port, master, percentile
from gateway.config import load_config
from gateway.northbound.dnp3 import create
from gateway.northbound.frontdoor.door import build
from gateway.northbound.registry import door_plan

BLOCKS = 4  # alternations between the two modes
DEFAULT_MAP_NODES = 256  # mappings/dnp3/default.yaml: max_nodes


def site_file(directory: Path, packs: int, port: int) -> Path:
    dnp3_map = "large" if packs > DEFAULT_MAP_NODES else "default"
    document = {
        "nodes": [
            {"id": f"pack-{i:03d}", "host": LOOPBACK, "port": 30000 + i, "profile": "microstore/mp2000"}
            for i in range(packs)
        ],
        "status": {"socket": str(directory / f"status-{port}.sock")},
        "northbound": {"dnp3": {"port": port, "map": dnp3_map, "connects_per_min": 100000}},
    }
    path = directory / f"gateway-{port}.yaml"
    path.write_text(json.dumps(document))
    return path


async def serve(packs: int, plain_port: int, door_port: int) -> None:
    """Both outstations until standard input closes."""
    with tempfile.TemporaryDirectory(prefix="frontdoor-bench-") as temp:
        directory = Path(temp)
        plain_site = load_config(site_file(directory, packs, plain_port), [REPO / "profiles"])
        door_site = load_config(site_file(directory, packs, door_port), [REPO / "profiles"])
    plan = door_plan(door_site, "dnp3")
    assert plan is not None
    door = build(plan)
    plain = create(plain_site, lambda update, apply=True: None)
    behind = create(door_site, lambda update, apply=True: None, door.private)
    assert plain is not None and behind is not None
    plain.start()
    behind.start()
    await door.open()
    print(json.dumps({"ready": True, "points": len(plain.points)}), flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await door.close()
        behind.stop()
        plain.stop()


@contextlib.contextmanager
def server(packs: int) -> Iterator[tuple[int, int, int]]:
    plain_port, door_port = free_port(), free_port()
    command = [sys.executable, "-m", "bench.frontdoor", "serve", str(packs), str(plain_port), str(door_port)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield plain_port, door_port, int(ready["points"])
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def timed(port: int, count: int, request: Callable[[Any], Awaitable[Any]]) -> list[float]:
    _, runner = master(port)
    await runner.open()
    try:
        await request(runner)  # warm-up: the link is reset and the first response built
        durations = []
        for _ in range(count):
            started = time.perf_counter()
            await request(runner)
            durations.append((time.perf_counter() - started) * 1000.0)
        return durations
    finally:
        await runner.close()


async def compare(plain_port: int, door_port: int, requests: int, polls: int) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        mode: {"request": [], "integrity_poll": []} for mode in ("plain", "door")
    }
    for _ in range(BLOCKS):
        for mode, port in (("plain", plain_port), ("door", door_port)):
            samples[mode]["request"] += await timed(port, requests // BLOCKS, lambda r: r.class_poll())
            samples[mode]["integrity_poll"] += await timed(
                port, max(1, polls // BLOCKS), lambda r: r.integrity_poll()
            )
    result: dict[str, Any] = {}
    for kind in ("request", "integrity_poll"):
        figures = {
            mode: {"p50_ms": statistics.median(values[kind]), "p99_ms": percentile(values[kind], 0.99)}
            for mode, values in samples.items()
        }
        figures["added"] = {key: figures["door"][key] - figures["plain"][key] for key in ("p50_ms", "p99_ms")}
        figures["samples"] = {"per_mode": len(samples["plain"][kind])}
        result[kind] = figures
    return result


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["serve"]:
        packs, plain_port, door_port = map(int, arguments[1:4])
        uvloop.run(serve(packs, plain_port, door_port))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="20 packs, 40 requests, 4 polls")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(arguments)
    if args.quick:
        args.packs, args.requests, args.polls = [20], 40, 4
    results = []
    for packs in args.packs:
        with server(packs) as (plain_port, door_port, points):
            figures = uvloop.run(compare(plain_port, door_port, args.requests, args.polls))
        results.append({"packs": packs, "points": points, **figures})
        for kind in ("request", "integrity_poll"):
            row = figures[kind]
            print(
                f"{packs} packs ({points} points) {kind}: without {row['plain']['p50_ms']:.2f}/"
                f"{row['plain']['p99_ms']:.2f} ms, with the front door {row['door']['p50_ms']:.2f}/"
                f"{row['door']['p99_ms']:.2f} ms (p50/p99); added {row['added']['p50_ms']:+.3f}/"
                f"{row['added']['p99_ms']:+.3f} ms"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
