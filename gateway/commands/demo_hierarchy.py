"""`socgw demo --workers K`: a whole hierarchy on one machine (docs/hierarchy.md).

A Mosquitto of its own on 127.0.0.1 (`--mqtt-port`, default 1883), K simulators (`socgw simulate`, each
`--packs` packs, default 4) each behind a worker (`socgw run`, role worker, its own process), and the
head in this process, serving DNP3, IEC 61850 and MQTT (edge node `socgw/demo`) for the whole site, every
pack's points included (from the workers' DDATA); the live view shows the head's clusters, one row per
worker, and below them every pack with its worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import uvloop

from gateway.commands.demo import drive, running_broker, running_simulator, stop_process, write_site_config
from gateway.commands.run import site_fieldbus
from gateway.config import load_config
from gateway.engine import Engine
from gateway.northbound.registry import check_sections
from gateway.sim.fleet import Endpoint

GROUP, HOST_ID = "demo", "head"
DEFAULT_MQTT_PORT = 1883
DEFAULT_PACKS = 4


def pack_id(worker: str, endpoint: Endpoint) -> str:
    return f"{worker}-{endpoint.pack_id}"


def worker_config(directory: Path, name: str, endpoints: list[Endpoint], mqtt_port: int) -> Path:
    config = {
        "site": {"name": name, "role": "worker", "cycle_ms": 100},
        "nodes": [
            {
                "id": pack_id(name, e),
                "host": e.host,
                "port": e.port,
                "unit": e.unit_id,
                "profile": e.profile_key,
            }
            for e in endpoints
        ],
        "command": {"timeout_s": 10},
        "logging": {"level": "warning"},
        "status": {"socket": str(directory / f"{name}.sock")},
        "northbound": {
            "mqtt": {
                "brokers": [{"host": "127.0.0.1", "port": mqtt_port}],
                "group_id": GROUP,
                "edge_node_id": name,
                "keepalive_s": 5,
                "primary_host_id": HOST_ID,
            }
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


@contextlib.contextmanager
def running_worker(config: Path) -> Iterator[None]:
    """`socgw run` for one worker, in its own session (Ctrl-C reaches the head; it is stopped after)."""
    log = config.with_suffix(".log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        stop_process(process, 15.0)
        log.close()


def head_config(
    directory: Path, workers: dict[str, list[str]], args: argparse.Namespace, mqtt_port: int
) -> Path:
    """The head over `workers` (each worker's pack ids), serving the standalone demo's sections."""
    path = write_site_config(directory, [], args)  # the standalone demo's northbound sections
    config = json.loads(path.read_text())
    config["site"] = {"name": "demo", "role": "head", "cycle_ms": 100}
    config["hierarchy"] = {
        "brokers": [{"host": "127.0.0.1", "port": mqtt_port}],
        "group_id": GROUP,
        "host_id": HOST_ID,
        "keepalive_s": 5,
        "workers": [{"id": name, "packs": packs} for name, packs in workers.items()],
    }
    path.write_text(json.dumps(config, indent=2))
    return path


def run_hierarchy(args: argparse.Namespace, directory: Path) -> None:
    """Raises RuntimeError, OSError, ValueError or NorthboundError with the reason it cannot run."""
    packs = args.packs or DEFAULT_PACKS
    args.mqtt_port = args.mqtt_port or DEFAULT_MQTT_PORT
    workers: dict[str, list[str]] = {f"worker-{k + 1}": [] for k in range(args.workers)}
    with running_broker(directory, args.mqtt_port), contextlib.ExitStack() as stack:
        for k, name in enumerate(workers):
            command = [
                *(sys.executable, "-m", "gateway.cli", "simulate", "--packs", str(packs)),
                *("--speed", str(args.speed), "--base-port", str(args.base_port + k * packs)),
            ]
            endpoints = stack.enter_context(running_simulator(command))
            workers[name] = [pack_id(name, e) for e in endpoints]
            stack.enter_context(running_worker(worker_config(directory, name, endpoints, args.mqtt_port)))
        config = load_config(head_config(directory, workers, args, args.mqtt_port))
        check_sections(config)
        until = "Ctrl-C stops" if args.duration is None else f"stops after {args.duration:g} s"
        print(
            f"socgw demo: a head over {args.workers} workers of {packs} simulated packs; {until}",
            file=sys.stderr,
        )
        uvloop.run(drive(Engine(config, fieldbus=site_fieldbus(config)), args, expected_online=len(workers)))
