"""`socgw discover CIDR`: find and identify Modbus units on a network and print a `nodes:` section."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections import Counter
from collections.abc import Sequence

from gateway.commands.fieldtool import DEFAULT_PORT, EXIT_FAILED, EXIT_OK, UsageError, library, run_tool
from gateway.profiles.loader import ProfileError
from gateway.profiles.model import Profile
from gateway.southbound.discover import Discovered, discover

NODE_ID_MAX = 32  # the site config's limit on a node id
MAX_SCAN_ADDRESSES = 65536  # a /16; larger ranges take long and look like an attack: need --force


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scan = subparsers.add_parser(
        "discover",
        help="find and identify Modbus units on a network; prints a `nodes:` section",
        description="Connect-scan CIDR on PORT, probe each unit id (SunSpec marker, every known profile's "
        "identify block) and print a ready-to-paste YAML `nodes:` section.",
    )
    scan.add_argument("cidr", metavar="CIDR", help="network to scan, e.g. 192.168.10.0/24")
    scan.add_argument(
        "--port",
        default=str(DEFAULT_PORT),
        help="Modbus TCP ports, e.g. 502 or 15020-15023 or 502,1502 (default 502)",
    )
    scan.add_argument(
        "--units", default="1-247", help="unit ids to probe, e.g. 1-247 or 1,2,10-12 (default 1-247)"
    )
    scan.add_argument("--concurrency", type=int, default=256, help="connections at once (default 256)")
    scan.add_argument("--timeout-ms", type=float, default=200.0, help="per connect and request (default 200)")
    scan.add_argument("--force", action="store_true", help="allow ranges larger than a /16")
    scan.set_defaults(handler=run_discover)


def parse_numbers(text: str, option: str, lowest: int, highest: int) -> list[int]:
    """ "1-247", "1,3,10-12" -> the numbers, each within lowest..highest."""
    numbers: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise UsageError(f"{option} {text!r}: use numbers and ranges like 1-247 or 1,3,10-12") from None
        if not lowest <= first <= last <= highest:
            raise UsageError(f"{option} {text!r}: use {lowest}..{highest}, and ranges that go upwards")
        numbers.extend(range(first, last + 1))
    return sorted(set(numbers))


def parse_units(text: str) -> list[int]:
    return parse_numbers(text, "--units", 0, 255)


def parse_ports(text: str) -> list[int]:
    return parse_numbers(text, "--port", 1, 65535)


def _all_profiles() -> list[Profile]:
    """Every profile the library can load; a broken one is reported and left out."""
    profiles = library()
    keys = profiles.keys()  # a ProfileLibrary, not a dict: the keys of every profile file found
    loaded = []
    for key in keys:
        try:
            loaded.append(profiles.get(key))
        except ProfileError as error:
            print(f"# skipping profile {key}: {error}", file=sys.stderr)
    return loaded


def run_discover(args: argparse.Namespace) -> int:
    return run_tool(_discover(args))


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
    ports = parse_ports(args.port)
    if len(ports) * network.num_addresses > MAX_SCAN_ADDRESSES and not args.force:
        raise UsageError(
            f"{network} on {len(ports)} ports makes {len(ports) * network.num_addresses} connects; more than "
            f"{MAX_SCAN_ADDRESSES} take long and look like an attack: narrow it, or add --force"
        )
    print(f"# scanning {network} port {args.port}, units {args.units} ...", file=sys.stderr)
    found = []
    for port in ports:
        found += await discover(
            network, port, units, profiles, concurrency=args.concurrency, timeout_s=args.timeout_ms / 1000
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
    for item, node_id in zip(identified, unique_ids(identified), strict=True):
        assert item.profile is not None
        fields = {"id": node_id, "host": item.host, "port": item.port, "unit": item.unit}
        fields["profile"] = item.profile.key
        mapping = ", ".join(f"{key}: {json.dumps(value)}" for key, value in fields.items())
        facts = [f"firmware {item.firmware}"] + ([f"serial {item.serial}"] if item.serial else [])
        lines.append(f"  - {{ {mapping} }}  # {', '.join(facts)}")
    return "\n".join(lines) + "\n"


def unique_ids(found: Sequence[Discovered]) -> list[str]:
    """Each unit's proposed node id; units that would share one (the same host on several ports) get
    their port appended, so that the ids stay unique when the results are merged into one config."""
    counts = Counter(item.node_id for item in found)
    ids = []
    for item in found:
        node_id = item.node_id
        if counts[node_id] > 1:
            suffix = f"-{item.port}"
            node_id = node_id[: NODE_ID_MAX - len(suffix)] + suffix
        ids.append(node_id)
    return ids
