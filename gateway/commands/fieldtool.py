"""What the field tools (`socgw discover`, `read`, `write`, `profile check`) share: targets, profiles,
sessions, the event loop and how values are shown.

They use the same sessions, profiles and error messages as the running gateway, so what an installer sees
on site is what the gateway will see.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from gateway.config import ConfigError, load_config
from gateway.profiles.codec import CodecError, Value, active_labels
from gateway.profiles.loader import ProfileError, ProfileLibrary, default_profile_dirs, load_profile
from gateway.profiles.model import DataType, Point, Profile
from gateway.southbound.errors import FieldError, Region
from gateway.southbound.link import silence_pymodbus_logging
from gateway.southbound.reading import PointRead
from gateway.southbound.session import ModbusSession, SessionOptions, silence_session_logging

EXIT_OK = 0
EXIT_FAILED = 1  # the device or the profile is wrong
EXIT_BAD_INPUT = 2
DEFAULT_PORT = 502

_TARGET = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+))(?::(?P<port>\d+))?(?:/(?P<unit>\d+))?$")


class UsageError(Exception):
    """Bad command-line input; the message says what to type instead."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    unit: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}/{self.unit}"


def parse_target(text: str) -> Address | None:
    """`HOST[:PORT][/UNIT]` (port 502, unit 1 by default); None for a bare name (a node id)."""
    match = _TARGET.match(text.strip())
    is_address = match is not None and (
        "/" in text or ":" in text or _is_ip(match["host"] or match["v6"] or "")
    )
    if match is None or not is_address:
        return None
    port, unit = int(match["port"] or DEFAULT_PORT), int(match["unit"] or 1)
    if not 1 <= port <= 65535:
        raise UsageError(f"port {port} in {text!r} must be 1..65535")
    if not 0 <= unit <= 255:
        raise UsageError(f"unit {unit} in {text!r} must be 0..255 (usually 1..247)")
    return Address(match["v6"] or match["host"], port, unit)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def library() -> ProfileLibrary:
    return ProfileLibrary(default_profile_dirs())


def open_profile(key_or_path: str) -> Profile:
    """A profile by library key (vendor/model) or from a file."""
    path = Path(key_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_profile(path)
    return library().get(key_or_path)


def run_tool(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a tool on the event loop; bad input ends it with exit status 2 and the message."""
    silence_pymodbus_logging()
    silence_session_logging()  # the tools print every error themselves
    try:
        return uvloop.run(coroutine)
    except (UsageError, ProfileError) as error:
        print(f"socgw: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def add_unit_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, helptext: str
) -> argparse.ArgumentParser:
    """A command on one unit (`read`, `write`): TARGET and the options that say how to reach it."""
    parser = subparsers.add_parser(
        name,
        help=helptext,
        description=f"{helptext.capitalize()} in engineering units, through the profile (the variant "
        "is chosen by the firmware read first). TARGET is HOST:PORT/UNIT with --profile, or a node id of "
        "the site config given with -c.",
    )
    parser.add_argument(
        "target", metavar="TARGET", help="HOST:PORT/UNIT (e.g. 10.0.0.7:502/1), or a node id with -c"
    )
    parser.add_argument("--profile", metavar="KEY", help="profile key or file (default: the node's)")
    parser.add_argument("-c", "--config", type=Path, metavar="CONFIG", help="site config, for node ids")
    parser.add_argument("--raw", action="store_true", help="also show the raw registers")
    parser.add_argument("--timeout-ms", type=float, default=1000.0, help="per request (default 1000)")
    return parser


def _unit_session(args: argparse.Namespace, verify: str | None = None) -> ModbusSession:
    """A session for TARGET: an address with --profile, or a node id of the site config given with -c.
    `verify`: a point read back after it is written."""
    if args.timeout_ms <= 0:
        raise UsageError("--timeout-ms must be > 0")
    options = SessionOptions.for_tool(args.timeout_ms, verify=verify)
    address = parse_target(args.target)
    if address is not None:
        if args.profile is None:
            raise UsageError(f"{args.target}: give the profile with --profile KEY (e.g. microstore/mp2000)")
        profile = open_profile(args.profile)
        return ModbusSession(str(address), address.host, address.port, address.unit, profile, options=options)
    if args.config is None:
        raise UsageError(
            f"{args.target!r} is not HOST:PORT/UNIT (e.g. 192.168.1.20:502/1); for a node id give the site "
            "config with -c gateway.yaml"
        )
    try:
        config = load_config(args.config)
    except ConfigError as error:
        raise UsageError(f"cannot use the site config:\n{error}") from None
    for node in config.nodes:
        if node.node_id == args.target:
            profile = open_profile(args.profile) if args.profile is not None else node.profile
            return ModbusSession(node.node_id, node.host, node.port, node.unit, profile, options=options)
    known = ", ".join(node.node_id for node in config.nodes) or "none"
    raise UsageError(f"{args.config} has no node {args.target!r} (nodes: {known})")


def run_on_unit(
    args: argparse.Namespace, tool: Callable[[ModbusSession], Awaitable[int]], *, verify: str | None = None
) -> int:
    """Run `tool` on a connected session for TARGET (an address with --profile, or a node id with -c),
    then close it. A device that does not answer, or answers what the profile cannot decode, ends the
    tool with exit status 1."""
    return run_tool(_on_unit(args, tool, verify))


async def _on_unit(
    args: argparse.Namespace, tool: Callable[[ModbusSession], Awaitable[int]], verify: str | None
) -> int:
    session = _unit_session(args, verify)
    try:
        await session.connect(time.monotonic())
        if session.condition is not None:  # unknown firmware: read-only, with the common points
            print(f"warning: {session.condition}", file=sys.stderr)
        return await tool(session)
    except FieldError as error:
        print(one_shot_message(error), file=sys.stderr)
        return EXIT_FAILED
    except CodecError as error:
        print(f"socgw {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await session.close()


# The gateway's messages end with what the gateway does next; a field tool tries once and stops.
_GATEWAY_RETRIES = ("; retrying with backoff", "; reconnecting with backoff", "; reconnecting")


def one_shot_message(error: FieldError) -> str:
    """The error as a tool that tried once reports it: the gateway's "retrying" ending replaced."""
    text = str(error)
    for ending in _GATEWAY_RETRIES:
        if text.endswith(ending):
            return text.removesuffix(ending) + "; gave up (the tool tries once: run it again)"
    return text


def point_named(session: ModbusSession, name: str) -> Point:
    points = session.known_points
    point = points.get(name)
    if point is None:
        raise UsageError(f"{session.profile.key} has no point {name!r}; points: {', '.join(sorted(points))}")
    return point


def format_value(value: Value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def show(read: PointRead, session: ModbusSession, raw: bool) -> str:
    """`name = value unit (label)`, and with `raw` the registers it came from."""
    point, value, words = read.point, read.value, read.words
    shown = "not implemented (sentinel)" if value is None else f"{format_value(value)} {point.unit}".rstrip()
    label = None
    if isinstance(value, int | float) and point.type is DataType.ENUM:
        label = point.labels.get(int(value), "no label")
    elif isinstance(value, int | float) and point.type is DataType.BITS:
        label = ", ".join(active_labels(point, int(value))) or "none set"
    text = f"{point.name} = {shown}" + (f" ({label})" if label else "")
    if raw:
        region = Region(point.table, point.address, point.count).describe(session.profile.address_notation)
        text += f"\n  raw {region}: {list(words)} = {' '.join(f'{w:04x}' for w in words)}"
    return text
