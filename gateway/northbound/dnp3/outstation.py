"""The DNP3 outstation: the fleet as a DNP3 point list, and a master's controls as site commands.

Each cycle `publish` (on the asyncio loop) turns the snapshot into scaled integer points through the
map (`gateway/mapping/dnp3.py`, `points.py`) and hands the stack one update; before it, during the
poll, `publish_nodes` does the same for the points of the packs that have answered, so their events
go out (unsolicited when enabled) without waiting for the slowest pack. The stack (yadnp3,
opendnp3 3.x; see notes/dnp3.md for its rules) runs its own I/O thread; a master's SELECT/OPERATE
arrives there, is decided at once by the shared control table (`gateway/mapping/controls.py`: unknown
or read-only point NOT_SUPPORTED; value outside the target's range, the point's min/max or the rated
power OUT_OF_RANGE; rated power unknown HARDWARE_ERROR), and an accepted OPERATE goes to the engine with
`submit`, which is thread-safe, returns at once, and refuses a reserve or ceiling that does not fit the
values in force (OUT_OF_RANGE). The adapter keeps no command state: the AN2018 charge/discharge mode
and the rated power come with each cycle's snapshot. Nothing raised in a callback escapes to the stack.

Its settings are read by `settings.py` (the `northbound.dnp3` section).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import opendnp3 as o

from gateway.logbook import RateLimitedLog
from gateway.mapping.controls import Context, Refusal, decide
from gateway.mapping.dnp3 import Dnp3Map, PointType
from gateway.mapping.sources import Value
from gateway.northbound.adapter import NodeUpdate, NorthboundError, Submit
from gateway.northbound.dnp3.controls import (
    ANALOG_COMMANDS,
    OPERATE_NAMES,
    REFUSAL_STATUS,
    CommandHandler,
    Control,
)
from gateway.northbound.dnp3.points import Change, PointTable
from gateway.northbound.dnp3.settings import BINARY_STATE, Dnp3Settings
from gateway.snapshot import CycleSnapshot

log = logging.getLogger(__name__)


# --- Stack plumbing ----------------------------------------------------------------------------------


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
    """The stack's own log lines (connections, TLS handshakes, protocol errors) into ours, rate-limited
    per source line of the stack: garbage from an unauthenticated peer gives one line per frame it skips."""

    def __init__(self, forward: Callable[[int, str], None], peer: Callable[[str], None]) -> None:
        super().__init__()
        self._lines = RateLimitedLog(forward)
        self._peer = peer

    def log(self, module: Any, name: str, level: Any, location: str, message: str) -> None:
        try:
            flags = level.value
            if message.startswith("Accepted connection from: "):
                self._peer(message.rsplit(" ", 1)[-1])
            key = f"DNP3 stack {location.rsplit('/', 1)[-1]}"  # e.g. LinkLayerParser.cpp(96)
            if "End of file" in message:  # a master closed its connection: routine
                self._lines.log(key, logging.INFO, message)
            elif flags & (o.flags.ERR.value | o.flags.WARN.value) or message.startswith(
                "TLS handshake failed"
            ):
                self._lines.log(key, logging.WARNING, message)
            else:
                self._lines.log(key, logging.INFO, message)
        except Exception:  # never into the stack
            return


# --- The adapter -------------------------------------------------------------------------------------

_STATIC = o.EventMode.Suppress
_EVENT = o.EventMode.Force


class Dnp3Outstation:
    """A DNP3 outstation serving one fleet. start/publish on the loop, stop on the main thread."""

    name = "dnp3"

    def __init__(
        self,
        settings: Dnp3Settings,
        dnp3_map: Dnp3Map,
        node_ids: Sequence[str],
        submit: Submit,
        *,
        behind_door: bool = False,
    ) -> None:
        self.settings = settings
        # Behind the front door, which alone decides who holds the session (docs/dnp3.md), a new
        # connection replaces the old at once; listening itself, the first master keeps it.
        self._accept_mode = o.ServerAcceptMode.CloseExisting if behind_door else o.ServerAcceptMode.CloseNew
        self._behind_door = behind_door
        self.map = dnp3_map
        self.points = dnp3_map.expand(node_ids)
        self._table = PointTable(self.points)
        self._submit = submit
        self._controls: dict[tuple[PointType, int], Control] = {
            (point.type, point.index): Control.of(point) for point in self.points if point.type.output
        }
        self.database_size = max((point.index for point in self.points), default=0) + 1
        self._source = f"dnp3 master {settings.master_address}"
        # The rated power behind AO93: configured, else learned (the snapshot's). Written by publish,
        # read on the stack's thread: a plain attribute, atomic under the GIL.
        self.rated_power_w: float | None = settings.rated_power_w
        self._peer = ""  # " @ <master IP>" while a session is open, for the logs
        self._accepted_from = ""
        self._session_open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._manager: Any = None
        self._channel: Any = None
        self._outstation: Any = None
        self._callbacks: tuple[Any, ...] = ()
        self._flags: dict[int, Any] = {}
        self._latest: CycleSnapshot | None = None  # the dispatch and parameters in force

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
        handler = CommandHandler(self)
        application = o.IOutstationApplication()  # the stack's defaults; None would crash it
        self._callbacks = (stack_log, listener, handler, application)
        manager = o.DNP3Manager(1, stack_log)
        endpoint = o.IPEndpoint(settings.host, settings.port)
        try:
            if settings.tls is None:
                channel = manager.AddTCPServer("dnp3", o.levels.NORMAL, self._accept_mode, endpoint, listener)
            else:
                tls = o.TLSConfig(str(settings.tls.ca), str(settings.tls.cert), str(settings.tls.key))
                channel = manager.AddTLSServer(
                    "dnp3", o.levels.NORMAL, self._accept_mode, endpoint, tls, listener
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
        config.outstation.params.selectTimeout = o.TimeDuration.Milliseconds(
            round(self.settings.select_timeout_s * 1000)
        )
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
        rated = snapshot.rated_power_w(self.settings.rated_power_w)
        if rated != self.rated_power_w:
            level = logging.INFO if self.rated_power_w is None else logging.DEBUG
            log.log(level, "DNP3 rated power (100 %% of AO93) learned: %.0f W", rated or 0.0)
            self.rated_power_w = rated
        adapter_values: Mapping[str, Value] = {
            "dnp3.rated_power_w": rated,
            "dnp3.charge_discharge_enabled": snapshot.charge_discharge_enabled,
        }
        changes = self._table.changes(snapshot, adapter_values, self.rated_power_w)
        self._latest = snapshot
        if changes:
            outstation.Apply(self._updates(changes, snapshot.wall_time))

    def publish_nodes(self, update: NodeUpdate) -> None:
        outstation, snapshot = self._outstation, self._latest
        if outstation is None or snapshot is None:  # before the first snapshot: it will show them
            return
        changes = self._table.node_changes(snapshot, update.nodes, self.rated_power_w)
        if changes:
            outstation.Apply(self._updates(changes, update.wall_time))

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
        """Decide a SELECT (operate_type None) or OPERATE; on an accepted OPERATE, hand it over."""
        analog = isinstance(command, ANALOG_COMMANDS)
        point_type = PointType.ANALOG_OUTPUT if analog else PointType.BINARY_OUTPUT
        what = f"{point_type.short}{index}"
        action = "select" if operate_type is None else OPERATE_NAMES.get(operate_type, "operate")
        control = self._controls.get((point_type, index))
        value = None if control is None else control.value_of(command)
        if control is None:
            status, reason = o.CommandStatus.NOT_SUPPORTED, "no such point in the map"
        elif control.target is None:
            status, reason = o.CommandStatus.NOT_SUPPORTED, "the point is read-only"
        elif value is None:
            status = o.CommandStatus.NOT_SUPPORTED
            reason = f"{command.opType.name}/{command.tcc.name} is not a latch (LATCH_ON/OFF, CLOSE/TRIP)"
        else:
            source = f"{self._source}{self._peer} {what} {action}"
            context = Context(source, self.rated_power_w, control.point.node_id)
            outcome = decide(control.target, value, context, control.bounds)
            if isinstance(outcome, Refusal):
                status, reason = REFUSAL_STATUS[outcome.kind], outcome.reason
            elif operate_type is None:  # SELECT: would the site take it now?
                refusal = self._submit(outcome, apply=False)
                if refusal is None:
                    return o.CommandStatus.SUCCESS
                status, reason = o.CommandStatus.OUT_OF_RANGE, refusal
            else:  # the engine logs the outcome; a refusal there is a limit that does not fit the others
                accepted = self._submit(outcome) is None
                return o.CommandStatus.SUCCESS if accepted else o.CommandStatus.OUT_OF_RANGE
        self._forward_log(
            logging.WARNING, f"{self._source}{self._peer}: {action} {what} refused ({status.name}): {reason}"
        )
        return status

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
        # Behind the front door the stack sees only the door's loopback address: the door says who.
        if not self._behind_door:
            self._accepted_from = address

    def door_peer(self, peer: str) -> None:
        """The master the front door is about to splice in (address, and certificate subject with TLS):
        the peer of the session that opens next, for the logs and each command's source."""
        self._accepted_from = peer

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
