"""The `northbound.dnp3` section of the site config, checked; no stack is loaded here.

Config (`northbound: dnp3:` in the site config; every key optional):

    host: 127.0.0.1            # address to listen on
    port: 20000
    outstation_address: 10     # link addresses; only the configured master is answered
    master_address: 1
    map: default               # a name (mappings/dnp3/<name>.yaml) or a file path
    unsolicited: false         # allow unsolicited responses (the master must still enable them)
    select_timeout_s: 10       # an OPERATE later than this after its SELECT gets TIMEOUT
    event_buffer: {binary: 10000, analog: 65535, binary_output_status: 1000, analog_output_status: 1000}
    rated_power_w: 120000      # 100 % for AO93; default: learned from the packs' discharge limits
    tls: {ca: ca.pem, cert: outstation.pem, key: outstation.key}   # mutual TLS (paths: config dir)
    allow: [10.1.2.0/24]       # who may connect (default: this machine only); the front door's limits:
    first_frame_s: 5           # no valid DNP3 link frame by then: closed
    idle_s: 90                 # nothing from the master for this long (its link keep-alive failed): closed
    connects_per_min: 120      # per source address
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Checker, MarkedMap
from gateway.diagnostics.fields import flag, number, section, table, text, whole
from gateway.mapping.dnp3 import DEFAULT_MAP, Dnp3Map, MappingError, find_map, load_dnp3_map
from gateway.northbound.section import (
    Admission,
    admission_fields,
    config_dir,
    listen_host,
    open_section,
    parse_admission,
)
from gateway.northbound.tls import TLS_SECTION, TlsFiles, parse_tls

__all__ = ["BINARY_STATE", "FIELDS", "SECTION", "Dnp3Settings", "EventBuffers", "TlsFiles", "parse_settings"]

SECTION = "dnp3"
MAX_LINK_ADDRESS = 0xFFEF  # 0xFFF0-0xFFFF are reserved (broadcast, self-address)
MAX_EVENT_BUFFER = 65535  # the stack counts events per type in 16 bits
BINARY_STATE = 0x80  # the state bit of a binary's flag octet
DEFAULT_ADMISSION = Admission(idle_s=90.0)  # the link keep-alive runs every 60 s


@dataclass(frozen=True)
class EventBuffers:
    """Events the outstation keeps per type while no master collects them (see docs/dnp3.md)."""

    binary: int = 10000
    analog: int = MAX_EVENT_BUFFER  # about 7 MB when full (measured)
    binary_output_status: int = 1000
    analog_output_status: int = 1000


@dataclass(frozen=True)
class Dnp3Settings:
    host: str = "127.0.0.1"
    port: int = 20000
    outstation_address: int = 10
    master_address: int = 1
    unsolicited: bool = False
    select_timeout_s: float = 10.0
    event_buffer: EventBuffers = EventBuffers()
    rated_power_w: float | None = None
    tls: TlsFiles | None = None
    admission: Admission = DEFAULT_ADMISSION


# --- The format: keys and what they hold (`socgw config schema` is made from these tables) -----------

EVENT_BUFFER_FIELDS = table(
    {
        event.name: whole(f"{event.name} events kept (0: no events).", 0, MAX_EVENT_BUFFER, unit="events")
        for event in fields(EventBuffers)
    }
)
FIELDS = table(
    {
        "enabled": flag("false keeps the section but serves nothing."),
        "host": text("IP address to listen on.", rule="an IP address"),
        "port": whole("TCP port.", 1, 65535),
        "outstation_address": whole("This outstation's link address.", 0, MAX_LINK_ADDRESS),
        "master_address": whole(
            "The master's link address; no other master is answered.", 0, MAX_LINK_ADDRESS
        ),
        "map": text("A map name (mappings/dnp3/<name>.yaml) or a file path, relative to this file."),
        "unsolicited": flag("Allow unsolicited responses (the master must still enable them)."),
        "select_timeout_s": number(
            "Select-before-operate: an OPERATE later than this after its SELECT gets TIMEOUT.",
            0.1,
            600,
            unit="s",
        ),
        "event_buffer": section("Events kept per type while no master collects them.", EVENT_BUFFER_FIELDS),
        "rated_power_w": number(
            "100 % for the AN2018 power target; default: learned from the packs' limits.", above=0, unit="W"
        ),
        "tls": TLS_SECTION,
        **admission_fields(
            "Nothing from the master for this long (it answers the outstation's link keep-alive every "
            "60 s) closes the session (0: never).",
            max_sessions=1,
        ),
    }
)


def parse_settings(site: SiteConfig) -> tuple[Dnp3Settings, Dnp3Map] | None:
    """The `northbound.dnp3` section and its map, or None when absent or `enabled: false`.
    Raises ConfigError listing every problem with file:line:column."""
    checker = Checker()
    raw = open_section(site, SECTION, FIELDS, checker)
    if raw is None or not checker.value(raw, "enabled", FIELDS["enabled"], True):
        return None
    directory = config_dir(site)
    host = listen_host(checker, raw, FIELDS["host"], "127.0.0.1")
    outstation = checker.value(raw, "outstation_address", FIELDS["outstation_address"], 10)
    master = checker.value(raw, "master_address", FIELDS["master_address"], 1)
    if outstation == master:
        checker.problem(
            raw.value_mark("master_address"), "the master and outstation link addresses must differ"
        )
    buffers = checker.section(raw, "event_buffer", EVENT_BUFFER_FIELDS)
    defaults = EventBuffers()
    settings = Dnp3Settings(
        host=host,
        port=checker.value(raw, "port", FIELDS["port"], 20000),
        outstation_address=outstation,
        master_address=master,
        unsolicited=checker.value(raw, "unsolicited", FIELDS["unsolicited"], False),
        select_timeout_s=float(checker.value(raw, "select_timeout_s", FIELDS["select_timeout_s"], 10.0)),
        event_buffer=EventBuffers(
            **{
                key: checker.value(buffers, key, field, getattr(defaults, key))
                for key, field in EVENT_BUFFER_FIELDS.items()
            }
        ),
        rated_power_w=checker.value(raw, "rated_power_w", FIELDS["rated_power_w"]),
        tls=parse_tls(checker, raw, directory, datetime.now(UTC)),
        admission=parse_admission(checker, raw, FIELDS, DEFAULT_ADMISSION),
    )
    dnp3_map = _load_map(checker, raw, directory, len(site.served_packs))
    if checker.problems or dnp3_map is None:
        raise ConfigError(checker.problems)
    return settings, dnp3_map


def _load_map(checker: Checker, raw: MarkedMap, config_dir: Path, nodes: int) -> Dnp3Map | None:
    reference = checker.value(raw, "map", FIELDS["map"], DEFAULT_MAP)
    mark = raw.value_mark("map")
    try:
        dnp3_map = load_dnp3_map(find_map(reference, config_dir))
    except FileNotFoundError as error:
        checker.problem(mark, str(error))
        return None
    except MappingError as error:
        checker.problems.extend(error.problems)
        return None
    problem = dnp3_map.room_problem(nodes)
    if problem is not None:
        checker.problem(mark, problem)
        return None
    return dnp3_map
