"""`socgw profile check PROFILE --host HOST`: read every point of a profile from a live device and flag
what looks wrong (the judging is `gateway.southbound.check`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from gateway.commands.fieldtool import (
    DEFAULT_PORT,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_transport_options,
    format_value,
    open_profile,
    run_tool,
    transport_of,
)
from gateway.southbound.check import PointCheck, Severity, check_points
from gateway.southbound.errors import FieldError
from gateway.southbound.session import ModbusSession, SessionOptions


def add_profile_check(profile_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `socgw profile check` to the `profile` command's sub-commands."""
    check = profile_subparsers.add_parser(
        "check",
        help="read every point of a profile from a live device and flag what looks wrong",
        description="Identify the device, read every point of the selected variant one by one, print the "
        "decoded values and flag exceptions, sentinels and implausible values. Exit status 1 when "
        "something is wrong.",
    )
    check.add_argument("profile", metavar="PROFILE", help="profile key (vendor/model) or file")
    check.add_argument("--host", help="the device's (or converter's) address; not with --serial")
    check.add_argument("--port", type=int, default=DEFAULT_PORT)
    check.add_argument("--unit", type=int, default=1)
    check.add_argument("--timeout-ms", type=float, default=1000.0, help="per request (default 1000)")
    add_transport_options(check)
    check.set_defaults(handler=run_profile_check)


def run_profile_check(args: argparse.Namespace) -> int:
    return run_tool(_profile_check(args))


async def _profile_check(args: argparse.Namespace) -> int:
    profile = open_profile(args.profile)
    transport = transport_of(args)
    if (args.serial is None) == (args.host is None):
        raise UsageError("give the device with --host HOST (Modbus TCP, RTU over TCP) or --serial DEVICE")
    host, port = (args.host, args.port) if args.serial is None else (args.serial, 0)
    session = ModbusSession(
        f"{host}:{port}/{args.unit}" if args.serial is None else f"{host}/{args.unit}",
        host,
        port,
        args.unit,
        profile,
        options=SessionOptions.for_tool(args.timeout_ms),
        transport=transport,
    )
    print(f"profile check: {profile.key} {profile.profile_version} against {session.target}")
    try:
        await session.connect(time.monotonic())
    except FieldError as error:
        print(f"PROBLEM: {error}")
        return EXIT_FAILED
    try:
        selection = session.selection
        assert selection is not None
        variant = (
            "none (read-only, common points)"
            if selection.variant is None
            else str(selection.variant.firmware)
        )
        print(f"firmware {selection.firmware_text}: variant {variant}")
        problems = 1 if session.condition is not None else 0
        if session.condition is not None:
            print(f"PROBLEM: {session.condition}")
        results = await check_points(session)
    finally:
        await session.close()
    print(_table(results))
    problems += sum(1 for r in results if r.severity is Severity.PROBLEM)
    warnings = sum(1 for r in results if r.severity is Severity.WARNING)
    print(f"{len(results)} point(s) read: {problems} problem(s), {warnings} warning(s)")
    return EXIT_FAILED if problems else EXIT_OK


def _table(results: Sequence[PointCheck]) -> str:
    rows = [("POINT", "REGISTER", "RAW", "VALUE", "VERDICT")]
    for result in results:
        point = result.point
        register = f"{point.table.value} {point.address}"
        words = result.words
        raw = (
            "-"
            if words is None
            else " ".join(f"{w:04x}" for w in words[:4]) + (" …" if len(words) > 4 else "")
        )
        value = "-" if result.value is None else f"{format_value(result.value)} {point.unit}".rstrip()
        mark = {Severity.OK: "", Severity.WARNING: "WARNING: ", Severity.PROBLEM: "PROBLEM: "}[
            result.severity
        ]
        rows.append((point.name, register, raw, value, mark + result.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )
