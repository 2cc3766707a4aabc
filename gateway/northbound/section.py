"""What every protocol's settings loader does first: open its `northbound.<name>` section of the site
config, read the address it listens on and who may connect (`allow:` CIDRs, the front door's limits).
One place, so the protocols say it the same way."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Checker, Mark, MarkedList, MarkedMap
from gateway.diagnostics.fields import Field, describe, list_of, number, table, text, whole
from gateway.northbound.adapter import Listener
from gateway.northbound.tls import TlsFiles

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOCALHOST: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

ALLOW_FIELD = list_of(
    "Who may connect: IP networks in CIDR form (e.g. 10.1.2.0/24, 10.1.2.7/32); default: this machine only.",
    text("", rule="an IP network in CIDR form, e.g. 10.1.2.0/24"),
)


@dataclass(frozen=True)
class Admission:
    """What the front door of a listening protocol lets in (README, "Security: who may connect")."""

    allow: tuple[Network, ...] = LOCALHOST
    first_frame_s: float = 5.0  # a connection without a valid first frame by then is closed
    idle_s: float = 0.0  # no byte from the peer for this long closes the session (0: never)
    max_sessions: int = 1
    connects_per_min: int = 120  # per source address

    def allows(self, address: str) -> bool:
        peer = ipaddress.ip_address(address)
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.allow)


class Listening(Protocol):
    """What a listening protocol's settings hold (DNP3's, IEC 61850's)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def admission(self) -> Admission: ...
    @property
    def tls(self) -> TlsFiles | None: ...


Settings = TypeVar("Settings", bound=Listening)


@dataclass(frozen=True)
class DoorPlan:
    """A listening section as its front door sees it: the public address, who may enter, TLS."""

    section: str
    listener: Listener
    admission: Admission
    tls: TlsFiles | None

    @classmethod
    def of(cls, section: str, settings: Listening) -> DoorPlan:
        return cls(section, Listener(settings.host, settings.port), settings.admission, settings.tls)


def behind_door(settings: Settings, private: Listener | None) -> Settings:
    """The settings a stack serves with: as configured, or plain TCP on the front door's `private`
    address (the door terminates TLS)."""
    if private is None:
        return settings
    replaced: Settings = dataclasses.replace(  # type: ignore[type-var]
        settings, host=private.host, port=private.port, tls=None
    )
    return replaced


def admission_fields(idle: str, max_sessions: int) -> Mapping[str, Field]:
    """The front door's keys of a protocol section; `idle` says what the protocol's keep-alive is."""
    fields = {
        "allow": ALLOW_FIELD,
        "first_frame_s": number(
            "A connection that sends no valid first frame of the protocol within this is closed.",
            0.1,
            60,
            unit="s",
        ),
        "idle_s": number(idle, 0, 86400, unit="s"),
        "connects_per_min": whole("Connections taken per minute from one source address.", 1, 100000),
    }
    if max_sessions > 1:
        fields["max_sessions"] = whole("Sessions served at once.", 1, max_sessions)
    return table(fields)


def parse_allow(checker: Checker, section: MarkedMap) -> tuple[Network, ...]:
    """The `allow:` networks of a section (default: localhost); every bad entry reported at its line."""
    if "allow" not in section:
        return LOCALHOST
    raw = section["allow"]
    if not isinstance(raw, MarkedList):
        checker.problem(
            section.value_mark("allow"),
            f"`allow` must be a list of IP networks (e.g. [10.1.2.0/24]), not {describe(raw)}",
        )
        return LOCALHOST
    networks: list[Network] = []
    for index, entry in enumerate(raw):
        network = _network(entry)
        if isinstance(network, str):
            checker.problem(
                raw.item_mark(index),
                f"`allow` entry {entry!r} is not an IP network in CIDR form{network}: write e.g. "
                "10.1.2.0/24, or 10.1.2.7/32 for one host",
            )
        else:
            networks.append(network)
    if not raw:
        checker.problem(
            section.value_mark("allow"), "`allow` is empty, so nobody could connect: list networks"
        )
    return tuple(networks)


def _network(entry: object) -> Network | str:
    """The network `entry` names, or a hint why it names none."""
    if not isinstance(entry, str):
        return ""
    try:
        return ipaddress.ip_network(entry, strict=True)
    except ValueError as error:
        return " (host bits are set: write the network's own address)" if "host bits" in str(error) else ""


def parse_admission(
    checker: Checker, section: MarkedMap, fields: Mapping[str, Field], default: Admission
) -> Admission:
    """The front door's settings of a section, read with `fields` (from `admission_fields`)."""

    def value(key: str, fallback: float) -> float:
        return float(checker.value(section, key, fields[key], fallback)) if key in fields else fallback

    return Admission(
        allow=parse_allow(checker, section),
        first_frame_s=value("first_frame_s", default.first_frame_s),
        idle_s=value("idle_s", default.idle_s),
        max_sessions=int(value("max_sessions", default.max_sessions)),
        connects_per_min=int(value("connects_per_min", default.connects_per_min)),
    )


def open_section(
    site: SiteConfig, name: str, fields: Mapping[str, Field], checker: Checker
) -> MarkedMap | None:
    """`northbound.<name>` (empty when written without a value) with its unknown keys reported; None
    when the site has no such section. Raises ConfigError when it is not a mapping."""
    northbound = site.northbound
    if name not in northbound:
        return None
    mark = northbound.value_mark(name) if isinstance(northbound, MarkedMap) else Mark(str(site.path), 1, 1)
    raw = northbound[name]
    section = MarkedMap(mark) if raw is None else checker.mapping(raw, mark, f"`northbound.{name}`")
    if section is None:
        raise ConfigError(checker.problems)
    checker.known_keys(section, fields, f"`northbound.{name}`")
    return section


def listen_host(checker: Checker, section: MarkedMap, field: Field, default: str) -> str:
    """The IP address an adapter listens on; a name or garbage is reported and the default used."""
    host: str = checker.value(section, "host", field, default)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        checker.problem(
            section.value_mark("host"), f"`host` must be an IP address to listen on, not {host!r}"
        )
        return default
    return host


def config_dir(site: SiteConfig) -> Path:
    """The site config's directory: relative paths in a section (TLS files, maps) start there."""
    return Path(site.path).resolve().parent if site.path else Path.cwd()
