"""The site config (`gateway.yaml`): nodes, balancer tuning, the site request, logging, northbound.

Loaded from YAML with source marks, checked as a whole (every problem is reported, not just the first),
and turned into frozen objects. Profiles referenced by nodes are resolved here too, so a typo in a
profile key fails `socgw validate` rather than the first poll.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.balancer import BalancerParams, ChargeSource
from gateway.diagnostics import (
    NO_MARK,
    Checker,
    Mark,
    MarkedList,
    MarkedMap,
    ProblemsError,
    YamlError,
    load_yaml_file,
)
from gateway.diagnostics.fields import (
    Field,
    anything,
    choice,
    flag,
    list_of,
    mapping_of,
    number,
    section,
    table,
    text,
    whole,
)
from gateway.paths import default_status_socket
from gateway.profiles.loader import ProfileError, ProfileLibrary, default_profile_dirs
from gateway.profiles.model import Profile

NODE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
NODE_ID_RULE = "1-32 letters, digits, '-' or '_' starting with a letter"
TRANSPORTS = ("tcp", "rtu-over-tcp", "serial")
PARITIES = ("N", "E", "O")
LOG_LEVELS = ("debug", "info", "warning", "error")
# standalone: one controller for the whole site; worker: balances its own packs (a cluster) and takes its
# share from a head over Sparkplug B; head: balances the workers' clusters (docs/hierarchy.md).
ROLES = ("standalone", "worker", "head")
# Sparkplug ids may not hold the MQTT topic characters / + # (specification 4.1.1); keep them plain.
SPARKPLUG_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
ID_RULE = "letters, digits and _ . : - (no / + # or spaces)"


class ConfigError(ProblemsError):
    """The site config is not usable; `problems` lists every problem, each with file:line:column."""


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    host: str  # IP address or host name; for `transport: serial` the serial device path
    port: int
    unit: int
    profile: Profile
    transport: str = "tcp"  # one of TRANSPORTS
    baud: int = 9600  # serial and rtu-over-tcp: the RS-485 line's baud rate, parity and stop bits
    parity: str = "N"
    stop_bits: int = 1
    capacity_wh: float | None = None  # overrides the device's capacity point (or stands in for it)
    charge_limit_w: float | None = None  # site cap on top of what the device reports
    discharge_limit_w: float | None = None
    maintenance: bool = False  # starts in maintenance: monitored, never dispatched
    timeout_ms: float | None = None  # overrides the profile's comms timeout
    mark: Mark = field(default=NO_MARK, compare=False)


@dataclass(frozen=True)
class ClusterConfig:
    """One of a head's workers (`hierarchy.workers`): its edge node id, one cluster of the head's dispatch,
    and the packs it owns, which the head serves upstream from its DDATA in this order."""

    worker_id: str
    packs: tuple[str, ...] = ()
    pack_marks: tuple[Mark, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ServedPack:
    """A pack the northbound protocols serve, one device or block of points each: one of this gateway's
    nodes, or on a head one of its workers' packs."""

    node_id: str
    origin: str  # the node's profile key, or `worker <id>` on a head
    vendor: str = ""  # "" on a head: the worker's profile is not known upstream
    model: str = ""
    mark: Mark = field(default=NO_MARK, compare=False)


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
    role: str = "standalone"  # one of ROLES
    hierarchy: Mapping[str, Any] = field(
        default_factory=dict
    )  # a head's section, checked by gateway.hierarchy
    pollers: int = 1  # polling processes the nodes are split over (1: the sessions run in the core)
    clusters: tuple[ClusterConfig, ...] = ()  # a head's workers, from `hierarchy.workers`

    @property
    def served_packs(self) -> tuple[ServedPack, ...]:
        """What DNP3, IEC 61850, MQTT and the web view serve per pack: this gateway's nodes, or on a head
        every pack its `hierarchy.workers` list (the workers' DDATA), worker by worker."""
        if self.role == "head":
            return tuple(
                ServedPack(pack, f"worker {cluster.worker_id}", mark=mark)
                for cluster in self.clusters
                for pack, mark in zip(cluster.packs, cluster.pack_marks, strict=True)
            )
        return tuple(
            ServedPack(node.node_id, node.profile.key, node.profile.vendor, node.profile.model, node.mark)
            for node in self.nodes
        )


# --- The format: keys and what they hold (`socgw config schema` is made from these tables) -----------

SITE_FIELDS = table(
    {
        "name": text("Name of the site, for logs and SCADA."),
        "cycle_ms": number(
            "The control cycle: poll, balance, write, publish.", 10, 10_000, unit="ms", nullable=True
        ),
        "profile_dirs": list_of("Extra profile folders, relative to this file; searched first.", text("")),
        "role": choice(
            "standalone (default): balances its own nodes; worker: balances its cluster and takes its "
            "share from a head (needs northbound.mqtt); head: balances the workers' clusters (needs "
            "`hierarchy`, no nodes).",
            ROLES,
        ),
        "pollers": whole(
            "Polling processes the nodes are split over, one balancer for the whole site (default 1: "
            "the core polls them itself); the nodes of one RS-485 line stay in one process.",
            1,
            nullable=True,
        ),
    }
)
NODE_FIELDS = table(
    {
        "id": text(
            f"Node id: {NODE_ID_RULE}.",
            pattern=NODE_ID,
            rule=NODE_ID_RULE,
        ),
        "host": text("IP address or host name of the Modbus TCP device or RTU-over-TCP converter."),
        "port": whole("TCP port (default 502).", 1, 65535, nullable=True),
        "transport": choice(
            "tcp (default): Modbus TCP; rtu-over-tcp: RTU frames tunnelled by a serial-to-Ethernet "
            "converter at host:port; serial: Modbus RTU on the serial port `device`.",
            TRANSPORTS,
        ),
        "device": text(
            "transport serial: the serial port, by a stable name (/dev/serial/by-id/...).", nullable=True
        ),
        "baud": whole(
            "serial and rtu-over-tcp: the RS-485 line's baud rate (default 9600); every node on one line "
            "must agree.",
            300,
            1_000_000,
            nullable=True,
        ),
        "parity": choice("serial and rtu-over-tcp: N (default), E or O.", PARITIES),
        "stop_bits": whole("serial and rtu-over-tcp: 1 (default) or 2.", 1, 2, nullable=True),
        "unit": whole("Modbus unit id the device answers to (default 1).", 0, 255, nullable=True),
        "profile": text("Vendor profile key vendor/model (`socgw profile validate` checks profiles)."),
        "capacity_wh": number(
            "Overrides (or stands in for) the device's capacity point.", above=0, nullable=True
        ),
        "charge_limit_w": number(
            "Site cap on the charge power, on top of what the device reports.", 0, nullable=True
        ),
        "discharge_limit_w": number("Site cap on the discharge power.", 0, nullable=True),
        "maintenance": flag("true: monitored, never dispatched (default false)."),
        "timeout_ms": number(
            "Per-request timeout; default from the profile.", 5, 10_000, unit="ms", nullable=True
        ),
    }
)
BALANCER_FIELDS = table(
    {
        # `.inf` is a valid ramp or default limit (no limit); BalancerParams checks the relations.
        f.name: number(
            f"Balancer tuning (see BalancerParams); default {f.default}.",
            finite=False,
            nullable=f.name == "default_capacity_wh",
        )
        for f in dataclasses.fields(BalancerParams)
    }
)
COMMAND_FIELDS = table(
    {
        "default_request_w": number(
            "Site request when no SCADA master commands one (+ = discharge).", nullable=True
        ),
        "charge_source": choice(
            "pv: every pack charges; ac: packs below reserve are filled first.",
            [source.value for source in ChargeSource],
            rule="`pv` (all packs charge) or `ac` (fill packs below reserve first)",
        ),
        "timeout_s": number(
            "A master's request not refreshed within this reverts to the default.", above=0, nullable=True
        ),
        "safe_setpoint_w": number("Written to every node when the gateway stops.", nullable=True),
    }
)
LOGGING_FIELDS = table(
    {
        "level": choice("Log level.", LOG_LEVELS),
        "balancing_log": text(
            "One JSON line per change of decision; relative to this file; null: off.",
            nullable=True,
            rule="a file path or null",
        ),
        "balancing_log_max_bytes": whole("Size at which the balancing log rotates.", 10_000, nullable=True),
        "balancing_log_backups": whole("Rotated balancing logs kept.", 0, 100, nullable=True),
    }
)
STATUS_FIELDS = table({"socket": text("Where `socgw status` reads the running gateway (local only).")})
CONFIG_FIELDS: Mapping[str, Field] = table(
    {
        "site": section("The site.", SITE_FIELDS),
        "nodes": list_of(
            "One entry per BMS/PCS; `[]` while commissioning.",
            section("A node.", NODE_FIELDS, required=("id", "profile")),
        ),
        "balancer": section("The SOC balancer's tuning.", BALANCER_FIELDS),
        "command": section(
            "Where the site request comes from when no SCADA master commands it.", COMMAND_FIELDS
        ),
        "logging": section("Logging and the balancing decisions log.", LOGGING_FIELDS),
        "status": section("The status socket.", STATUS_FIELDS),
        "northbound": mapping_of("Sections of the northbound adapters (dnp3, iec61850).", anything("")),
        "hierarchy": anything("A head's brokers, Sparkplug group, host id and workers (docs/hierarchy.md)."),
    }
)


def _load_nodes(checker: Checker, root: MarkedMap, library: ProfileLibrary) -> tuple[NodeConfig, ...]:
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
    seen_lines: dict[tuple[str, int], tuple[str, str, tuple[int, str, int]]] = {}
    for index, raw in enumerate(raw_nodes):
        item_mark = raw_nodes.item_mark(index)
        if not isinstance(raw, MarkedMap):
            checker.problem(item_mark, "each node must be a mapping with id, host, port, unit and profile")
            continue
        checker.known_keys(raw, NODE_FIELDS, "`nodes`")
        node_id = checker.value(raw, "id", NODE_FIELDS["id"], where="a node")
        if node_id is None:
            continue
        if node_id in seen_ids:
            checker.problem(
                raw.value_mark("id"),
                f"node id `{node_id}` is used twice (first at line {seen_ids[node_id].line}): rename one",
            )
            continue
        seen_ids[node_id] = raw.value_mark("id")
        transport = checker.value(raw, "transport", NODE_FIELDS["transport"], "tcp")
        host = _node_host(checker, raw, node_id, transport, item_mark)
        if host is None:
            continue
        port = checker.value(raw, "port", NODE_FIELDS["port"], 502)
        unit = checker.value(raw, "unit", NODE_FIELDS["unit"], 1)
        line = _node_line(checker, raw, node_id, transport)
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
                if problem.mark.line:  # a problem inside the profile file itself: keep its own place
                    checker.problems.append(problem)
                else:
                    checker.problem(raw.value_mark("profile"), f"node `{node_id}`: {problem.message}")
            continue
        endpoint = (host, 0 if transport == "serial" else port, unit)
        if endpoint in seen_endpoints:
            where = "device" if transport == "serial" else "host, port"
            checker.problem(
                item_mark,
                f"node `{node_id}` has the same {where} and unit as `{seen_endpoints[endpoint]}`: "
                "two nodes would poll one device",
            )
        seen_endpoints[endpoint] = node_id
        if transport != "tcp":
            first = seen_lines.setdefault(endpoint[:2], (node_id, transport, line))
            if first[1:] != (transport, line):
                checker.problem(
                    item_mark,
                    f"node `{node_id}` shares its line with `{first[0]}` but not its transport, baud rate, "
                    f"parity or stop bits ({first[1]} {first[2][0]} baud 8{first[2][1]}{first[2][2]}): one "
                    "RS-485 line has one setting",
                )
        nodes.append(
            NodeConfig(
                node_id=node_id,
                host=host,
                port=port,
                unit=unit,
                profile=profile,
                transport=transport,
                baud=line[0],
                parity=line[1],
                stop_bits=line[2],
                capacity_wh=checker.value(raw, "capacity_wh", NODE_FIELDS["capacity_wh"]),
                charge_limit_w=checker.value(raw, "charge_limit_w", NODE_FIELDS["charge_limit_w"]),
                discharge_limit_w=checker.value(raw, "discharge_limit_w", NODE_FIELDS["discharge_limit_w"]),
                maintenance=checker.value(raw, "maintenance", NODE_FIELDS["maintenance"], False),
                timeout_ms=checker.value(raw, "timeout_ms", NODE_FIELDS["timeout_ms"]),
                mark=item_mark,
            )
        )
    return tuple(nodes)


def _node_host(checker: Checker, raw: MarkedMap, node_id: str, transport: str, item_mark: Mark) -> str | None:
    """The node's host (an IP address or name), or its serial device path for `transport: serial`."""
    key, wanted = (
        ("device", "a serial device path")
        if transport == "serial"
        else ("host", "an IP address or host name")
    )
    other = "host" if key == "device" else "device"
    if other in raw:
        checker.problem(
            raw.key_mark(other),
            f"node `{node_id}`: `{other}` does not go with transport {transport}; use `{key}`",
        )
    host = raw.get(key)
    if not isinstance(host, str) or not host:
        checker.problem(
            raw.value_mark(key) if key in raw else item_mark, f"node `{node_id}` needs `{key}` ({wanted})"
        )
        return None
    if transport == "serial":
        if not host.startswith("/dev/"):
            checker.problem(
                raw.value_mark(key),
                f"node `{node_id}`: `{host}` is not a device path; name the port under /dev/serial/by-id/",
            )
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.match(r"^[A-Za-z0-9.-]+$", host):
            checker.problem(raw.value_mark("host"), f"node `{node_id}`: `{host}` is not a host name or IP")
    return host


def _node_line(checker: Checker, raw: MarkedMap, node_id: str, transport: str) -> tuple[int, str, int]:
    """(baud, parity, stop bits) of the node's RS-485 line; only RTU transports have one."""
    keys = ("baud", "parity", "stop_bits")
    if transport == "tcp":
        for key in keys:
            if key in raw:
                checker.problem(
                    raw.key_mark(key),
                    f"node `{node_id}`: `{key}` describes an RS-485 line: it needs transport serial or "
                    "rtu-over-tcp",
                )
    return (
        checker.value(raw, "baud", NODE_FIELDS["baud"], 9600),
        checker.value(raw, "parity", NODE_FIELDS["parity"], "N"),
        checker.value(raw, "stop_bits", NODE_FIELDS["stop_bits"], 1),
    )


def _load_balancer(checker: Checker, root: MarkedMap) -> BalancerParams:
    section = checker.section(root, "balancer", BALANCER_FIELDS)
    values: dict[str, Any] = {}
    for key, field_ in BALANCER_FIELDS.items():
        value = checker.value(section, key, field_)
        if value is not None:
            values[key] = value
    try:
        return BalancerParams(**values)
    except ValueError as error:
        checker.problem(section.mark, str(error))
        return BalancerParams()


def _load_command(checker: Checker, root: MarkedMap) -> CommandConfig:
    section = checker.section(root, "command", COMMAND_FIELDS)
    defaults = CommandConfig()
    values = {
        key: checker.value(section, key, field_, getattr(defaults, key))
        for key, field_ in COMMAND_FIELDS.items()
    }
    values["charge_source"] = ChargeSource(values["charge_source"])
    return CommandConfig(**values)


def _load_logging(checker: Checker, root: MarkedMap, config_dir: Path) -> LoggingConfig:
    section = checker.section(root, "logging", LOGGING_FIELDS)
    defaults = LoggingConfig()
    values = {
        key: checker.value(section, key, field_, getattr(defaults, key))
        for key, field_ in LOGGING_FIELDS.items()
    }
    log_path = values["balancing_log"]
    if log_path is not None:
        values["balancing_log"] = Path(log_path) if Path(log_path).is_absolute() else config_dir / log_path
    return LoggingConfig(**values)


def load_config(path: str | Path, profile_dirs: Sequence[Path] | None = None) -> SiteConfig:
    """Load and check a site config; raise `ConfigError` listing every problem with file:line:column."""
    file = str(path)
    checker = Checker()
    try:
        root = load_yaml_file(path)
    except YamlError as error:
        checker.problem(error.mark, error.problem)
        raise ConfigError(checker.problems) from None
    if not isinstance(root, MarkedMap):
        checker.problem(Mark(file, 1, 1), "the site config must be a mapping (site, nodes, balancer, ...)")
        raise ConfigError(checker.problems)
    checker.known_keys(root, CONFIG_FIELDS, "the site config")
    site = checker.section(root, "site", SITE_FIELDS)
    name = checker.value(site, "name", SITE_FIELDS["name"], "site")
    cycle_ms = checker.value(site, "cycle_ms", SITE_FIELDS["cycle_ms"], 100.0)
    config_dir = Path(path).resolve().parent
    extra_dirs = site.get("profile_dirs", [])
    if not isinstance(extra_dirs, list) or not all(isinstance(d, str) for d in extra_dirs):
        checker.problem(site.value_mark("profile_dirs"), "`profile_dirs` must be a list of directories")
        extra_dirs = []
    dirs = [config_dir / d for d in extra_dirs] + list(profile_dirs or default_profile_dirs())
    library = ProfileLibrary(dirs)
    nodes = _load_nodes(checker, root, library)
    pollers = checker.value(site, "pollers", SITE_FIELDS["pollers"], 1)
    # Units on one RS-485 line share its link: they poll in one process.
    groups = len(
        {
            node.node_id
            if node.transport == "tcp"
            else (node.host, 0 if node.transport == "serial" else node.port)
            for node in nodes
        }
    )
    if pollers > max(1, groups):
        checker.problem(
            site.value_mark("pollers"),
            f"`pollers` is {pollers}, more than the {groups} group(s) of nodes that can poll apart "
            f"({len(nodes)} node(s); the nodes of one RS-485 line poll in one process): lower it to "
            f"{max(1, groups)} or fewer",
        )
    balancer = _load_balancer(checker, root)
    command = _load_command(checker, root)
    logging_config = _load_logging(checker, root, config_dir)
    status = checker.section(root, "status", STATUS_FIELDS)
    socket_path = checker.value(status, "socket", STATUS_FIELDS["socket"])
    status_socket = Path(socket_path) if socket_path is not None else default_status_socket()
    northbound = root.get("northbound") or MarkedMap(root.mark)
    if not isinstance(northbound, MarkedMap):
        checker.problem(root.value_mark("northbound"), "`northbound` must be a mapping (dnp3, iec61850)")
        northbound = MarkedMap(root.mark)
    role = checker.value(site, "role", SITE_FIELDS["role"], "standalone")
    hierarchy = _check_role(checker, root, site, role, nodes=nodes, northbound=northbound)
    # (a head without a `hierarchy` mapping was told so above)
    has_hierarchy = role == "head" and isinstance(root.get("hierarchy"), MarkedMap)
    clusters = _load_clusters(checker, hierarchy) if has_hierarchy else ()
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
        role=role,
        hierarchy=hierarchy,
        pollers=pollers,
        clusters=clusters,
    )


def _check_role(
    checker: Checker, root: MarkedMap, site: MarkedMap, role: str, *, nodes: Sequence[NodeConfig],
    northbound: MarkedMap,
) -> MarkedMap:  # fmt: skip
    """The `hierarchy` section (empty unless a head), after checking what each role needs."""
    mark = site.value_mark("role") if "role" in site else site.mark
    raw = root.get("hierarchy")
    if role != "head":
        if raw is not None:
            checker.problem(
                root.key_mark("hierarchy"),
                f"`hierarchy` is a head's section; this site's role is {role}: set `site.role: head` "
                "or remove it",
            )
        if role == "worker" and "mqtt" not in northbound:
            checker.problem(
                mark,
                "a worker reports to its head over Sparkplug B: add a `northbound.mqtt` section (its "
                "brokers, group and primary_host_id: the head's host id)",
            )
        return MarkedMap(root.mark)
    if nodes:
        checker.problem(
            root.value_mark("nodes"),
            "a head has no nodes of its own (its nodes are the workers' clusters, listed in "
            "`hierarchy.workers`): write `nodes: []`",
        )
    if raw is None:
        checker.problem(mark, "a head needs a `hierarchy` section (brokers, group_id, host_id, workers)")
        return MarkedMap(root.mark)
    section = checker.mapping(raw, root.value_mark("hierarchy"), "`hierarchy`")
    return section if section is not None else MarkedMap(root.mark)


CLUSTER_FIELDS = table(
    {
        "id": text("The worker's Sparkplug edge node id.", rule=ID_RULE),
        "packs": list_of(
            "The packs of its cluster (the worker's node ids), served upstream by the head in this order.",
            text("", pattern=NODE_ID, rule=NODE_ID_RULE),
        ),
    }
)


def _load_clusters(checker: Checker, hierarchy: MarkedMap) -> tuple[ClusterConfig, ...]:
    """`hierarchy.workers`: each an edge node id, or `{id, packs}` to serve its packs upstream."""
    entries = hierarchy.get("workers")
    if not isinstance(entries, MarkedList) or not entries:
        where = hierarchy.value_mark("workers") if "workers" in hierarchy else hierarchy.mark
        checker.problem(where, "`hierarchy.workers` must list the workers' edge node ids, at least one")
        return ()
    clusters: dict[str, ClusterConfig] = {}
    owners: dict[str, str] = {}  # pack -> worker
    marks: dict[str, Mark] = {}  # worker -> where it is listed
    for index, entry in enumerate(entries):
        mark = entries.item_mark(index)
        packs: tuple[str, ...] = ()
        pack_marks: tuple[Mark, ...] = ()
        if isinstance(entry, MarkedMap):
            checker.known_keys(entry, CLUSTER_FIELDS, "`hierarchy.workers`")
            if "id" not in entry:
                checker.problem(entry.mark, "each worker with `packs` needs its `id` (its edge node id)")
                continue
            worker = entry.get("id")
            mark = entry.value_mark("id")
            packs, pack_marks = _cluster_packs(checker, entry, str(worker), owners)
        else:
            worker = entry
        if not isinstance(worker, str) or not SPARKPLUG_ID.match(worker):
            checker.problem(mark, f"worker {worker!r} must be an edge node id: {ID_RULE}")
        elif worker in clusters:
            checker.problem(mark, f"worker `{worker}` is listed twice: remove one")
        else:
            clusters[worker] = ClusterConfig(worker, packs, pack_marks)
            marks[worker] = mark
    bare = [cluster.worker_id for cluster in clusters.values() if not cluster.packs]
    if owners and bare:
        checker.problem(
            marks[bare[0]],
            f"list the `packs` of every worker or of none (none for {', '.join(bare)}): the head serves "
            "upstream the packs it lists, and counts the site's SOC, energy and packs online over them",
        )
    return tuple(clusters.values())


def _cluster_packs(
    checker: Checker, entry: MarkedMap, worker: str, owners: dict[str, str]
) -> tuple[tuple[str, ...], tuple[Mark, ...]]:
    raw = entry.get("packs")
    if raw is None:
        return (), ()
    if not isinstance(raw, MarkedList):
        checker.problem(entry.value_mark("packs"), f"worker `{worker}`: `packs` must list its node ids")
        return (), ()
    packs: list[str] = []
    marks: list[Mark] = []
    for index, pack in enumerate(raw):
        mark = raw.item_mark(index)
        if not isinstance(pack, str) or not NODE_ID.match(pack):
            checker.problem(
                mark,
                f"pack {pack!r} of worker `{worker}` must be its node id: {NODE_ID_RULE}",
            )
        elif pack in owners:
            checker.problem(
                mark,
                f"pack `{pack}` is listed under worker `{owners[pack]}` already: pack ids are unique across "
                "the site; remove it from one worker",
            )
        else:
            owners[pack] = worker
            packs.append(pack)
            marks.append(mark)
    return tuple(packs), tuple(marks)
