"""`socgw run`, `socgw validate` and `socgw status`: the daemon, its config check and its status."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop

from gateway.commands.view import status_table_text
from gateway.config import ConfigError, NodeConfig, SiteConfig, load_config
from gateway.engine import Engine
from gateway.hierarchy.head import ClusterFieldbus
from gateway.hierarchy.settings import parse_head
from gateway.northbound.adapter import NorthboundError
from gateway.northbound.process.supervisor import AdapterSupervisor
from gateway.northbound.registry import check_sections, configured_sections
from gateway.paths import default_status_socket
from gateway.southbound.errors import Target
from gateway.southbound.fieldbus import Fieldbus
from gateway.southbound.line import LineMember, plan_lines
from gateway.southbound.pollers.fieldbus import PollerFieldbus
from gateway.southbound.pollers.shares import split_nodes
from gateway.southbound.transport import Transport
from gateway.status import InstanceLock, StatusServer, read_status

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
DEFAULT_CONFIG = Path("/etc/socgw/gateway.yaml")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_parser = subparsers.add_parser(
        "run",
        help="run the gateway (the daemon)",
        description="Poll the nodes, balance them every cycle and serve SCADA, until SIGTERM/SIGINT.",
    )
    run_parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="site config file")
    run_parser.set_defaults(handler=run)

    validate_parser = subparsers.add_parser(
        "validate",
        help="check a site config (and the profiles it uses)",
        description="Check a site config; prints file:line:column for every problem. Exit 0 when valid.",
    )
    validate_parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="site config file")
    validate_parser.set_defaults(handler=validate)

    status_parser = subparsers.add_parser(
        "status",
        help="show the running gateway's fleet state and cycle timings",
        description="Ask the running gateway (over its local status socket) for its state.",
    )
    status_parser.add_argument("-c", "--config", type=Path, help="site config (to find its status socket)")
    status_parser.add_argument("--socket", type=Path, help="status socket path (overrides the config)")
    status_parser.add_argument("--json", action="store_true", help="print the raw JSON document")
    status_parser.set_defaults(handler=status)


def configure_logging(level: str) -> None:
    # Under systemd, journald stamps each line itself; elsewhere a timestamp helps.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else None
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=fmt or "%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )


def config_missing(path: Path, command: str) -> bool:
    """True, after saying where to get a site config, when `path` does not exist (in a source checkout
    there is no /etc/socgw/gateway.yaml: the packaged default is packaging/gateway.yaml)."""
    if path.exists():
        return False
    print(
        f"socgw {command}: {path}: no such file: pass the site config with -c FILE (in a source checkout, "
        "-c packaging/gateway.yaml is the packaged default, serving DNP3 and IEC 61850 on loopback; "
        "examples/gateway.yaml is a commented example)",
        file=sys.stderr,
    )
    return True


def load_or_report(path: Path, command: str) -> SiteConfig | None:
    """The site config with its northbound sections checked, or None after printing every problem."""
    if config_missing(path, command):
        return None
    try:
        config = load_config(path)
        check_sections(config)
        if config.role == "head":
            parse_head(config)
    except ConfigError as error:
        report_problems(error, command, path)
        return None
    return config


def report_problems(error: ConfigError, command: str, path: Path) -> None:
    """Every problem as file:line:column on stderr, then a count naming the file."""
    for problem in error.problems:
        print(problem, file=sys.stderr)
    print(f"socgw {command}: {len(error.problems)} problem(s) in {path}", file=sys.stderr)


def write_output(text: str, output: Path | None, command: str) -> bool:
    """`text` to the file `output`, or to standard output without one; False (said on stderr) when the
    file cannot be written."""
    if output is None:
        sys.stdout.write(text)
        return True
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"socgw {command}: cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return False
    return True


async def serve(engine: Engine, stop: asyncio.Event) -> None:
    """Run the engine, its northbound adapters (each in its own supervised process) and its status
    socket until `stop`, then shut down safely: safe setpoints written, connections closed, adapter
    processes stopped."""
    config = engine.config
    adapters = AdapterSupervisor(config.path, configured_sections(config), engine.submit)
    fieldbus = engine.fieldbus
    status_server = StatusServer(config.status_socket, lambda: site_status(engine, adapters))
    try:
        await adapters.start()
        # A head's adapters serve the packs behind its workers (their DDATA), not its clusters.
        upstream = (
            fieldbus.upstream(adapters.publish, adapters.node_arrived)
            if isinstance(fieldbus, ClusterFieldbus)
            else adapters
        )
        engine.publishers.append(upstream)
        await status_server.start()
        await engine.run(stop)
    finally:
        await engine.shutdown()
        await status_server.stop()
        await adapters.stop()


def site_status(engine: Engine, adapters: AdapterSupervisor | None = None) -> dict[str, Any]:
    """What `socgw status` and the demo's live view show: the engine's cycle and nodes, each adapter
    process, each polling process, and on a head every pack it serves upstream."""
    fieldbus = engine.fieldbus
    document = engine.status()
    document["adapters"] = [] if adapters is None else adapters.status()
    document["pollers"] = fieldbus.status() if isinstance(fieldbus, PollerFieldbus) else []
    if isinstance(fieldbus, ClusterFieldbus):
        document["packs"] = fieldbus.pack_rows()
    return document


def site_fieldbus(config: SiteConfig) -> Fieldbus | None:
    """A head's clusters behind its workers; with `site.pollers` above 1 the nodes split over polling
    processes; else None: the engine's own Modbus sessions in this process."""
    if config.role == "head":
        return ClusterFieldbus(parse_head(config), config.balancer)
    if config.pollers > 1:
        return PollerFieldbus(config)
    return None


async def serve_until_signal(config: SiteConfig) -> None:
    fieldbus = site_fieldbus(config)
    # A head's clusters take the parameters in force from each cycle's snapshot, to set them on the workers.
    publishers = [fieldbus] if isinstance(fieldbus, ClusterFieldbus) else []
    engine = Engine(config, fieldbus=fieldbus, publishers=publishers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    await serve(engine, stop)


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config, "run")
    if config is None:
        return EXIT_BAD_CONFIG
    configure_logging(config.logging.level)
    log = logging.getLogger(__name__)
    log.info(
        "site %s: %d node(s), cycle %g ms, config %s",
        config.name,
        len(config.nodes),
        config.cycle_ms,
        args.config,
    )
    if config.role == "head":
        log.info(
            "head of %d worker(s): %s", len(parse_head(config).workers), ", ".join(parse_head(config).workers)
        )
    elif not config.nodes:
        log.warning("no nodes configured: add them to `nodes:` in %s (see socgw discover)", args.config)
    try:
        # Before anything is bound or removed: a second gateway on this config must not touch the first's.
        with InstanceLock(config.status_socket):
            uvloop.run(serve_until_signal(config))
    except (OSError, NorthboundError) as error:
        log.error("%s", error)
        return EXIT_FAILED
    log.info("stopped cleanly")
    return EXIT_OK


def node_target(node: NodeConfig) -> Target:
    transport = Transport.named(node.transport, node.baud, node.parity, node.stop_bits)
    return Target(node.host, node.port, node.unit, transport)


def validate(args: argparse.Namespace) -> int:
    config = load_or_report(args.config, "validate")
    if config is None:
        return EXIT_BAD_CONFIG
    print(f"{args.config}: valid: site {config.name}, role {config.role}, {len(config.nodes)} node(s)")
    if config.role == "head":
        print(f"  clusters (workers): {', '.join(parse_head(config).workers)}")
        for cluster in config.clusters:
            if cluster.packs:
                print(
                    f"  {cluster.worker_id}: {len(cluster.packs)} pack(s) served upstream: "
                    + ", ".join(cluster.packs)
                )
    for node in config.nodes:
        print(f"  {node.node_id}: {node_target(node)}, profile {node.profile.key}")
    if config.pollers > 1:
        for number, share in enumerate(split_nodes(config.nodes, config.pollers), start=1):
            ids = ", ".join(node.node_id for node in share)
            print(f"  poller {number}: {len(share)} node(s): {ids}")
    max_age_s = config.balancer.max_telemetry_age_s
    for plan in plan_lines(
        [LineMember(n.node_id, node_target(n), n.profile) for n in config.nodes], config.cycle_ms / 1000
    ):
        print(f"  {plan.describe()}")
        if not plan.meets(max_age_s):
            print(
                f"  warning: line {plan.line} cannot keep its units' telemetry within the balancer's "
                f"max_telemetry_age_s ({max_age_s:g} s): they will be offline between turns; raise the baud "
                "rate, move units to another line, or raise balancer.max_telemetry_age_s to "
                f"{math.ceil(plan.fast_age_s * 10) / 10:g} s"
            )
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    path = args.socket
    if path is None and args.config is not None:
        config = load_or_report(args.config, "status")
        if config is None:
            return EXIT_BAD_CONFIG
        path = config.status_socket
    try:
        document = read_status(path or default_status_socket())
    except OSError as error:
        print(f"socgw status: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(document, indent=2))
        return EXIT_OK
    print(status_table_text(document))
    return EXIT_OK
