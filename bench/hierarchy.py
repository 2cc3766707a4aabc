"""A head's cost per cluster and per pack, and the site request → pack power latency through a head
and a worker.

    python -m bench.hierarchy [--clusters 10 50 100] [--packs-per-cluster 20] [--samples 30]
                              [--json bench/results/hierarchy.json]

CPU: a real head (`socgw run`, role head, 100 ms cycle) serving the full per-pack model upstream: its
`hierarchy.workers` list every pack, and it serves DNP3, IEC 61850 and an MQTT edge node (the maps a
site of that size would use: `large` above 256 packs, as bench.pipeline), with no master connected;
a Mosquitto on loopback; synthetic workers published from this process (paho-mqtt on its own thread):
for each cluster an NBIRTH with the cluster summary and a DBIRTH per pack with every device metric a
worker publishes, then every 100 ms an NDATA with a drifting summary (every cluster's share moves, so
the head sends every worker an NCMD every cycle) and, staggered, each pack's DDATA once a second (SOC,
power, current, voltage, setpoint, temperature: what a worker reports by exception as a pack works).
The head's core process's CPU (utime + stime from /proc, its control loop and MQTT host thread) and each
adapter process's, over `--seconds`, divided by its cycles, by cycles × clusters and by cycles × packs.
`--packs-per-cluster` is 10 by default: 100 clusters of 10 are 1000 packs, what the large DNP3 map holds
(1024 nodes).

Latency: a head with a `northbound.mqtt` edge node of its own, two real workers (`socgw run`) with three
simulated packs each (`FleetThread` in this process); each sample publishes a site request (NCMD
`request_w` to the head's edge node, alternating 1500/3000 W) and takes the time until the simulated
packs deliver it (within 5 %): head cycle, NCMD to the worker, its cycle, the Modbus writes, the pack.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.pipeline import children_cpu_s, process_cpu_s, site_maps
from gateway.hierarchy.host import command_payload
from gateway.northbound.mqtt.metrics import DataType
from gateway.northbound.mqtt.payload import encode
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import relocate, uniform_fleet
from gateway.timing import percentile
from tests.conftest import PROFILES, free_port
from tests.hierarchy.support import (
    GROUP,
    Controller,
    cluster,
    head_config,
    served_w,
    wait_until,
    worker_config,
)
from tests.northbound.mqtt.support import Broker

Metric = tuple[str, DataType, float | bool]


def pack_id(worker: str, index: int) -> str:
    return f"{worker}-p{index:02d}"


def full_model(config: Path, packs: int, mqtt_port: int) -> None:
    """The head's northbound sections: DNP3, IEC 61850 and an MQTT edge node, each on its own port."""
    maps = site_maps(packs)
    config.write_text(
        config.read_text()
        + f"northbound:\n  dnp3: {{host: 127.0.0.1, port: {free_port()}, map: {maps['dnp3']}}}\n"
        + f"  iec61850: {{host: 127.0.0.1, port: {free_port()}, map: {maps['iec61850']}}}\n"
        + f"  mqtt: {{brokers: [{{host: 127.0.0.1, port: {mqtt_port}}}], group_id: scada, "
        + "edge_node_id: site}\n"
    )


class SyntheticWorkers:
    """`clusters` workers of `packs` packs each, on one paho connection; answers Rebirth."""

    def __init__(self, port: int, clusters: int, packs: int) -> None:
        self.names = [f"c{k:03d}" for k in range(clusters)]
        self.packs = packs
        self.seq = dict.fromkeys(self.names, 0)
        self.rebirth: set[str] = set(self.names)
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="synthetic-workers")
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/+", qos=1)
        self.client.loop_start()
        self.commands = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        worker = message.topic.rsplit("/", 1)[1]
        with self.lock:
            self.commands += 1
            if b"Rebirth" in message.payload:
                self.rebirth.add(worker)

    def _summary(self, k: int, cycle: int) -> list[Metric]:
        drift = 1.0 + 0.01 * ((cycle + k) % 50)  # each cluster's energy moves every cycle
        energy = 20_000.0 * self.packs
        return [
            ("energy_above_reserve_wh", DataType.DOUBLE, 0.4 * energy * drift),
            ("energy_below_ceiling_wh", DataType.DOUBLE, 0.45 * energy / drift),
            ("available_charge_w", DataType.DOUBLE, 5000.0 * self.packs),
            ("available_discharge_w", DataType.DOUBLE, 5000.0 * self.packs),
            ("nodes_online", DataType.INT32, self.packs), ("nodes_total", DataType.INT32, self.packs),
            ("mean_soc_pct", DataType.DOUBLE, 50.0 * drift), ("power_w", DataType.DOUBLE, 1000.0 * k),
            ("cycle/index", DataType.INT64, cycle),
        ]  # fmt: skip

    def _next(self, worker: str) -> int:
        self.seq[worker] = (self.seq[worker] + 1) % 256
        return self.seq[worker]

    def _pack(self, cycle: int, index: int) -> list[Metric]:
        """What moves as a pack works (its DDATA); its birth adds the rest."""
        step = (cycle + index) % 7
        return [
            ("soc_pct", DataType.DOUBLE, 50.0 + step), ("power_w", DataType.DOUBLE, 900.0 + step),
            ("current_a", DataType.DOUBLE, 17.0 + step), ("voltage_v", DataType.DOUBLE, 52.0 + step / 10),
            ("setpoint_w", DataType.DOUBLE, 900.0 + step), ("temp_c", DataType.DOUBLE, 25.0 + step / 10),
        ]  # fmt: skip

    def _pack_birth(self, cycle: int, index: int) -> list[Metric]:
        return [
            *self._pack(cycle, index),
            ("soh_pct", DataType.DOUBLE, 97.0), ("capacity_wh", DataType.DOUBLE, 20_000.0),
            ("temp_max_c", DataType.DOUBLE, 28.0), ("temp_min_c", DataType.DOUBLE, 24.0),
            ("cell_voltage_min_v", DataType.DOUBLE, 3.2), ("cell_voltage_max_v", DataType.DOUBLE, 3.25),
            ("charge_limit_w", DataType.DOUBLE, 5000.0), ("discharge_limit_w", DataType.DOUBLE, 5000.0),
            ("mode", DataType.INT32, 0), ("online", DataType.BOOLEAN, True),
            ("thermal_excursion", DataType.BOOLEAN, False), ("fault", DataType.BOOLEAN, False),
            ("maintenance", DataType.BOOLEAN, False), ("calibrating", DataType.BOOLEAN, False),
        ]  # fmt: skip

    def _run(self) -> None:
        for cycle in itertools.count():
            if self.stop.is_set():
                return
            started = time.monotonic()
            stamp = int(time.time() * 1000)
            with self.lock:
                reborn, self.rebirth = self.rebirth, set()
            for k, worker in enumerate(self.names):
                base = f"spBv1.0/{GROUP}"
                if worker in reborn:
                    self.seq[worker] = 0
                    birth = [("bdSeq", DataType.INT64, 0), *self._summary(k, cycle)]
                    self.client.publish(f"{base}/NBIRTH/{worker}", encode((), stamp, 0, extra=birth))
                    for p in range(self.packs):
                        payload = encode((), stamp, self._next(worker), extra=self._pack_birth(cycle, p))
                        self.client.publish(f"{base}/DBIRTH/{worker}/{pack_id(worker, p)}", payload)
                    continue
                summary = encode((), stamp, self._next(worker), extra=self._summary(k, cycle))
                self.client.publish(f"{base}/NDATA/{worker}", summary)
                for p in range(self.packs):
                    if (p + k + cycle) % 10 == 0:  # each pack once a second, staggered
                        payload = encode((), stamp, self._next(worker), extra=self._pack(cycle, p))
                        self.client.publish(f"{base}/DDATA/{worker}/{pack_id(worker, p)}", payload)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def head_cost(directory: Path, clusters: int, packs: int, seconds: float) -> dict[str, Any]:
    broker = Broker(directory, free_port())
    names = [f"c{k:03d}" for k in range(clusters)]
    listed = {name: [pack_id(name, p) for p in range(packs)] for name in names}
    config = head_config(directory, names, [("127.0.0.1", broker.port)], 1000.0 * clusters, packs=listed)
    full_model(config, clusters * packs, broker.port)
    head = Controller(config)
    head.start()
    workers = None
    try:
        time.sleep(1.0)  # the head's STATE online first: its Rebirth requests then reach the workers
        workers = SyntheticWorkers(broker.port, clusters, packs)
        wait_until(lambda: all(cluster(head.status(), n).get("quality") == "good" for n in names), 120,
                   f"{clusters} synthetic clusters in the head's dispatch", step_s=0.5)  # fmt: skip
        wait_until(lambda: all(row["quality"] == "good" for row in (head.status() or {}).get("packs", [{}])),
                   60, "every pack good at the head", step_s=0.5)  # fmt: skip
        time.sleep(2.0)
        assert head.process is not None
        pid = head.process.pid
        status, cpu, children = head.status() or {}, process_cpu_s(pid), children_cpu_s(pid)
        time.sleep(seconds)
        after, cpu_after, children_after = head.status() or {}, process_cpu_s(pid), children_cpu_s(pid)
        cycles = after["cycle"] - status["cycle"]
        per_cycle_s = (cpu_after - cpu) / cycles
        adapters = {
            label: (used - children[child][1]) / cycles
            for child, (label, used) in children_after.items() if child in children
        }  # fmt: skip
        total_s = per_cycle_s + sum(adapters.values())
        return {
            "clusters": clusters, "packs": clusters * packs, "cycles": cycles,
            "head_cpu_ms_per_cycle": round(per_cycle_s * 1000.0, 3),
            "head_cpu_us_per_cluster_cycle": round(per_cycle_s / clusters * 1e6, 1),
            "head_cpu_us_per_pack_cycle": round(per_cycle_s / (clusters * packs) * 1e6, 2),
            "adapters_cpu_ms_per_cycle": {label: round(s * 1000.0, 3) for label, s in adapters.items()},
            "all_cpu_ms_per_cycle": round(total_s * 1000.0, 3),
            "all_cpu_us_per_pack_cycle": round(total_s / (clusters * packs) * 1e6, 2),
            "head_cycle_ms": after.get("timing", {}).get("steps_ms", {}).get("total"),
            "all_in_dispatch": all(cluster(after, n).get("quality") == "good" for n in names),
            "packs_good": sum(row["quality"] == "good" for row in after.get("packs", [])),
        }  # fmt: skip
    finally:
        if workers is not None:
            workers.close()
        head.stop()
        broker.stop()


def latency(directory: Path, samples: int) -> dict[str, Any]:
    library = ProfileLibrary([PROFILES])
    broker = Broker(directory, free_port())
    brokers = [("127.0.0.1", broker.port)]
    fleets = {}
    controllers = []
    for name in ("north", "south"):
        scenario = uniform_fleet(3, library.get("microstore/mp2000"), base_port=0)
        fleets[name] = FleetThread(relocate(scenario, host="127.0.0.1", base_port=0))
        fleets[name].start()
        controllers.append(Controller(worker_config(directory, name, fleets[name], brokers)))
    section = (f"northbound:\n  mqtt:\n    brokers: [{{host: 127.0.0.1, port: {broker.port}}}]\n"
               "    group_id: scada\n    edge_node_id: site\n")  # fmt: skip
    head_path = head_config(directory, list(fleets), brokers, 1000.0)
    head_path.write_text(head_path.read_text() + section)
    head = Controller(head_path)
    controllers.append(head)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="scada")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    delays: list[float] = []
    try:
        for controller in controllers:
            controller.start()

        def served() -> float:
            return sum(served_w(fleet) for fleet in fleets.values())

        def delivers(target: float) -> Callable[[], bool]:
            return lambda: abs(served() - target) < 0.05 * target

        wait_until(lambda: abs(served() - 1000.0) < 50.0, 60, "the hierarchy serving 1000 W", step_s=0.1)
        for sample in range(samples):
            target = 3000.0 if sample % 2 == 0 else 1500.0
            time.sleep(0.3 + 0.4 * (sample % 5) / 5)  # requests at different phases of the cycles
            payload = command_payload((("request_w", DataType.DOUBLE, target),))
            client.publish("spBv1.0/scada/NCMD/site", payload, qos=1)
            delays.append(wait_until(delivers(target), 10, "the new request", step_s=0.005))
    finally:
        client.loop_stop()
        for controller in controllers:
            controller.stop()
        for fleet in fleets.values():
            fleet.stop()
        broker.stop()
    return {
        "samples": len(delays),
        "request_to_pack_power_ms": {
            "p50": round(statistics.median(delays) * 1000.0, 1),
            "p99": round(percentile(delays, 0.99) * 1000.0, 1),
            "max": round(max(delays) * 1000.0, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hierarchy", description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--packs-per-cluster", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"cost": []}
    with tempfile.TemporaryDirectory(prefix="socgw-hierarchy-bench-") as temp:
        for count in args.clusters:
            directory = Path(temp) / f"cost-{count}"
            directory.mkdir()
            result["cost"].append(head_cost(directory, count, args.packs_per_cluster, args.seconds))
            print(json.dumps(result["cost"][-1]), file=sys.stderr)
        if args.samples:
            directory = Path(temp) / "latency"
            directory.mkdir()
            result["latency"] = latency(directory, args.samples)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
