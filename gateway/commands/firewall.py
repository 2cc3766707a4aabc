"""`socgw firewall`: the nftables ruleset matching the site config, in a table of its own.

    table inet socgw
      input:  each northbound port (DNP3, IEC 61850, web) only from that protocol's `allow:` networks
      output: the service user reaches only the nodes' Modbus ports (and the MQTT brokers), loopback,
              and answers on connections already admitted; DNS when a node is given by name

It only prints (or writes) the ruleset: review it, then load it with `nft -f` (socgw-firewall.service
does that at boot and whenever the config changes). The table replaces itself on every load, so the
ruleset can be loaded again and again; other tables (the machine's own firewall) are left alone. The
rules mirror the front door's allow-lists: a peer the front door would close unanswered is dropped
before it reaches the gateway.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.commands.run import DEFAULT_CONFIG, config_missing, report_problems, write_output
from gateway.config import ConfigError, SiteConfig, load_config
from gateway.northbound.dnp3.settings import parse_settings as dnp3_settings
from gateway.northbound.iec61850.settings import load_settings as iec61850_settings
from gateway.northbound.mqtt.settings import parse_settings as mqtt_settings
from gateway.northbound.section import Network
from gateway.northbound.web.settings import parse_settings as web_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
TABLE = "socgw"
SERVICE_USER = "socgw"


@dataclass(frozen=True)
class Port:
    """A northbound port and who may reach it."""

    section: str
    port: int
    allow: tuple[Network, ...]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "firewall",
        help="print the nftables ruleset that matches the config's allow-lists and nodes",
        description=(
            "Print an nftables ruleset (table inet socgw) admitting each northbound port only from its "
            "`allow:` networks and letting the service user reach only the configured nodes' Modbus "
            "ports. Review it, then load it: nft -f FILE (socgw-firewall.service does it for the package)."
        ),
    )
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="site config file")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    parser.add_argument(
        "--user", default=SERVICE_USER, help=f"the user the gateway runs as (default {SERVICE_USER})"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if config_missing(args.config, "firewall"):
        return EXIT_BAD_CONFIG
    try:
        text = ruleset(load_config(args.config), args.user, str(args.config))
    except ConfigError as error:
        report_problems(error, "firewall", args.config)
        return EXIT_BAD_CONFIG
    return EXIT_OK if write_output(text, args.output, "firewall") else EXIT_FAILED


def listening_ports(site: SiteConfig) -> list[Port]:
    """Every northbound port the gateway listens on, with its allow-list; ConfigError when unchecked."""
    ports = []
    dnp3 = dnp3_settings(site)
    if dnp3 is not None:
        ports.append(Port("dnp3", dnp3[0].port, dnp3[0].admission.allow))
    iec = iec61850_settings(site)
    if iec is not None:
        ports.append(Port("iec61850", iec[0].port, iec[0].admission.allow))
    web = web_settings(site)
    if web is not None:
        ports.append(Port("web", web.port, web.allow))
    return ports


def destinations(site: SiteConfig) -> list[tuple[str, int, str]]:
    """(host, TCP port, what) the gateway connects to: Modbus nodes over TCP and the MQTT brokers."""
    found = [
        (node.host, node.port, f"node {node.node_id}") for node in site.nodes if node.transport != "serial"
    ]
    mqtt = mqtt_settings(site)
    if mqtt is not None:
        found += [(broker.host, broker.port, "MQTT broker") for broker in mqtt.brokers]
    return found


def ruleset(site: SiteConfig, user: str, source: str) -> str:
    """The nftables ruleset for `site` (the gateway runs as `user`)."""
    lines = [
        "#!/usr/sbin/nft -f",
        f"# socgw firewall: made by `socgw firewall` from {source}; review, then load with nft -f.",
        f"# Only the table inet {TABLE} is replaced; the machine's other tables stay as they are.",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
    ]
    ports = listening_ports(site)
    for port in ports:
        lines += _sets(port.section, port.allow)
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter - 1; policy accept;",
    ]
    for port in ports:
        lines += _admit(port)
    lines += [
        "\t}",
        "\tchain output {",
        "\t\ttype filter hook output priority filter - 1; policy accept;",
        f'\t\tmeta skuid != "{user}" accept',
        '\t\toifname "lo" accept',
        "\t\tct state established,related accept  # answers to the masters admitted above",
    ]
    targets = destinations(site)
    if any(not _is_address(host) for host, _, _ in targets):
        lines += ["\t\tudp dport 53 accept  # a node or broker given by name", "\t\ttcp dport 53 accept"]
    for host, number, what in targets:
        lines.append(f"\t\t{_family(host)} daddr {host} tcp dport {number} accept  # {what}")
    lines += [
        f"\t\tcounter drop  # anything else {user} sends",
        "\t}",
        "}",
        "",
    ]
    return "\n".join(lines)


def _sets(section: str, allow: Iterable[Network]) -> list[str]:
    lines = []
    for family, kind in (("v4", "ipv4_addr"), ("v6", "ipv6_addr")):
        elements = [str(network) for network in allow if f"v{network.version}" == family]
        body = f" elements = {{ {', '.join(elements)} }};" if elements else ""
        lines.append(f"\tset {section}_allow_{family} {{ type {kind}; flags interval;{body} }}")
    return lines


def _admit(port: Port) -> list[str]:
    name = port.section
    return [
        f"\t\ttcp dport {port.port} ip saddr @{name}_allow_v4 accept  # {name}",
        f"\t\ttcp dport {port.port} ip6 saddr @{name}_allow_v6 accept",
        f"\t\ttcp dport {port.port} counter drop  # {name}: not on its allow-list",
    ]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _family(host: str) -> str:
    return "ip6" if _is_address(host) and ipaddress.ip_address(host).version == 6 else "ip"
