"""MQTT Sparkplug B: DDATA freshness and the adapter's CPU per pack-cycle.

    python -m bench.mqtt_bench [--packs 200] [--samples 40] [--json bench/results/mqtt.json]

Method: the simulator (`FleetThread`, N microstore/mp2000 packs at real-time speed), the engine
(`Engine.run`, 100 ms cycle) and the MQTT adapter (its own thread, as in its child process) run in this
process; a Mosquitto started here on a free loopback port carries the messages; the independent decoder
(Eclipse Tahu's sparkplug-payload in Node.js, tests/northbound/mqtt/peer) subscribes to pack-01's DDATA
and each decoded line is stamped when this process reads it. Each sample sets pack-01's SOC to 40 % or
60 % in turn (far beyond the 0.5 % deadband) and takes the time until a DDATA with the new SOC is read:
up to one cycle of waiting for the next poll, poll, dispatch, publish, the adapter's encoding, the broker,
Node's decoding and its stdout pipe. Random pauses of 0.3-0.7 s put changes at random phases of the
cycle. CPU: the adapter thread's own CPU clock over the run, divided by cycles × packs (the snapshot's
unpickling in a real child is not included: docs/architecture.md measures it). Tests never assert speed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

from gateway.engine import Engine
from gateway.northbound.mqtt.client import MqttAdapter
from gateway.northbound.registry import create_adapters
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import relocate, uniform_fleet
from gateway.timing import percentile
from tests.conftest import PROFILES, free_port
from tests.northbound.mqtt.support import Broker, Decoder
from tests.northbound.mqtt.test_edge_node import EDGE, GROUP, mqtt_section
from tests.test_engine import site_config


def measure(packs: int, samples: int) -> dict[str, Any]:
    library = ProfileLibrary([PROFILES])
    scenario = uniform_fleet(packs, library.get("microstore/mp2000"), base_port=0)
    fleet = FleetThread(relocate(scenario, host="127.0.0.1", base_port=0))
    fleet.start()
    with tempfile.TemporaryDirectory(prefix="socgw-mqtt-bench-") as temp:
        directory = Path(temp)
        broker = Broker(directory, free_port())
        decoder = Decoder(broker.port, f"spBv1.0/{GROUP}/DDATA/{EDGE}/pack-01")
        try:
            config = site_config(directory, fleet.endpoints, mqtt_section(broker.port))
            return uvloop.run(_run(Engine(config), config, fleet, decoder, samples=samples))
        finally:
            decoder.close()
            broker.stop()
            fleet.stop()


async def _run(
    engine: Engine, config: Any, fleet: FleetThread, decoder: Decoder, *, samples: int
) -> dict[str, Any]:
    packs = len(fleet.endpoints)
    (adapter,) = create_adapters(config, engine.submit)
    assert isinstance(adapter, MqttAdapter)
    adapter.start()
    engine.publishers.append(adapter)
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    try:
        while engine.last is None or len(engine.last.fleet.online_nodes) < packs:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # births out of the way
        decoder.drain()
        assert adapter._thread is not None  # started above
        clock = _thread_clock(adapter._thread)
        cpu_start, cycles_start = clock(), engine.last.index
        latencies: list[float] = []
        for sample in range(samples):
            soc = 40.0 if sample % 2 == 0 else 60.0
            changed = time.monotonic()
            fleet.update_state("pack-01", soc_pct=soc)
            await asyncio.to_thread(decoder.next, functools.partial(_carries, soc=soc), 10.0)
            latencies.append((time.monotonic() - changed) * 1000.0)
            await asyncio.sleep(random.uniform(0.3, 0.7))
        cpu_s, cycles = clock() - cpu_start, engine.last.index - cycles_start
    finally:
        stop.set()
        await running
        adapter.stop()
        await engine.shutdown()
    return {
        "packs": packs,
        "samples": samples,
        "ddata_freshness_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
        },
        "cycle_ms": config.cycle_ms,
        "adapter_cpu_us_per_pack_cycle": round(cpu_s / (cycles * packs) * 1e6, 2),
        "adapter_cpu_share_of_one_core": round(cpu_s / (cycles * config.cycle_ms / 1000.0), 3),
    }


def _carries(message: dict[str, Any], *, soc: float) -> bool:
    for metric in message.get("payload", {}).get("metrics", []):
        if metric["name"] == "soc_pct" and abs(metric["value"] - soc) < 0.05:
            return True
    return False


def _thread_clock(thread: threading.Thread) -> Any:
    assert thread.ident is not None
    clock_id = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--packs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    result = measure(args.packs, args.samples)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
