"""`socgw demo`: a simulated fleet (its own process) behind the gateway, with a live terminal view.

The simulator runs as `socgw simulate` in a child process, exactly as a fleet on the wire would: the
gateway reaches it only over Modbus TCP on loopback. The gateway's config is generated into a temporary
directory and loaded through the same checks as a site's `gateway.yaml`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.live import Live

from gateway.commands.run import configure_logging, serve, site_status
from gateway.commands.view import rounded, status_renderable
from gateway.config import ConfigError, load_config
from gateway.engine import Engine
from gateway.northbound.adapter import NorthboundError
from gateway.northbound.registry import check_sections, known_sections
from gateway.sim.fleet import Endpoint
from gateway.site_command import CommandUpdate

EXIT_OK = 0
EXIT_FAILED = 1
SIMULATOR_START_TIMEOUT_S = 60.0
SCENARIO_DIRS = (Path(__file__).resolve().parents[2] / "scenarios", Path("/usr/share/socgw/scenarios"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a simulated fleet behind the gateway, with a live view",
        description=(
            "Start the simulator (default: 8 packs of mixed capacity, SOC and temperature, accelerated time) "
            "in a child process and the gateway against it over Modbus TCP on loopback; show the fleet live."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--scenario", type=Path, help="scenario file (default: scenarios/default.yaml)")
    source.add_argument(
        "--packs", type=int, help="N identical packs with spread SOCs instead of the scenario"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second (default 60)")
    parser.add_argument(
        "--request-w",
        type=float,
        help="site request, + = discharge (default: half the fleet's available discharge power)",
    )
    parser.add_argument("--base-port", type=int, default=15020, help="first simulator port (default 15020)")
    parser.add_argument("--dnp3-port", type=int, default=20000, help="DNP3 outstation port (default 20000)")
    parser.add_argument("--mms-port", type=int, default=10102, help="IEC 61850 MMS port (default 10102)")
    parser.add_argument(
        "--web-port",
        type=int,
        help="also serve the live web view and /metrics on http://127.0.0.1:PORT/ (default: off)",
    )
    parser.add_argument(
        "--mqtt-port",
        type=int,
        help="also start a Mosquitto broker of its own on 127.0.0.1:PORT and publish Sparkplug B to it "
        "(default: off)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="run a hierarchy instead: K workers (each `--packs` simulated packs, default 4) under a head "
        "that serves SCADA, over a Mosquitto of its own (--mqtt-port, default 1883)",
    )
    parser.add_argument("--no-ui", action="store_true", help="print one JSON status line per second instead")
    parser.set_defaults(handler=run)


def default_scenario() -> Path:
    for directory in SCENARIO_DIRS:
        candidate = directory / "default.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no default.yaml in {' or '.join(map(str, SCENARIO_DIRS))}: pass --scenario FILE"
    )


def simulator_command(args: argparse.Namespace) -> list[str]:
    command = [
        *(sys.executable, "-m", "gateway.cli", "simulate"),
        *("--speed", str(args.speed), "--base-port", str(args.base_port)),
    ]
    if args.packs is not None:
        return [*command, "--packs", str(args.packs)]
    return [*command, "--scenario", str(args.scenario or default_scenario())]


@contextlib.contextmanager
def running_simulator(command: Sequence[str]) -> Iterator[list[Endpoint]]:
    """Start the simulator, wait for its endpoint lines, and stop it (SIGTERM, then kill) afterwards."""
    # Its own session: Ctrl-C in the terminal reaches the gateway only, which stops (and writes the safe
    # setpoints) while the packs still answer; the simulator is stopped after it.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        endpoints: list[Endpoint] = []
        deadline = time.monotonic() + SIMULATOR_START_TIMEOUT_S
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited with status {process.wait()} before serving")
            if line.startswith("serving "):
                break
            endpoints.append(Endpoint.parse(line))
        else:
            raise RuntimeError(f"the simulator did not start within {SIMULATOR_START_TIMEOUT_S:.0f} s")
        yield endpoints
    finally:
        stop_process(process, 10.0)


def stop_process(process: subprocess.Popen[Any], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_broker(directory: Path, port: int | None) -> Iterator[None]:
    """Mosquitto (Debian's `mosquitto`) on 127.0.0.1:`port` for the demo's MQTT adapter; nothing when None."""
    if port is None:
        yield
        return
    if shutil.which("mosquitto") is None:
        raise RuntimeError("--mqtt-port needs Mosquitto: apt-get install mosquitto (make venv installs it)")
    config = directory / "mosquitto.conf"
    user = pwd.getpwuid(os.getuid()).pw_name  # as root mosquitto would switch to a user of its own
    config.write_text(f"user {user}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = (directory / "mosquitto.log").open("wb")
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"Mosquitto on 127.0.0.1:{port} exited: {(directory / 'mosquitto.log').read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Mosquitto did not listen on 127.0.0.1:{port} within 10 s") from None
                time.sleep(0.05)
        print(
            f"socgw demo: MQTT broker on 127.0.0.1:{port}, Sparkplug B under spBv1.0/socgw/#", file=sys.stderr
        )
        yield
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def write_site_config(directory: Path, endpoints: Sequence[Endpoint], args: argparse.Namespace) -> Path:
    """A gateway.yaml for the simulated fleet (JSON is YAML, and needs no quoting rules)."""
    config: dict[str, object] = {
        "site": {"name": "demo", "cycle_ms": 100},
        "nodes": [
            {"id": e.pack_id, "host": e.host, "port": e.port, "unit": e.unit_id, "profile": e.profile_key}
            for e in endpoints
        ],
        "command": {"default_request_w": 0, "timeout_s": 31_536_000},
        "logging": {"level": "warning", "balancing_log": str(directory / "balancing.log")},
        "status": {"socket": str(directory / "status.sock")},
    }
    northbound: dict[str, dict[str, object]] = {
        "dnp3": {"host": "127.0.0.1", "port": args.dnp3_port, "outstation_address": 10, "master_address": 1},
        "iec61850": {"host": "127.0.0.1", "port": args.mms_port},
    }
    if args.web_port is not None:
        northbound["web"] = {"host": "127.0.0.1", "port": args.web_port}
    if args.mqtt_port is not None:
        northbound["mqtt"] = {"brokers": [{"host": "127.0.0.1", "port": args.mqtt_port}]}
    # The demo serves every protocol this build has an adapter for.
    config["northbound"] = {key: value for key, value in northbound.items() if key in known_sections()}
    path = directory / "gateway.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


async def drive(engine: Engine, args: argparse.Namespace, expected_online: int = 1) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    gateway = asyncio.create_task(serve(engine, stop))
    try:
        await _wait_online(engine, stop, gateway, expected_online)
        if args.web_port is not None and engine.last is not None:  # its process serves by now
            print(f"socgw demo: web view on http://127.0.0.1:{args.web_port}/", file=sys.stderr)
        if engine.last is not None:
            request_w = args.request_w
            if request_w is None:
                request_w = round(engine.last.fleet.available_discharge_w / 2.0, -1)
            engine.submit(CommandUpdate(source="demo", request_w=request_w))
        if args.no_ui:
            await _print_json(engine, stop)
        else:
            await _show(engine, stop)
    finally:
        stop.set()
        await gateway  # raises what made the gateway fail (a port in use, ...)


async def _wait_online(
    engine: Engine, stop: asyncio.Event, gateway: asyncio.Task[None], expected: int
) -> None:
    for _ in range(300):  # at most 30 s: connects run in the background and retry on their own
        online = 0 if engine.last is None else len(engine.last.fleet.online_nodes)
        if online >= expected or stop.is_set() or gateway.done():
            return
        await asyncio.sleep(0.1)


async def _print_json(engine: Engine, stop: asyncio.Event) -> None:
    while not stop.is_set():
        print(json.dumps(rounded(site_status(engine)), default=str), flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def _show(engine: Engine, stop: asyncio.Event) -> None:
    console = Console()
    first = status_renderable(site_status(engine), console.width)
    with Live(first, console=console, refresh_per_second=4) as live:
        while not stop.is_set():
            live.update(status_renderable(site_status(engine), console.width))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)


def run(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        print(f"socgw demo: --speed must be > 0, got {args.speed}", file=sys.stderr)
        return EXIT_FAILED
    configure_logging("warning")
    with tempfile.TemporaryDirectory(prefix="socgw-demo-") as temp:
        if args.workers is not None:
            return _run_hierarchy(args, Path(temp))
        try:
            with running_simulator(simulator_command(args)) as endpoints:
                try:
                    config = load_config(write_site_config(Path(temp), endpoints, args))
                    check_sections(config)  # a bad --dnp3-port, --mms-port or --web-port
                except ConfigError as error:
                    print(f"socgw demo: generated config rejected:\n{error}", file=sys.stderr)
                    return EXIT_FAILED
                until = "Ctrl-C stops" if args.duration is None else f"stops after {args.duration:g} s"
                print(f"socgw demo: {len(endpoints)} simulated packs; {until}", file=sys.stderr)
                with running_broker(Path(temp), args.mqtt_port):
                    uvloop.run(drive(Engine(config), args))
        except (RuntimeError, FileNotFoundError, ValueError, OSError, NorthboundError) as error:
            print(f"socgw demo: {error}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def _run_hierarchy(args: argparse.Namespace, directory: Path) -> int:
    from gateway.commands.demo_hierarchy import run_hierarchy  # it builds on this module's parts

    if args.workers < 1 or args.scenario is not None:
        print("socgw demo: --workers takes K >= 1 and --packs per worker, not --scenario", file=sys.stderr)
        return EXIT_FAILED
    try:
        run_hierarchy(args, directory)
    except ConfigError as error:
        print(f"socgw demo: generated config rejected:\n{error}", file=sys.stderr)
        return EXIT_FAILED
    except (RuntimeError, FileNotFoundError, ValueError, OSError, NorthboundError) as error:
        print(f"socgw demo: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
