"""The site config (`gateway.yaml`): nodes, balancer tuning, the site request, logging, northbound.

Loaded from YAML with source marks, checked as a whole (every problem is reported, not just the first),
and turned into frozen objects. Profiles referenced by nodes are resolved here too, so a typo in a
profile key fails `socgw validate` rather than the first poll.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.balancer import BalancerParams, ChargeSource
from gateway.profiles.loader import Problem, ProblemsError, ProfileError, ProfileLibrary, default_profile_dirs
from gateway.profiles.model import Profile, SourceMark
from gateway.status import default_status_socket
from gateway.yamlsource import Mark, MarkedList, MarkedMap, YamlError, load_yaml_file

NODE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ProblemsError):
    """The site config is not usable; `problems` lists every problem, each with file:line:column."""


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    host: str
    port: int
    unit: int
    profile: Profile
    capacity_wh: float | None = None  # overrides the device's capacity point (or stands in for it)
    charge_limit_w: float | None = None  # site cap on top of what the device reports
    discharge_limit_w: float | None = None
    maintenance: bool = False  # starts in maintenance: monitored, never dispatched
    timeout_ms: float | None = None  # overrides the profile's comms timeout
    mark: SourceMark = field(default=SourceMark("<built-in>", 0, 0), compare=False)


@dataclass(frozen=True)
class CommandConfig:
    """Where the site request comes from when no SCADA master commands it."""

    default_request_w: float = 0.0
    charge_source: ChargeSource = ChargeSource.PV
    # A commanded request not refreshed within this time reverts to the default ("API timeout" pattern).
    timeout_s: float = 60.0
    safe_setpoint_w: float = 0.0  # written to every node on shutdown


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    balancing_log: Path | None = None
    balancing_log_max_bytes: int = 10_000_000
    balancing_log_backups: int = 5


@dataclass(frozen=True)
class SiteConfig:
    name: str
    cycle_ms: float
    nodes: tuple[NodeConfig, ...]
    balancer: BalancerParams
    command: CommandConfig
    logging: LoggingConfig
    status_socket: Path
    northbound: Mapping[str, Any]  # sections owned by the northbound adapters, checked by them
    path: str = ""


TOP_LEVEL_KEYS = ("site", "nodes", "balancer", "command", "logging", "status", "northbound")
SITE_KEYS = ("name", "cycle_ms", "profile_dirs")
NODE_KEYS = (
    "id",
    "host",
    "port",
    "unit",
    "profile",
    "capacity_wh",
    "charge_limit_w",
    "discharge_limit_w",
    "maintenance",
    "timeout_ms",
)
COMMAND_KEYS = ("default_request_w", "charge_source", "timeout_s", "safe_setpoint_w")
LOGGING_KEYS = ("level", "balancing_log", "balancing_log_max_bytes", "balancing_log_backups")
BALANCER_KEYS = tuple(f.name for f in dataclasses.fields(BalancerParams))


class _Checker:
    """Collects problems while reading marked YAML."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(SourceMark(mark.file, mark.line, mark.column), message))

    def section(self, parent: MarkedMap, key: str, allowed: Sequence[str]) -> MarkedMap:
        value = parent.get(key)
        if value is None:
            return MarkedMap(parent.key_mark(key))
        if not isinstance(value, MarkedMap):
            self.problem(parent.value_mark(key), f"`{key}` must be a mapping of settings")
            return MarkedMap(parent.value_mark(key))
        self.unknown_keys(value, allowed, key)
        return value

    def unknown_keys(self, mapping: MarkedMap, allowed: Sequence[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed keys: {', '.join(allowed)}"
                self.problem(mapping.key_mark(key), f"unknown key `{key}` in `{where}`: {hint}")

    def number(
        self,
        mapping: MarkedMap,
        key: str,
        default: float | None,
        valid: Callable[[float], bool],
        rule: str,
        *,
        integer: bool = False,
    ) -> float | None:
        if key not in mapping or mapping[key] is None:
            return default
        value = mapping[key]
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not valid(float(value)):
            what = "an integer" if integer else "a number"
            self.problem(mapping.value_mark(key), f"`{key}` must be {what} with {rule}, not {value!r}")
            return default
        return float(value)


def _load_nodes(checker: _Checker, root: MarkedMap, library: ProfileLibrary) -> tuple[NodeConfig, ...]:
    raw_nodes = root.get("nodes")
    if not isinstance(raw_nodes, MarkedList):
        checker.problem(
            root.value_mark("nodes") if "nodes" in root else root.mark,
            "`nodes` must be a list of nodes (id, host, port, unit, profile), `[]` while commissioning; "
            "`socgw discover CIDR` prints a ready-to-paste section",
        )
        return ()
    nodes: list[NodeConfig] = []
    seen_ids: dict[str, Mark] = {}
    seen_endpoints: dict[tuple[str, int, int], str] = {}
    for index, raw in enumerate(raw_nodes):
        item_mark = raw_nodes.item_mark(index)
        if not isinstance(raw, MarkedMap):
            checker.problem(item_mark, "each node must be a mapping with id, host, port, unit and profile")
            continue
        checker.unknown_keys(raw, NODE_KEYS, "nodes")
        node_id = raw.get("id")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            checker.problem(
                raw.value_mark("id") if "id" in raw else item_mark,
                f"node `id` must be 1-32 letters, digits, '-' or '_' starting with a letter, not {node_id!r}",
            )
            continue
        if node_id in seen_ids:
            checker.problem(
                raw.value_mark("id"),
                f"node id `{node_id}` is used twice (first at line {seen_ids[node_id].line}): rename one",
            )
            continue
        seen_ids[node_id] = raw.value_mark("id")
        host = raw.get("host")
        if not isinstance(host, str) or not host:
            checker.problem(
                raw.value_mark("host") if "host" in raw else item_mark,
                f"node `{node_id}` needs `host` (an IP address or host name)",
            )
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9.-]+$", host):
                checker.problem(
                    raw.value_mark("host"), f"node `{node_id}`: `{host}` is not a host name or IP"
                )
        port = checker.number(raw, "port", 502, lambda v: 1 <= v <= 65535, "1 <= port <= 65535", integer=True)
        unit = checker.number(raw, "unit", 1, lambda v: 0 <= v <= 255, "0 <= unit <= 255", integer=True)
        profile_key = raw.get("profile")
        if not isinstance(profile_key, str):
            checker.problem(
                raw.value_mark("profile") if "profile" in raw else item_mark,
                f"node `{node_id}` needs `profile: vendor/model`; known: {', '.join(library.keys())}",
            )
            continue
        try:
            profile = library.get(profile_key)
        except ProfileError as error:
            for problem in error.problems:
                where = raw.value_mark("profile")
                if problem.mark.line:  # a problem inside the profile file itself: keep its own place
                    checker.problems.append(problem)
                else:
                    checker.problem(where, f"node `{node_id}`: {problem.message}")
            continue
        positive = "a value > 0"
        endpoint = (host, int(port or 502), int(unit or 1))
        if endpoint in seen_endpoints:
            checker.problem(
                item_mark,
                f"node `{node_id}` has the same host, port and unit as `{seen_endpoints[endpoint]}`: "
                "two nodes would poll one device",
            )
        seen_endpoints[endpoint] = node_id
        maintenance = raw.get("maintenance", False)
        if not isinstance(maintenance, bool):
            checker.problem(raw.value_mark("maintenance"), "`maintenance` must be true or false")
            maintenance = False
        nodes.append(
            NodeConfig(
                node_id=node_id,
                host=host,
                port=endpoint[1],
                unit=endpoint[2],
                profile=profile,
                capacity_wh=checker.number(raw, "capacity_wh", None, lambda v: 0 < v < math.inf, positive),
                charge_limit_w=checker.number(
                    raw, "charge_limit_w", None, lambda v: 0 <= v < math.inf, ">= 0"
                ),
                discharge_limit_w=checker.number(
                    raw, "discharge_limit_w", None, lambda v: 0 <= v < math.inf, ">= 0"
                ),
                maintenance=maintenance,
                timeout_ms=checker.number(raw, "timeout_ms", None, lambda v: 5 <= v <= 10_000, "5..10000 ms"),
                mark=SourceMark(item_mark.file, item_mark.line, item_mark.column),
            )
        )
    return tuple(nodes)


def _load_balancer(checker: _Checker, root: MarkedMap) -> BalancerParams:
    section = checker.section(root, "balancer", BALANCER_KEYS)
    values: dict[str, Any] = {}
    for key in section:
        if key not in BALANCER_KEYS:
            continue
        value = section[key]
        if value is None and key == "default_capacity_wh":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            checker.problem(section.value_mark(key), f"balancer `{key}` must be a number, not {value!r}")
            continue
        values[key] = float(value)
    try:
        return BalancerParams(**values)
    except ValueError as error:
        checker.problem(section.mark, str(error))
        return BalancerParams()


def _load_command(checker: _Checker, root: MarkedMap) -> CommandConfig:
    section = checker.section(root, "command", COMMAND_KEYS)
    source = section.get("charge_source", "pv")
    if source not in tuple(ChargeSource):
        checker.problem(
            section.value_mark("charge_source"),
            f"`charge_source` must be `pv` (all packs charge) or `ac` (fill packs below reserve first), "
            f"not {source!r}",
        )
        source = "pv"
    finite = "a finite value"
    return CommandConfig(
        default_request_w=checker.number(section, "default_request_w", 0.0, math.isfinite, finite) or 0.0,
        charge_source=ChargeSource(source),
        timeout_s=checker.number(section, "timeout_s", 60.0, lambda v: 0 < v < math.inf, "a value > 0")
        or 60.0,
        safe_setpoint_w=checker.number(section, "safe_setpoint_w", 0.0, math.isfinite, finite) or 0.0,
    )


def _load_logging(checker: _Checker, root: MarkedMap, config_dir: Path) -> LoggingConfig:
    section = checker.section(root, "logging", LOGGING_KEYS)
    level = section.get("level", "info")
    if level not in LOG_LEVELS:
        checker.problem(section.value_mark("level"), f"`level` must be one of {', '.join(LOG_LEVELS)}")
        level = "info"
    log_path = section.get("balancing_log")
    balancing_log: Path | None = None
    if isinstance(log_path, str) and log_path:
        balancing_log = Path(log_path) if Path(log_path).is_absolute() else config_dir / log_path
    elif log_path is not None:
        checker.problem(section.value_mark("balancing_log"), "`balancing_log` must be a file path or null")
    max_bytes = checker.number(
        section, "balancing_log_max_bytes", 10_000_000, lambda v: v >= 10_000, ">= 10000", integer=True
    )
    backups = checker.number(
        section, "balancing_log_backups", 5, lambda v: 0 <= v <= 100, "0..100", integer=True
    )
    return LoggingConfig(
        level=str(level),
        balancing_log=balancing_log,
        balancing_log_max_bytes=int(max_bytes or 10_000_000),
        balancing_log_backups=int(backups if backups is not None else 5),
    )


def load_config(path: str | Path, profile_dirs: Sequence[Path] | None = None) -> SiteConfig:
    """Load and check a site config; raise `ConfigError` listing every problem with file:line:column."""
    file = str(path)
    checker = _Checker()
    try:
        root = load_yaml_file(path)
    except YamlError as error:
        checker.problem(error.mark, error.problem)
        raise ConfigError(checker.problems) from None
    if not isinstance(root, MarkedMap):
        checker.problem(Mark(file, 1, 1), "the site config must be a mapping (site, nodes, balancer, ...)")
        raise ConfigError(checker.problems)
    checker.unknown_keys(root, TOP_LEVEL_KEYS, "the site config")
    site = checker.section(root, "site", SITE_KEYS)
    name = site.get("name", "site")
    if not isinstance(name, str) or not name:
        checker.problem(site.value_mark("name"), "`site.name` must be a non-empty text")
        name = "site"
    cycle_ms = checker.number(site, "cycle_ms", 100.0, lambda v: 10 <= v <= 10_000, "10..10000 ms") or 100.0
    config_dir = Path(path).resolve().parent
    extra_dirs = site.get("profile_dirs", [])
    if not isinstance(extra_dirs, list) or not all(isinstance(d, str) for d in extra_dirs):
        checker.problem(site.value_mark("profile_dirs"), "`profile_dirs` must be a list of directories")
        extra_dirs = []
    dirs = [config_dir / d for d in extra_dirs] + list(profile_dirs or default_profile_dirs())
    library = ProfileLibrary(dirs)
    nodes = _load_nodes(checker, root, library)
    balancer = _load_balancer(checker, root)
    command = _load_command(checker, root)
    logging_config = _load_logging(checker, root, config_dir)
    status = checker.section(root, "status", ("socket",))
    socket_path = status.get("socket")
    status_socket = Path(socket_path) if isinstance(socket_path, str) else default_status_socket()
    northbound = root.get("northbound") or MarkedMap(root.mark)
    if not isinstance(northbound, MarkedMap):
        checker.problem(root.value_mark("northbound"), "`northbound` must be a mapping (dnp3, iec61850)")
        northbound = MarkedMap(root.mark)
    if checker.problems:
        raise ConfigError(checker.problems)
    return SiteConfig(
        name=name,
        cycle_ms=cycle_ms,
        nodes=nodes,
        balancer=balancer,
        command=command,
        logging=logging_config,
        status_socket=status_socket,
        northbound=northbound,
        path=file,
    )
