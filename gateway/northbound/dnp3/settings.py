"""The `northbound.dnp3` section of the site config, checked; no stack is loaded here.

Config (`northbound: dnp3:` in the site config; every key optional):

    host: 127.0.0.1            # address to listen on
    port: 20000
    outstation_address: 10     # link addresses; only the configured master is answered
    master_address: 1
    map: default               # a name (mappings/dnp3/<name>.yaml) or a file path
    unsolicited: false         # allow unsolicited responses (the master must still enable them)
    event_buffer: {binary: 10000, analog: 65535, binary_output_status: 1000, analog_output_status: 1000}
    rated_power_w: 120000      # 100 % for AO93; default: learned from the packs' discharge limits
    tls: {ca: ca.pem, cert: outstation.pem, key: outstation.key}   # mutual TLS (paths: config dir)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import ConfigError, SiteConfig
from gateway.mapping.dnp3 import DEFAULT_MAP, Dnp3Map, MappingError, find_map, load_dnp3_map
from gateway.northbound.tls import TlsFileError, check_tls_files
from gateway.profiles.loader import Problem
from gateway.profiles.model import SourceMark
from gateway.yamlsource import Mark, MarkedMap

SECTION = "dnp3"

SETTINGS_KEYS = (
    "enabled",
    "host",
    "port",
    "outstation_address",
    "master_address",
    "map",
    "unsolicited",
    "event_buffer",
    "rated_power_w",
    "tls",
)
TLS_KEYS = ("ca", "cert", "key")
MAX_LINK_ADDRESS = 0xFFEF  # 0xFFF0-0xFFFF are reserved (broadcast, self-address)
MAX_EVENT_BUFFER = 65535  # the stack counts events per type in 16 bits
BINARY_STATE = 0x80  # the state bit of a binary's flag octet


@dataclass(frozen=True)
class EventBuffers:
    """Events the outstation keeps per type while no master collects them (see docs/dnp3.md)."""

    binary: int = 10000
    analog: int = MAX_EVENT_BUFFER  # about 7 MB when full (measured)
    binary_output_status: int = 1000
    analog_output_status: int = 1000


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Dnp3Settings:
    host: str = "127.0.0.1"
    port: int = 20000
    outstation_address: int = 10
    master_address: int = 1
    unsolicited: bool = False
    event_buffer: EventBuffers = EventBuffers()
    rated_power_w: float | None = None
    tls: TlsFiles | None = None


# --- Config ------------------------------------------------------------------------------------------


class _Section:
    """Reads the `northbound.dnp3` mapping, collecting problems with their marks."""

    def __init__(self, section: MarkedMap) -> None:
        self.section = section
        self.problems: list[Problem] = []

    def problem(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(SourceMark(mark.file, mark.line, mark.column), message))

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(
                self.section.value_mark(key),
                f"northbound.dnp3 `{key}` must be a whole number {low}..{high}, not {value!r}",
            )
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.section.get(key, default)
        if not isinstance(value, bool):
            self.problem(self.section.value_mark(key), f"northbound.dnp3 `{key}` must be true or false")
            return default
        return value


def parse_settings(site: SiteConfig) -> tuple[Dnp3Settings, Dnp3Map] | None:
    """The `northbound.dnp3` section and its map, or None when absent or `enabled: false`.
    Raises ConfigError listing every problem with file:line:column."""
    northbound = site.northbound
    if SECTION not in northbound:
        return None
    raw = northbound[SECTION]
    mark = northbound.value_mark(SECTION) if isinstance(northbound, MarkedMap) else Mark(site.path, 1, 1)
    if raw is None:
        raw = MarkedMap(mark)
    if not isinstance(raw, MarkedMap):
        raise ConfigError(
            [Problem(SourceMark(mark.file, mark.line, mark.column), "`dnp3` must be a mapping")]
        )
    reader = _Section(raw)
    for key in raw:
        if key not in SETTINGS_KEYS:
            reader.problem(
                raw.key_mark(key),
                f"unknown key `{key}` in northbound.dnp3: allowed {', '.join(SETTINGS_KEYS)}",
            )
    if not reader.boolean("enabled", True):
        return None
    config_dir = Path(site.path).resolve().parent if site.path else Path.cwd()
    host = raw.get("host", "127.0.0.1")
    try:
        ipaddress.ip_address(host if isinstance(host, str) else "")
    except ValueError:
        reader.problem(raw.value_mark("host"), f"northbound.dnp3 `host` must be an IP address, not {host!r}")
        host = "127.0.0.1"
    outstation = reader.integer("outstation_address", 10, 0, MAX_LINK_ADDRESS)
    master = reader.integer("master_address", 1, 0, MAX_LINK_ADDRESS)
    if outstation == master:
        reader.problem(
            raw.value_mark("master_address"), "the master and outstation link addresses must differ"
        )
    settings = Dnp3Settings(
        host=str(host),
        port=reader.integer("port", 20000, 1, 65535),
        outstation_address=outstation,
        master_address=master,
        unsolicited=reader.boolean("unsolicited", False),
        event_buffer=_event_buffers(reader),
        rated_power_w=_rated_power(reader),
        tls=_tls_files(reader, config_dir),
    )
    dnp3_map = _load_map(reader, config_dir, len(site.nodes))
    if reader.problems or dnp3_map is None:
        raise ConfigError(reader.problems)
    return settings, dnp3_map


def _event_buffers(reader: _Section) -> EventBuffers:
    raw = reader.section.get("event_buffer")
    if raw is None:
        return EventBuffers()
    if not isinstance(raw, MarkedMap):
        reader.problem(
            reader.section.value_mark("event_buffer"), "`event_buffer` must map event types to sizes"
        )
        return EventBuffers()
    names = [field.name for field in dataclasses.fields(EventBuffers)]
    sizes: dict[str, int] = {}
    for key in raw:
        if key not in names:
            reader.problem(raw.key_mark(key), f"unknown event type `{key}`: use {', '.join(names)}")
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EVENT_BUFFER:
            reader.problem(
                raw.value_mark(key),
                f"event_buffer `{key}` must be 0..{MAX_EVENT_BUFFER} events (0: no events), not {value!r}",
            )
            continue
        sizes[key] = value
    return EventBuffers(**sizes)


def _rated_power(reader: _Section) -> float | None:
    value = reader.section.get("rated_power_w")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        reader.problem(
            reader.section.value_mark("rated_power_w"), f"`rated_power_w` must be > 0 W, not {value!r}"
        )
        return None
    return float(value)


def _tls_files(reader: _Section, config_dir: Path) -> TlsFiles | None:
    raw = reader.section.get("tls")
    if raw is None:
        return None
    mark = reader.section.value_mark("tls")
    if not isinstance(raw, MarkedMap):
        reader.problem(mark, "`tls` must be a mapping with ca, cert and key")
        return None
    paths: dict[str, Path] = {}
    for key in raw:
        if key not in TLS_KEYS:
            reader.problem(raw.key_mark(key), f"unknown key `{key}` in tls: use ca, cert, key")
    for key in TLS_KEYS:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            reader.problem(raw.value_mark(key) if key in raw else mark, f"tls needs `{key}`: a PEM file path")
            continue
        path = Path(value)
        paths[key] = path if path.is_absolute() else config_dir / path
    if len(paths) != len(TLS_KEYS):
        return None
    files = TlsFiles(paths["ca"], paths["cert"], paths["key"])
    try:
        check_tls_files(files.ca, files.cert, files.key, datetime.now(UTC))
    except TlsFileError as error:
        reader.problem(mark, str(error))
        return None
    return files


def _load_map(reader: _Section, config_dir: Path, nodes: int) -> Dnp3Map | None:
    reference = reader.section.get("map", DEFAULT_MAP)
    mark = reader.section.value_mark("map")
    if not isinstance(reference, str) or not reference:
        reader.problem(mark, "`map` must be a map name (mappings/dnp3/<name>.yaml) or a file path")
        return None
    try:
        dnp3_map = load_dnp3_map(find_map(reference, config_dir))
    except FileNotFoundError as error:
        reader.problem(mark, str(error))
        return None
    except MappingError as error:
        reader.problems.extend(error.problems)
        return None
    problem = dnp3_map.room_problem(nodes)
    if problem is not None:
        reader.problem(mark, problem)
        return None
    return dnp3_map
