"""The `socgw` command line: a thin dispatcher over `gateway.commands.*`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway import __version__

# Each module registers its sub-commands; the order is the order of `socgw --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.commands.run",
    "gateway.commands.demo",
    "gateway.commands.balance",
    "gateway.commands.profile",
    "gateway.commands.schema",
    "gateway.commands.discover",
    "gateway.commands.read",
    "gateway.commands.write",
    "gateway.commands.simulate",
    "gateway.commands.icd",
    "gateway.commands.points",
    "gateway.commands.firewall",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socgw",
        description="Protocol gateway and SOC balancer for microgrid battery fleets.",
    )
    parser.add_argument("--version", action="version", version=f"socgw {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; its handler (set with `set_defaults(handler=...)`) returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
