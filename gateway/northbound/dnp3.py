"""The DNP3 outstation: the fleet as a DNP3 point list, and a master's controls as site commands.

Each cycle `publish` (on the asyncio loop) turns the snapshot into scaled integer points through the
map (`gateway/mapping/dnp3.py`, `dnp3_points.py`) and hands the stack one update. The stack (yadnp3,
opendnp3 3.x; see notes/dnp3.md for its rules) runs its own I/O thread; a master's SELECT/OPERATE
arrives there, is validated at once against the map (unknown or read-only point: NOT_SUPPORTED; value
outside the point's range or the fleet's rated power: OUT_OF_RANGE), and an accepted command goes to
the engine with `submit`, which is thread-safe and never blocks. Nothing raised in a callback escapes
to the stack.

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

import asyncio
import dataclasses
import ipaddress
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import opendnp3 as o

from gateway.balancer import BalancerParams
from gateway.config import ConfigError, SiteConfig
from gateway.mapping.dnp3 import (
    DEFAULT_MAP,
    Command,
    Dnp3Map,
    MappingError,
    PointType,
    ResolvedPoint,
    find_map,
    load_dnp3_map,
)
from gateway.northbound.adapter import NorthboundError, Submit
from gateway.northbound.dnp3_points import Change, PointTable
from gateway.northbound.dnp3_tls import TlsFileError, check_tls_files
from gateway.northbound.sources import Value
from gateway.profiles.loader import Problem
from gateway.profiles.model import SourceMark
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from gateway.yamlsource import Mark, MarkedMap

SECTION = "dnp3"
log = logging.getLogger("socgw.dnp3")

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


def from_site(site: SiteConfig, submit: Submit) -> Dnp3Outstation | None:
    """The outstation for the site's `northbound.dnp3` section (not started), or None without one."""
    parsed = parse_settings(site)
    if parsed is None:
        return None
    settings, dnp3_map = parsed
    node_ids = [node.node_id for node in site.nodes]
    return Dnp3Outstation(settings, dnp3_map, node_ids, submit)


# --- Commands ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Decision:
    """What a validated control does: its status, why (for the log), and its effects."""

    status: o.CommandStatus
    reason: str
    update: CommandUpdate | None = None
    charge_discharge_enabled: bool | None = None
    target_w: float | None = None


@dataclass(frozen=True)
class _Control:
    point: ResolvedPoint
    command: Command | None  # None: status-only point, writes are NOT_SUPPORTED


_OPERATE_NAMES = {
    o.OperateType.SelectBeforeOperate: "select-before-operate",
    o.OperateType.DirectOperate: "direct operate",
    o.OperateType.DirectOperateNoAck: "direct operate no ack",
}
_ANALOG_COMMANDS = (o.AnalogOutputInt16, o.AnalogOutputInt32, o.AnalogOutputFloat32, o.AnalogOutputDouble64)


class _CommandHandler(o.ICommandHandler):  # type: ignore[misc]
    """The stack's control callbacks (its I/O thread): validate, hand over, answer; never raise."""

    def __init__(self, outstation: Dnp3Outstation) -> None:
        super().__init__()
        self._outstation = outstation

    def Begin(self) -> None:
        return None

    def End(self) -> None:
        return None

    def Select(self, command: Any, index: int) -> o.CommandStatus:
        try:
            return self._outstation.control(command, index, None)
        except Exception as error:
            self._outstation.report_failure(index, error)
            return o.CommandStatus.HARDWARE_ERROR

    def Operate(self, command: Any, index: int, handler: Any, operate_type: Any) -> o.CommandStatus:
        try:
            return self._outstation.control(command, index, operate_type)
        except Exception as error:
            self._outstation.report_failure(index, error)
            return o.CommandStatus.HARDWARE_ERROR


class _ChannelListener(o.IChannelListener):  # type: ignore[misc]
    def __init__(self, changed: Callable[[bool], None]) -> None:
        super().__init__()
        self._changed = changed

    def OnStateChange(self, state: Any) -> None:
        try:
            self._changed(state == o.ChannelState.OPEN)
        except Exception:  # never into the stack
            return


class _StackLog(o.ILogHandler):  # type: ignore[misc]
    """The stack's own log lines (connections, TLS handshakes, protocol errors) into ours."""

    def __init__(self, forward: Callable[[int, str], None], peer: Callable[[str], None]) -> None:
        super().__init__()
        self._forward = forward
        self._peer = peer

    def log(self, module: Any, name: str, level: Any, location: str, message: str) -> None:
        try:
            flags = level.value
            if message.startswith("Accepted connection from: "):
                self._peer(message.rsplit(" ", 1)[-1])
            if "End of file" in message:  # a master closed its connection: routine
                self._forward(logging.INFO, message)
            elif flags & (o.flags.ERR.value | o.flags.WARN.value) or message.startswith(
                "TLS handshake failed"
            ):
                self._forward(logging.WARNING, message)
            else:
                self._forward(logging.INFO, message)
        except Exception:  # never into the stack
            return


# --- The adapter -------------------------------------------------------------------------------------

_STATIC = o.EventMode.Suppress
_EVENT = o.EventMode.Force


class Dnp3Outstation:
    """A DNP3 outstation serving one fleet. start/publish on the loop, stop on the main thread."""

    name = "dnp3"

    def __init__(
        self, settings: Dnp3Settings, dnp3_map: Dnp3Map, node_ids: Sequence[str], submit: Submit
    ) -> None:
        self.settings = settings
        self.map = dnp3_map
        self.points = dnp3_map.expand(node_ids)
        self._table = PointTable(self.points)
        self._submit = submit
        self._controls: dict[tuple[PointType, int], _Control] = {
            (point.type, point.index): _Control(point, point.spec.command)
            for point in self.points
            if point.type.output
        }
        self.database_size = max((point.index for point in self.points), default=0) + 1
        self._source = f"dnp3 master {settings.master_address}"
        # Rated power: configured, else the sum of each node's highest discharge limit seen so far.
        self._node_max_discharge_w: dict[str, float] = {}
        self.rated_power_w: float | None = settings.rated_power_w
        self._params: BalancerParams | None = None
        # AN2018 charge/discharge mode (BO18). Written only on the stack's thread, read by publish:
        # plain attributes, atomic under the GIL.
        self.charge_discharge_enabled = True
        self._target_w: float | None = None
        self._peer = ""  # " @ <master IP>" while a session is open, for the logs
        self._accepted_from = ""
        self._session_open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._manager: Any = None
        self._channel: Any = None
        self._outstation: Any = None
        self._callbacks: tuple[Any, ...] = ()
        self._flags: dict[int, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._manager is not None:
            raise NorthboundError("the DNP3 outstation is already started")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        settings = self.settings
        stack_log = _StackLog(self._forward_log, self._connection_from)
        listener = _ChannelListener(self._session_changed)
        handler = _CommandHandler(self)
        application = o.IOutstationApplication()  # the stack's defaults; None would crash it
        self._callbacks = (stack_log, listener, handler, application)
        manager = o.DNP3Manager(1, stack_log)
        endpoint = o.IPEndpoint(settings.host, settings.port)
        try:
            if settings.tls is None:
                channel = manager.AddTCPServer(
                    "dnp3", o.levels.NORMAL, o.ServerAcceptMode.CloseNew, endpoint, listener
                )
            else:
                tls = o.TLSConfig(str(settings.tls.ca), str(settings.tls.cert), str(settings.tls.key))
                channel = manager.AddTLSServer(
                    "dnp3", o.levels.NORMAL, o.ServerAcceptMode.CloseNew, endpoint, tls, listener
                )
        except RuntimeError as error:
            manager.Shutdown()
            self._callbacks = ()
            raise NorthboundError(
                f"DNP3: cannot listen on {settings.host}:{settings.port} ({error}); is another process "
                "using the port? Change northbound.dnp3.port"
            ) from None
        outstation = channel.AddOutstation("fleet", handler, application, self._stack_config())
        outstation.Enable()
        self._manager, self._channel, self._outstation = manager, channel, outstation
        log.info(
            "DNP3 outstation %d for master %d on %s:%d%s: %d points (map %s %s), unsolicited %s",
            settings.outstation_address,
            settings.master_address,
            settings.host,
            settings.port,
            " (mutual TLS)" if settings.tls else "",
            len(self.points),
            self.map.path,
            self.map.version,
            "allowed" if settings.unsolicited else "off",
        )
        if any(point.spec.event_class > 1 for point in self.points):
            log.warning("the DNP3 map uses event classes 2/3: this binding reports every event in Class 1")

    def _stack_config(self) -> Any:
        database = o.DatabaseConfig(self.database_size)
        # Every type the map does not use is dropped (the binding sizes all types alike).
        for unused in ("counter", "double_binary", "frozen_counter", "octet_string", "time_and_interval"):
            setattr(database, unused, {})
        config = o.OutstationStackConfig(database)
        buffers = self.settings.event_buffer
        config.outstation.eventBufferConfig = o.EventBufferConfig(
            buffers.binary,
            0,
            buffers.analog,
            0,
            0,
            buffers.binary_output_status,
            buffers.analog_output_status,
            0,
        )
        config.outstation.params.allowUnsolicited = self.settings.unsolicited
        config.link.LocalAddr = self.settings.outstation_address
        config.link.RemoteAddr = self.settings.master_address
        return config

    def stop(self) -> None:
        """Shut the stack down (once; call from the main thread, never from a stack callback)."""
        manager = self._manager
        if manager is None:
            return
        self._outstation = None
        self._channel = None
        manager.Shutdown()
        self._manager = None
        self._callbacks = ()
        self._loop = None
        log.info("DNP3 outstation stopped")

    # --- publishing (on the loop) ----------------------------------------------------------------

    def publish(self, snapshot: CycleSnapshot) -> None:
        outstation = self._outstation
        if outstation is None:
            return
        self._learn_rated_power(snapshot)
        self._params = snapshot.params  # read by the stack's thread to check reserve/ceiling writes
        adapter_values: Mapping[str, Value] = {
            "dnp3.rated_power_w": self.rated_power_w,
            "dnp3.charge_discharge_enabled": self.charge_discharge_enabled,
        }
        changes = self._table.changes(snapshot, adapter_values, self.rated_power_w)
        if changes:
            outstation.Apply(self._updates(changes, snapshot.wall_time))

    def _learn_rated_power(self, snapshot: CycleSnapshot) -> None:
        if self.settings.rated_power_w is not None:
            return
        seen = self._node_max_discharge_w
        for node in snapshot.fleet.nodes:
            limit = node.discharge_limit_w
            if node.online and limit is not None and limit > seen.get(node.node_id, 0.0):
                seen[node.node_id] = limit
        rated = sum(seen.values()) or None
        if rated != self.rated_power_w:
            level = logging.INFO if self.rated_power_w is None else logging.DEBUG
            log.log(level, "DNP3 rated power (100 %% of AO93) learned: %.0f W", rated or 0.0)
            self.rated_power_w = rated

    def _updates(self, changes: list[Change], wall_time: datetime) -> Any:
        stamp = o.DNPTime(int(wall_time.timestamp() * 1000))
        # One reusable measurement per type, and the flags last set on it: the binding's setters and
        # constructors cost more than the update itself (notes/dnp3.md), and most flags repeat.
        reusable: dict[PointType, list[Any]] = {
            PointType.ANALOG_INPUT: [o.Analog(), -1],
            PointType.BINARY_INPUT: [o.Binary(), -1],
            PointType.ANALOG_OUTPUT: [o.AnalogOutputStatus(), -1],
            PointType.BINARY_OUTPUT: [o.BinaryOutputStatus(), -1],
        }
        for measurement, _ in reusable.values():
            measurement.time = stamp
        flags_cache = self._flags
        builder = o.UpdateBuilder()
        update = builder.Update
        for point_type, index, value, point_flags, event in changes:
            entry = reusable[point_type]
            measurement = entry[0]
            flags = point_flags
            if value is True:  # the stack encodes a binary's state from its STATE flag, not from `value`
                flags |= BINARY_STATE
            if flags != entry[1]:
                quality = flags_cache.get(flags)
                if quality is None:
                    quality = flags_cache[flags] = o.Flags(flags)
                measurement.flags = quality
                entry[1] = flags
            measurement.value = value
            update(measurement, index, _EVENT if event else _STATIC)
        return builder.Build()

    # --- controls (on the stack's thread) ----------------------------------------------------------

    def control(self, command: Any, index: int, operate_type: Any) -> o.CommandStatus:
        """Validate a SELECT (operate_type None) or OPERATE; on an accepted OPERATE, act."""
        analog = isinstance(command, _ANALOG_COMMANDS)
        point_type = PointType.ANALOG_OUTPUT if analog else PointType.BINARY_OUTPUT
        control = self._controls.get((point_type, index))
        if control is None:
            decision = _Decision(o.CommandStatus.NOT_SUPPORTED, "no such point in the map")
        elif control.command is None:
            decision = _Decision(o.CommandStatus.NOT_SUPPORTED, "the point is read-only")
        elif analog:
            decision = self._analog_decision(control, command.value)
        else:
            decision = self._binary_decision(control, command)
        what = f"{point_type.short}{index}"
        action = "select" if operate_type is None else _OPERATE_NAMES.get(operate_type, "operate")
        if decision.status != o.CommandStatus.SUCCESS:
            self._forward_log(
                logging.WARNING,
                f"{self._source}{self._peer}: {action} {what} refused ({decision.status.name}): "
                f"{decision.reason}",
            )
            return decision.status
        if operate_type is None:
            return decision.status
        if decision.target_w is not None:
            self._target_w = decision.target_w
        if decision.charge_discharge_enabled is not None:
            self.charge_discharge_enabled = decision.charge_discharge_enabled
        if decision.update is not None:
            self._submit(
                dataclasses.replace(decision.update, source=f"{self._source}{self._peer} {what} {action}")
            )
        else:
            self._forward_log(logging.INFO, f"{self._source}{self._peer}: {action} {what}: {decision.reason}")
        return decision.status

    def _analog_decision(self, control: _Control, value: float) -> _Decision:
        spec = control.point.spec
        count = float(value)
        if not math.isfinite(count):
            return _Decision(o.CommandStatus.OUT_OF_RANGE, f"{value!r} is not a number")
        low, high = spec.minimum, spec.maximum
        if (low is not None and count < low) or (high is not None and count > high):
            return _Decision(o.CommandStatus.OUT_OF_RANGE, f"{value:g} is outside {low}..{high}")
        if control.command in (Command.RESERVE_PCT, Command.CEILING_PCT):
            return self._limit_decision(control.command, count * spec.scale)
        rated = self.rated_power_w
        if spec.rated_permille:
            if not rated:
                return _Decision(
                    o.CommandStatus.HARDWARE_ERROR,
                    "the fleet's rated power is not known yet (no pack has reported a discharge limit); "
                    "set northbound.dnp3.rated_power_w",
                )
            watts = count * rated / 1000.0
        else:
            watts = count * spec.scale
        if rated and abs(watts) > rated * (1.0 + 1e-9):
            return _Decision(
                o.CommandStatus.OUT_OF_RANGE, f"{watts:.0f} W exceeds the rated power ±{rated:.0f} W"
            )
        if not self.charge_discharge_enabled:
            return _Decision(
                o.CommandStatus.SUCCESS,
                f"target {watts:.0f} W kept until charge/discharge mode is enabled",
                target_w=watts,
            )
        return _Decision(
            o.CommandStatus.SUCCESS, "", CommandUpdate(source="", request_w=watts), target_w=watts
        )

    def _limit_decision(self, command: Command, pct: float) -> _Decision:
        """A reserve or ceiling fits the balancer's rules with the other values in force."""
        params = self._params
        if params is None:
            return _Decision(o.CommandStatus.HARDWARE_ERROR, "no cycle has run yet: try again")
        reserve = command is Command.RESERVE_PCT
        try:
            dataclasses.replace(params, **{str(command): pct})
        except ValueError:
            return _Decision(
                o.CommandStatus.OUT_OF_RANGE,
                f"{command} {pct:g} % does not fit: the balancer needs reserve + hysteresis "
                f"({params.reserve_hysteresis_pct:g} %) < ceiling <= 100; now reserve "
                f"{params.reserve_pct:g} %, ceiling {params.ceiling_pct:g} %",
            )
        update = (
            CommandUpdate(source="", reserve_pct=pct)
            if reserve
            else CommandUpdate(source="", ceiling_pct=pct)
        )
        return _Decision(o.CommandStatus.SUCCESS, "", update)

    def _binary_decision(self, control: _Control, crob: Any) -> _Decision:
        state = _crob_state(crob)
        if state is None:
            return _Decision(
                o.CommandStatus.NOT_SUPPORTED,
                f"{crob.opType.name}/{crob.tcc.name} is not a latch: use LATCH_ON/LATCH_OFF (or CLOSE/TRIP)",
            )
        command, node_id = control.command, control.point.node_id
        if command is Command.BALANCING_ENABLED:
            return _Decision(o.CommandStatus.SUCCESS, "", CommandUpdate(source="", balancing_enabled=state))
        if command is Command.NODE_MAINTENANCE and node_id is not None:
            return _Decision(
                o.CommandStatus.SUCCESS, "", CommandUpdate(source="", maintenance=(node_id, state))
            )
        if command is Command.NODE_CALIBRATE and node_id is not None:
            return _Decision(
                o.CommandStatus.SUCCESS, "", CommandUpdate(source="", calibrate=(node_id, state))
            )
        if command is Command.CHARGE_DISCHARGE_ENABLED:
            if not state:
                return _Decision(
                    o.CommandStatus.SUCCESS,
                    "",
                    CommandUpdate(source="", request_w=0.0),
                    charge_discharge_enabled=False,
                )
            target = self._target_w
            update = CommandUpdate(source="", request_w=target) if target is not None else None
            return _Decision(
                o.CommandStatus.SUCCESS,
                "charge/discharge mode enabled",
                update,
                charge_discharge_enabled=True,
            )
        return _Decision(o.CommandStatus.NOT_SUPPORTED, f"command {command} does not apply here")

    # --- logging from the stack's thread -----------------------------------------------------------

    def _forward_log(self, level: int, message: str) -> None:
        """Log on the loop's thread (never write to stdout from the stack's I/O thread)."""
        loop = self._loop
        if loop is None or threading.current_thread() is threading.main_thread():
            log.log(level, "%s", message)
            return
        try:
            loop.call_soon_threadsafe(log.log, level, "%s", message)
        except RuntimeError:  # the loop is closed: the gateway is stopping
            return

    def _connection_from(self, address: str) -> None:
        # The stack logs every accepted connection, also one it then closes because a master holds
        # the session (CloseNew): the address becomes the session's peer only when the channel opens.
        self._accepted_from = address

    def _session_changed(self, open_: bool) -> None:
        if open_ == self._session_open:  # the stack also reports its listening states
            return
        self._session_open = open_
        if open_:
            self._peer = f" @ {self._accepted_from}" if self._accepted_from else ""
        where = self._peer.removeprefix(" @ ") or "a master"
        self._forward_log(logging.INFO, f"DNP3 connection from {where} {'open' if open_ else 'closed'}")
        if not open_:
            self._peer = ""

    def report_failure(self, index: int, error: Exception) -> None:
        self._forward_log(
            logging.ERROR, f"DNP3 control of point {index} failed inside socgw (a bug; refused): {error!r}"
        )


def _crob_state(crob: Any) -> bool | None:
    """On/off from a CROB: LATCH_ON/LATCH_OFF, or a pulse with CLOSE/TRIP; None for anything else."""
    operation, code = crob.opType, crob.tcc
    if code == o.TripCloseCode.CLOSE and operation == o.OperationType.PULSE_ON:
        return True
    if code == o.TripCloseCode.TRIP and operation == o.OperationType.PULSE_ON:
        return False
    if code != o.TripCloseCode.NUL:
        return None
    if operation == o.OperationType.LATCH_ON:
        return True
    if operation == o.OperationType.LATCH_OFF:
        return False
    return None
