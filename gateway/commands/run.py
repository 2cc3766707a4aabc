"""`socgw run`, `socgw validate` and `socgw status`: the daemon, its config check and its status."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from gateway.commands.view import status_table_text
from gateway.config import ConfigError, SiteConfig, load_config
from gateway.engine import Engine, Publisher
from gateway.status import StatusServer, default_status_socket, read_status

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


def load_or_report(path: Path, command: str) -> SiteConfig | None:
    try:
        return load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"socgw {command}: {len(error.problems)} problem(s) in {path}", file=sys.stderr)
        return None


async def serve(config: SiteConfig, publishers: Sequence[Publisher] = ()) -> None:
    """Run the engine with its status socket until SIGTERM/SIGINT, then shut down safely."""
    engine = Engine(config, publishers=publishers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    status_server = StatusServer(config.status_socket, engine.status)
    await status_server.start()
    try:
        await engine.run(stop)
    finally:
        await engine.shutdown()
        await status_server.stop()


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args.config, "run")
    if config is None:
        return EXIT_BAD_CONFIG
    configure_logging(config.logging.level)
    log = logging.getLogger("socgw")
    log.info(
        "site %s: %d node(s), cycle %g ms, config %s",
        config.name,
        len(config.nodes),
        config.cycle_ms,
        args.config,
    )
    try:
        uvloop.run(serve(config))
    except OSError as error:
        log.error("%s", error)
        return EXIT_FAILED
    log.info("stopped cleanly")
    return EXIT_OK


def validate(args: argparse.Namespace) -> int:
    config = load_or_report(args.config, "validate")
    if config is None:
        return EXIT_BAD_CONFIG
    print(f"{args.config}: valid: site {config.name}, {len(config.nodes)} node(s)")
    for node in config.nodes:
        print(f"  {node.node_id}: {node.host}:{node.port} unit {node.unit}, profile {node.profile.key}")
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
