"""`socgw write TARGET POINT VALUE`: write a point of a unit in engineering units, then read it back."""

from __future__ import annotations

import argparse
import sys
import time

from gateway.commands.fieldtool import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_unit_command,
    format_value,
    point_named,
    run_on_unit,
    show,
)
from gateway.fleet import Quality
from gateway.profiles.model import Point
from gateway.southbound.session import ModbusSession
from gateway.southbound.writer import WriteStatus


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_unit_command(subparsers, "write", "write a point of a unit")
    parser.add_argument("point", metavar="POINT", help="point name, e.g. setpoint_w")
    parser.add_argument("value", metavar="VALUE", help="engineering value (or an enum label)")
    parser.set_defaults(handler=run_write)


def run_write(args: argparse.Namespace) -> int:
    async def write(session: ModbusSession) -> int:
        point = point_named(session, args.point)
        value = _value(point, args.value)
        reading = await session.poll(time.monotonic())  # learns scale factors and the current value
        if reading.quality is not Quality.GOOD:
            print(reading.error, file=sys.stderr)
            return EXIT_FAILED
        before = reading.values.get(point.name)
        shown_before = "?" if before is None else format_value(before)
        outcome = (await session.write_setpoints({point.name: value}, time.monotonic()))[0]
        if outcome.status is WriteStatus.FAILED:
            print(outcome.error, file=sys.stderr)
            return EXIT_FAILED
        if outcome.status is WriteStatus.UNCHANGED:
            print(
                f"{point.name} already holds {shown_before} {point.unit} "
                f"(deadband {point.deadband:g}): nothing written"
            )
            return EXIT_OK
        after = await session.read_point(point.name)
        print(f"{point.name} was {f'{shown_before} {point.unit}'.strip()}; written and read back:")
        print(show(after, session, args.raw))
        return EXIT_OK

    return run_on_unit(args, write, verify=args.point)


def _value(point: Point, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        for raw, label in point.labels.items():
            if label == text:
                return float(raw)
    labels = f" or one of its labels: {', '.join(point.labels.values())}" if point.labels else ""
    raise UsageError(
        f"{text!r} is not a value for {point.name} (a number in {point.unit or 'its unit'}{labels})"
    )
