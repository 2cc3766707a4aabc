"""Field tools for commissioning: `socgw discover`, `socgw read`, `socgw write` and `socgw profile check`.

They use the same sessions, profiles and error messages as the running gateway, so what an installer sees
on site is what the gateway will see.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import re
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from gateway.config import ConfigError, load_config
from gateway.fleet import Quality
from gateway.profiles.codec import CodecError, Value, active_labels, decode
from gateway.profiles.loader import ProfileError, ProfileLibrary, default_profile_dirs, load_profile
from gateway.profiles.model import DataType, Point, Profile
from gateway.southbound.check import PointCheck, Severity, check_points
from gateway.southbound.discover import Discovered, discover
from gateway.southbound.errors import FieldError, Region
from gateway.southbound.link import silence_pymodbus_logging
from gateway.southbound.session import ModbusSession, SessionOptions
from gateway.southbound.writer import WritePolicy, WriteStatus

EXIT_OK = 0
EXIT_FAILED = 1  # the device or the profile is wrong
EXIT_BAD_INPUT = 2
MAX_SCAN_ADDRESSES = 65536  # a /16; larger ranges take long and look like an attack: need --force
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


def parse_units(text: str) -> list[int]:
    """ "1-247", "1,3,10-12" -> unit ids."""
    units: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise UsageError(f"--units {text!r}: use numbers and ranges like 1-247 or 1,3,10-12") from None
        if not 0 <= first <= last <= 255:
            raise UsageError(f"--units {text!r}: unit ids are 0..255 and ranges go upwards")
        units.extend(range(first, last + 1))
    return sorted(set(units))


def _library() -> ProfileLibrary:
    return ProfileLibrary(default_profile_dirs())


def _profile(key_or_path: str) -> Profile:
    """A profile by library key (vendor/model) or from a file."""
    path = Path(key_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_profile(path)
    return _library().get(key_or_path)


def _all_profiles() -> list[Profile]:
    """Every profile the library can load; a broken one is reported and left out."""
    library = _library()
    keys = library.keys()
    profiles = []
    for key in keys:
        try:
            profiles.append(library.get(key))
        except ProfileError as error:
            print(f"# skipping profile {key}: {error}", file=sys.stderr)
    return profiles


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    silence_pymodbus_logging()
    # The tools print every error themselves; the session's once-per-change log would repeat them.
    logging.getLogger("gateway.southbound.session").setLevel(logging.CRITICAL)
    try:
        return uvloop.run(coroutine)
    except (UsageError, ProfileError) as error:
        print(f"socgw: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = subparsers.add_parser(
        "discover",
        help="find and identify Modbus units on a network; prints a `nodes:` section",
        description="Connect-scan CIDR on PORT, probe each unit id (SunSpec marker, every known profile's "
        "identify block) and print a ready-to-paste YAML `nodes:` section.",
    )
    scan.add_argument("cidr", metavar="CIDR", help="network to scan, e.g. 192.168.10.0/24")
    scan.add_argument("--port", type=int, default=DEFAULT_PORT, help="Modbus TCP port (default 502)")
    scan.add_argument(
        "--units", default="1-247", help="unit ids to probe, e.g. 1-247 or 1,2,10-12 (default 1-247)"
    )
    scan.add_argument("--concurrency", type=int, default=256, help="connections at once (default 256)")
    scan.add_argument("--timeout-ms", type=float, default=200.0, help="per connect and request (default 200)")
    scan.add_argument("--force", action="store_true", help="allow ranges larger than a /16")
    scan.set_defaults(handler=run_discover)

    for name, helptext in (("read", "read points of a unit"), ("write", "write a point of a unit")):
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
        if name == "read":
            parser.add_argument("points", nargs="+", metavar="POINT", help="point name, e.g. soc_pct")
        else:
            parser.add_argument("point", metavar="POINT", help="point name, e.g. setpoint_w")
            parser.add_argument("value", metavar="VALUE", help="engineering value (or an enum label)")
        parser.add_argument("--profile", metavar="KEY", help="profile key or file (default: the node's)")
        parser.add_argument("-c", "--config", type=Path, metavar="CONFIG", help="site config, for node ids")
        parser.add_argument("--raw", action="store_true", help="also show the raw registers")
        parser.add_argument("--timeout-ms", type=float, default=1000.0, help="per request (default 1000)")
        parser.set_defaults(handler=run_read if name == "read" else run_write)


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
    check.add_argument("--host", required=True)
    check.add_argument("--port", type=int, default=DEFAULT_PORT)
    check.add_argument("--unit", type=int, default=1)
    check.add_argument("--timeout-ms", type=float, default=1000.0, help="per request (default 1000)")
    check.set_defaults(handler=run_profile_check)


# ---- discover ---------------------------------------------------------------------------------------


def run_discover(args: argparse.Namespace) -> int:
    return _run(_discover(args))


async def _discover(args: argparse.Namespace) -> int:
    try:
        network = ipaddress.ip_network(args.cidr, strict=False)
    except ValueError as error:
        raise UsageError(f"{args.cidr!r} is not a network (e.g. 192.168.10.0/24): {error}") from None
    if network.num_addresses > MAX_SCAN_ADDRESSES and not args.force:
        raise UsageError(
            f"{network} has {network.num_addresses} addresses; scanning more than a /16 takes long and looks "
            "like an attack to network monitoring: narrow it, or add --force"
        )
    if args.concurrency < 1 or args.timeout_ms <= 0:
        raise UsageError("--concurrency must be >= 1 and --timeout-ms > 0")
    profiles = _all_profiles()
    units = parse_units(args.units)
    print(f"# scanning {network} port {args.port}, units {args.units} ...", file=sys.stderr)
    found = await discover(
        network, args.port, units, profiles, concurrency=args.concurrency, timeout_s=args.timeout_ms / 1000
    )
    print(nodes_yaml(found, f"socgw discover {network} --port {args.port}"), end="")
    return EXIT_OK if found else EXIT_FAILED


def nodes_yaml(found: Sequence[Discovered], origin: str) -> str:
    """The identified units as a `nodes:` section in the site config's format, one flow mapping per node;
    firmware and serial ride along as comments (the site config has no key for them). Units that answer
    but match no profile are listed as comments."""
    identified = [item for item in found if item.profile is not None]
    lines = [f"# {origin}: {len(identified)} unit(s) identified"]
    lines += [f"# {item.host}:{item.port} unit {item.unit}: {item.note}" for item in found if item.note]
    lines.append("nodes:" if identified else "nodes: []")
    for item in identified:
        assert item.profile is not None
        fields = {"id": item.node_id, "host": item.host, "port": item.port, "unit": item.unit}
        fields["profile"] = item.profile.key
        mapping = ", ".join(f"{key}: {json.dumps(value)}" for key, value in fields.items())
        facts = [f"firmware {item.firmware}"] + ([f"serial {item.serial}"] if item.serial else [])
        lines.append(f"  - {{ {mapping} }}  # {', '.join(facts)}")
    return "\n".join(lines) + "\n"


# ---- read / write -----------------------------------------------------------------------------------


def _session(args: argparse.Namespace, policy: WritePolicy | None = None) -> ModbusSession:
    """A session for TARGET: an address with --profile, or a node id of the site config given with -c."""
    if args.timeout_ms <= 0:
        raise UsageError("--timeout-ms must be > 0")
    options = SessionOptions(
        timeout_s=args.timeout_ms / 1000,
        connect_timeout_s=max(1.0, args.timeout_ms / 1000),
        writes=policy or WritePolicy(heartbeat_interval_s=None),
    )
    address = parse_target(args.target)
    if address is not None:
        if args.profile is None:
            raise UsageError(f"{args.target}: give the profile with --profile KEY (e.g. microstore/mp2000)")
        profile = _profile(args.profile)
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
            profile = _profile(args.profile) if args.profile is not None else node.profile
            return ModbusSession(node.node_id, node.host, node.port, node.unit, profile, options=options)
    known = ", ".join(node.node_id for node in config.nodes) or "none"
    raise UsageError(f"{args.config} has no node {args.target!r} (nodes: {known})")


def _describe(point: Point, session: ModbusSession) -> str:
    return Region(point.table, point.address, point.count).describe(session.profile.address_notation)


def _show(point: Point, value: Value | None, words: Sequence[int], session: ModbusSession, raw: bool) -> str:
    shown = "not implemented (sentinel)" if value is None else f"{_format(value)} {point.unit}".rstrip()
    label = None
    if isinstance(value, int | float) and point.type is DataType.ENUM:
        label = point.labels.get(int(value), "no label")
    elif isinstance(value, int | float) and point.type is DataType.BITS:
        label = ", ".join(active_labels(point, int(value))) or "none set"
    text = f"{point.name} = {shown}" + (f" ({label})" if label else "")
    if raw:
        text += f"\n  raw {_describe(point, session)}: {list(words)} = {' '.join(f'{w:04x}' for w in words)}"
    return text


def _format(value: Value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


async def _connect(session: ModbusSession) -> None:
    await session.connect(time.monotonic())
    if session.condition is not None:
        print(f"warning: {session.condition}", file=sys.stderr)


def _lookup(session: ModbusSession, name: str) -> Point:
    points = dict(session.profile.identify.points) | dict(session.points)
    point = points.get(name)
    if point is None:
        raise UsageError(f"{session.profile.key} has no point {name!r}; points: {', '.join(sorted(points))}")
    return point


async def _read_point(session: ModbusSession, point: Point) -> tuple[Value | None, list[int]]:
    unit = session.target.unit
    words = await session.link.read(point.table, point.address, point.count, unit)
    scale_factor = None
    if point.scale_register is not None:
        sf_point = _lookup(session, point.scale_register)
        sf_value = decode(
            sf_point, await session.link.read(sf_point.table, sf_point.address, sf_point.count, unit)
        )
        scale_factor = None if sf_value is None or isinstance(sf_value, str) else int(sf_value)
    return (
        None if point.scale_register and scale_factor is None else decode(point, words, scale_factor)
    ), words


def run_read(args: argparse.Namespace) -> int:
    return _run(_read(args))


async def _read(args: argparse.Namespace) -> int:
    session = _session(args)
    try:
        await _connect(session)
        status = EXIT_OK
        for name in args.points:
            point = _lookup(session, name)
            try:
                value, words = await _read_point(session, point)
            except FieldError as error:
                print(error.in_context(session.context, (name,)), file=sys.stderr)
                status = EXIT_FAILED
                continue
            except CodecError as error:
                print(f"socgw read: {error}", file=sys.stderr)
                status = EXIT_FAILED
                continue
            print(_show(point, value, words, session, args.raw))
        return status
    except FieldError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    finally:
        await session.close()


def run_write(args: argparse.Namespace) -> int:
    return _run(_write(args))


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


async def _write(args: argparse.Namespace) -> int:
    session = _session(args, WritePolicy(heartbeat_interval_s=None, verify_points=frozenset({args.point})))
    try:
        await _connect(session)
        point = _lookup(session, args.point)
        value = _value(point, args.value)
        reading = await session.poll(time.monotonic())  # learns scale factors and the current value
        if reading.quality is not Quality.GOOD:
            print(reading.error, file=sys.stderr)
            return EXIT_FAILED
        before = reading.values.get(point.name)
        shown_before = "?" if before is None else _format(before)
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
        after, words = await _read_point(session, point)
        print(f"{point.name} was {f'{shown_before} {point.unit}'.strip()}; written and read back:")
        print(_show(point, after, words, session, args.raw))
        return EXIT_OK
    except CodecError as error:
        print(f"socgw write: {error}; nothing was sent", file=sys.stderr)
        return EXIT_FAILED
    except FieldError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    finally:
        await session.close()


# ---- profile check ----------------------------------------------------------------------------------


def run_profile_check(args: argparse.Namespace) -> int:
    return _run(_profile_check(args))


async def _profile_check(args: argparse.Namespace) -> int:
    profile = _profile(args.profile)
    options = SessionOptions(
        timeout_s=args.timeout_ms / 1000,
        connect_timeout_s=max(1.0, args.timeout_ms / 1000),
        writes=WritePolicy(None),
    )
    session = ModbusSession(
        f"{args.host}:{args.port}/{args.unit}", args.host, args.port, args.unit, profile, options=options
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
    print(_table(results, session))
    problems += sum(1 for r in results if r.severity is Severity.PROBLEM)
    warnings = sum(1 for r in results if r.severity is Severity.WARNING)
    print(f"{len(results)} point(s) read: {problems} problem(s), {warnings} warning(s)")
    return EXIT_FAILED if problems else EXIT_OK


def _table(results: Sequence[PointCheck], session: ModbusSession) -> str:
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
        value = "-" if result.value is None else f"{_format(result.value)} {point.unit}".rstrip()
        mark = {Severity.OK: "", Severity.WARNING: "WARNING: ", Severity.PROBLEM: "PROBLEM: "}[
            result.severity
        ]
        rows.append((point.name, register, raw, value, mark + result.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )
