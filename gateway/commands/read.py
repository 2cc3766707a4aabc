"""`socgw read TARGET POINT...`: read points of a unit in engineering units, through its profile."""

from __future__ import annotations

import argparse
import sys

from gateway.commands.fieldtool import (
    EXIT_FAILED,
    EXIT_OK,
    add_unit_command,
    one_shot_message,
    point_named,
    run_on_unit,
    show,
)
from gateway.profiles.codec import CodecError
from gateway.southbound.errors import FieldError
from gateway.southbound.session import ModbusSession


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_unit_command(subparsers, "read", "read points of a unit")
    parser.add_argument("points", nargs="+", metavar="POINT", help="point name, e.g. soc_pct")
    parser.set_defaults(handler=run_read)


def run_read(args: argparse.Namespace) -> int:
    async def read(session: ModbusSession) -> int:
        status = EXIT_OK
        for name in args.points:
            point_named(session, name)  # an unknown name is bad input (exit 2), not a device fault
            try:
                print(show(await session.read_point(name), session, args.raw))
            except FieldError as error:  # the other points may still read
                print(one_shot_message(error), file=sys.stderr)
                status = EXIT_FAILED
            except CodecError as error:
                print(f"socgw read: {error}", file=sys.stderr)
                status = EXIT_FAILED
        return status

    return run_on_unit(args, read)
