"""`socgw simulate`: serve a simulated battery fleet over Modbus TCP until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from pathlib import Path

import uvloop

from gateway.profiles.loader import ProfileError, ProfileLibrary, default_profile_dirs
from gateway.profiles.model import Version
from gateway.sim.fleet import FleetError, SimulatedFleet
from gateway.sim.scenario import (
    DEFAULT_BASE_PORT,
    DEFAULT_HOST,
    DEFAULT_PROFILE,
    Scenario,
    ScenarioError,
    load_scenario,
    relocate,
    uniform_fleet,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="serve a simulated battery fleet over Modbus TCP",
        description=(
            "Serve simulated battery packs over Modbus TCP, each on its own port, with the register maps of "
            "the profiles. Either a scenario file or N identical packs with spread SOCs. Runs until "
            "SIGINT/SIGTERM."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", type=Path, metavar="FILE", help="scenario YAML file (see scenarios/)")
    source.add_argument(
        "--packs", type=int, metavar="N", help="N packs of one profile, SOCs spread 85..25 %%"
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"profile key for --packs (default {DEFAULT_PROFILE})"
    )
    parser.add_argument("--firmware", help="firmware for --packs (default: the product's usual firmware)")
    parser.add_argument(
        "--host", help=f"listen address of every pack (default {DEFAULT_HOST}, or the scenario's)"
    )
    parser.add_argument(
        "--base-port",
        type=int,
        help=f"pack i listens on BASE_PORT + i (default {DEFAULT_BASE_PORT} or the scenario's; 0: ephemeral)",
    )
    parser.add_argument(
        "--speed", type=float, help="simulated seconds per second (default 1, or the scenario's)"
    )
    parser.add_argument(
        "--transport",
        choices=("tcp", "rtu-over-tcp", "serial"),
        default="tcp",
        help="tcp (default): one Modbus TCP port per pack; rtu-over-tcp: every pack a unit (1..N) of one "
        "RTU line behind BASE_PORT; serial: the same line on a pseudo-terminal (its device is printed)",
    )
    parser.add_argument(
        "--baud",
        type=int,
        help="RTU line: answer after the time the frames take at this baud rate (default: at once)",
    )
    parser.add_argument(
        "--bits-per-char", type=int, choices=(10, 11), default=10, help="RTU line: 10 (8N1) or 11 (8E1, 8N2)"
    )
    parser.set_defaults(handler=run)


def _scenario(args: argparse.Namespace) -> Scenario:
    library = ProfileLibrary(default_profile_dirs())
    if args.scenario is not None:
        scenario = load_scenario(args.scenario, library.get)
        if args.speed is not None:
            scenario = Scenario(scenario.packs, args.speed, scenario.ambient_c, scenario.source)
        return relocate(scenario, host=args.host, base_port=args.base_port)
    firmware = Version.parse(args.firmware) if args.firmware else None
    return uniform_fleet(
        args.packs,
        library.get(args.profile),
        host=args.host or DEFAULT_HOST,
        base_port=args.base_port if args.base_port is not None else DEFAULT_BASE_PORT,
        speed=args.speed if args.speed is not None else 1.0,
        firmware=firmware,
    )


async def _serve(scenario: Scenario, args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    line_port = scenario.packs[0].port if scenario.packs else 0
    if args.transport != "tcp":  # the packs' own Modbus TCP ports are then ephemeral, the line has BASE_PORT
        scenario = relocate(scenario, base_port=0)
    async with SimulatedFleet(scenario) as fleet:
        gc.freeze()  # the packs live until exit: keep the collector from re-scanning them
        if args.transport == "tcp":
            for endpoint in fleet.endpoints:
                print(endpoint.describe())
        else:
            line = await fleet.open_line(
                host=scenario.packs[0].host if args.transport == "rtu-over-tcp" else "",
                port=line_port,
                baud=args.baud,
                bits_per_char=args.bits_per_char,
            )
            where = line.device or f"{scenario.packs[0].host}:{line.port}"
            kind = "serial line" if line.device else "RTU over TCP"
            for unit, endpoint in enumerate(fleet.endpoints, start=1):
                pack = f"{endpoint.pack_id} {endpoint.profile_key} fw {endpoint.firmware}"
                print(f"{pack} {where} unit {unit} ({kind})")
        print(
            f"serving {len(fleet.endpoints)} pack(s) at speed {scenario.speed:g}; stop with Ctrl-C",
            flush=True,
        )
        await stop.wait()
    print("simulator stopped", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.baud is not None and args.baud <= 0:
        print(f"socgw simulate: --baud must be a baud rate such as 9600, got {args.baud}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.speed is not None and args.speed <= 0:
        print(f"socgw simulate: --speed must be > 0, got {args.speed}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        scenario = _scenario(args)
    except (ScenarioError, ProfileError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"socgw simulate: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(scenario, args))
    except (FleetError, ValueError) as error:
        print(f"socgw simulate: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
