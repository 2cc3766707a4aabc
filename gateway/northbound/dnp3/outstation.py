"""The DNP3 outstation: the fleet as a DNP3 point list, and a master's controls as site commands.

Each cycle `publish` (on the asyncio loop) turns the snapshot into scaled integer points through the
map (`gateway/mapping/dnp3.py`, `points.py`) and hands the stack one update. The stack (yadnp3,
opendnp3 3.x; see notes/dnp3.md for its rules) runs its own I/O thread; a master's SELECT/OPERATE
arrives there, is validated at once against the map (unknown or read-only point: NOT_SUPPORTED; value
outside the point's range or the fleet's rated power: OUT_OF_RANGE), and an accepted command goes to
the engine with `submit`, which is thread-safe and never blocks. Nothing raised in a callback escapes
to the stack.

Its settings are read by `settings.py` (the `northbound.dnp3` section).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import opendnp3 as o

from gateway.balancer import BalancerParams
from gateway.logbook import RateLimitedLog
from gateway.mapping.dnp3 import (
    Command,
    Dnp3Map,
    PointType,
)
from gateway.mapping.sources import Value
from gateway.northbound.adapter import NorthboundError, Submit
from gateway.northbound.dnp3.controls import ANALOG_COMMANDS, OPERATE_NAMES, CommandHandler, Control, Decision
from gateway.northbound.dnp3.points import Change, PointTable
from gateway.northbound.dnp3.settings import BINARY_STATE, Dnp3Settings
from gateway.site_command import CommandUpdate
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
        self, settings: Dnp3Settings, dnp3_map: Dnp3Map, node_ids: Sequence[str], submit: Submit
    ) -> None:
        self.settings = settings
        self.map = dnp3_map
        self.points = dnp3_map.expand(node_ids)
        self._table = PointTable(self.points)
        self._submit = submit
        self._controls: dict[tuple[PointType, int], Control] = {
            (point.type, point.index): Control(point, point.spec.command)
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
        handler = CommandHandler(self)
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
        analog = isinstance(command, ANALOG_COMMANDS)
        point_type = PointType.ANALOG_OUTPUT if analog else PointType.BINARY_OUTPUT
        control = self._controls.get((point_type, index))
        if control is None:
            decision = Decision(o.CommandStatus.NOT_SUPPORTED, "no such point in the map")
        elif control.command is None:
            decision = Decision(o.CommandStatus.NOT_SUPPORTED, "the point is read-only")
        elif analog:
            decision = self._analog_decision(control, command.value)
        else:
            decision = self._binary_decision(control, command)
        what = f"{point_type.short}{index}"
        action = "select" if operate_type is None else OPERATE_NAMES.get(operate_type, "operate")
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

    def _analog_decision(self, control: Control, value: float) -> Decision:
        spec = control.point.spec
        count = float(value)
        if not math.isfinite(count):
            return Decision(o.CommandStatus.OUT_OF_RANGE, f"{value!r} is not a number")
        low, high = spec.minimum, spec.maximum
        if (low is not None and count < low) or (high is not None and count > high):
            return Decision(o.CommandStatus.OUT_OF_RANGE, f"{value:g} is outside {low}..{high}")
        if control.command in (Command.RESERVE_PCT, Command.CEILING_PCT):
            return self._limit_decision(control.command, count * spec.scale)
        rated = self.rated_power_w
        if spec.rated_permille:
            if not rated:
                return Decision(
                    o.CommandStatus.HARDWARE_ERROR,
                    "the fleet's rated power is not known yet (no pack has reported a discharge limit); "
                    "set northbound.dnp3.rated_power_w",
                )
            watts = count * rated / 1000.0
        else:
            watts = count * spec.scale
        if rated and abs(watts) > rated * (1.0 + 1e-9):
            return Decision(
                o.CommandStatus.OUT_OF_RANGE, f"{watts:.0f} W exceeds the rated power ±{rated:.0f} W"
            )
        if not self.charge_discharge_enabled:
            return Decision(
                o.CommandStatus.SUCCESS,
                f"target {watts:.0f} W kept until charge/discharge mode is enabled",
                target_w=watts,
            )
        return Decision(
            o.CommandStatus.SUCCESS, "", CommandUpdate(source="", request_w=watts), target_w=watts
        )

    def _limit_decision(self, command: Command, pct: float) -> Decision:
        """A reserve or ceiling fits the balancer's rules with the other values in force."""
        params = self._params
        if params is None:
            return Decision(o.CommandStatus.HARDWARE_ERROR, "no cycle has run yet: try again")
        reserve = command is Command.RESERVE_PCT
        try:
            dataclasses.replace(params, **{str(command): pct})
        except ValueError:
            return Decision(
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
        return Decision(o.CommandStatus.SUCCESS, "", update)

    def _binary_decision(self, control: Control, crob: Any) -> Decision:
        state = _crob_state(crob)
        if state is None:
            return Decision(
                o.CommandStatus.NOT_SUPPORTED,
                f"{crob.opType.name}/{crob.tcc.name} is not a latch: use LATCH_ON/LATCH_OFF (or CLOSE/TRIP)",
            )
        command, node_id = control.command, control.point.node_id
        if command is Command.BALANCING_ENABLED:
            return Decision(o.CommandStatus.SUCCESS, "", CommandUpdate(source="", balancing_enabled=state))
        if command is Command.NODE_MAINTENANCE and node_id is not None:
            return Decision(
                o.CommandStatus.SUCCESS, "", CommandUpdate(source="", maintenance=(node_id, state))
            )
        if command is Command.NODE_CALIBRATE and node_id is not None:
            return Decision(o.CommandStatus.SUCCESS, "", CommandUpdate(source="", calibrate=(node_id, state)))
        if command is Command.CHARGE_DISCHARGE_ENABLED:
            if not state:
                return Decision(
                    o.CommandStatus.SUCCESS,
                    "",
                    CommandUpdate(source="", request_w=0.0),
                    charge_discharge_enabled=False,
                )
            target = self._target_w
            update = CommandUpdate(source="", request_w=target) if target is not None else None
            return Decision(
                o.CommandStatus.SUCCESS,
                "charge/discharge mode enabled",
                update,
                charge_discharge_enabled=True,
            )
        return Decision(o.CommandStatus.NOT_SUPPORTED, f"command {command} does not apply here")

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
