"""One session per field unit: connection lifecycle, identification, cyclic reads, setpoint writes.

Reconnects are ours, not pymodbus's (its reconnect task is switched off in `ModbusLink`): pymodbus
doubles a fixed delay up to `reconnect_delay_max` (default 300 s) without jitter, never retries a
first connect that failed, and reports nothing about why an attempt failed. Here every attempt is
classified (refused / unreachable / timeout / wrong device), logged once per change, paced by capped
exponential backoff with jitter (`Backoff`), and runs as a background task so that a unit coming back
never stretches the control cycle of the others.

A session moves between three states:
  DISCONNECTED --(attempt due)--> CONNECTING --(connected and identified)--> READY
  READY --(connection lost / malformed or foreign answers / `max_silent_requests` timeouts)--> DISCONNECTED
A Modbus exception (01..0B) does not drop the connection: the device answered, the link is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from gateway.fleet import Quality, node_from_values
from gateway.logbook import CrowdGate, RateLimitedLog, emit_to
from gateway.profiles.codec import (
    CodecError,
    PointsDecoder,
    Value,
    active_labels,
    check_write,
    decode,
    decode_scale_factor,
    encode,
)
from gateway.profiles.codec import label_of as enum_label
from gateway.profiles.model import DataType, Point, Profile
from gateway.profiles.plan import ReadBlock, plan_reads, split_block
from gateway.southbound.backoff import Backoff
from gateway.southbound.errors import ErrorCode, Facts, FieldError, NodeContext, Region, Target
from gateway.southbound.identify import (
    Selection,
    common_points,
    marker_mismatches,
    select_variant,
    variant_ranges,
)
from gateway.southbound.lines import LineRegistry
from gateway.southbound.link import ModbusLink
from gateway.southbound.reading import PointRead, Reading
from gateway.southbound.schedule import PollBlocks, PollSchedule, poll_plan
from gateway.southbound.transport import TCP, Transport
from gateway.southbound.writer import WriteOutcome, WritePlan, WritePolicy, WriteState, WriteStatus

log = logging.getLogger(__name__)
# Every session's change lines pass one gate: a fleet failing at once (started before its packs, a
# switch down) writes a few lines a second and a count of the rest, not a line per node.
_NODE_LINES = CrowdGate(emit_to(log), crowd="nodes", where="`socgw status`")

# Successive multiples of it modulo 1 fall evenly between 0 and 1 for any count of units: the heartbeat
# stagger of the unit at each place.
_GOLDEN_RATIO_CONJUGATE = (5**0.5 - 1) / 2


def silence_session_logging() -> None:
    """Stop the sessions' once-per-change log lines, for tools that print every error themselves."""
    log.setLevel(logging.CRITICAL)


# Failures after which the stream cannot be trusted (or will not heal by asking again soon).
_DROP_AT_ONCE = frozenset(
    {ErrorCode.MALFORMED, ErrorCode.UNIT_MISMATCH, ErrorCode.WRONG_TID, ErrorCode.CONN_RESET}
)


class SessionState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"


@dataclass(frozen=True)
class SessionOptions:
    timeout_s: float | None = None  # per request; None: the profile's comms.timeout_ms (default 80 ms)
    connect_timeout_s: float = 1.0  # connects run in the background: they never hold up a cycle
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 2.0
    stale_limit_s: float = 2.0  # last good values are carried (quality stale) this long, then failed
    slow_poll_every: int = 10  # points outside FAST_POINTS are due every Nth poll (schedule.py)
    max_silent_requests: int = 2  # consecutive timeouts before re-connecting (in the background)
    writes: WritePolicy = field(default_factory=WritePolicy)

    @classmethod
    def for_node(cls, timeout_ms: float | None = None) -> SessionOptions:
        """The running gateway's options for a node; `timeout_ms` overrides the profile's request timeout."""
        return cls(timeout_s=None if timeout_ms is None else timeout_ms / 1000.0)

    @classmethod
    def for_tool(cls, timeout_ms: float, *, verify: str | None = None) -> SessionOptions:
        """A field tool's options: a patient `timeout_ms` per request, no heartbeat, and `verify` (a point)
        read back after it is written."""
        timeout_s = timeout_ms / 1000.0
        return cls(
            timeout_s=timeout_s,
            connect_timeout_s=max(1.0, timeout_s),
            writes=WritePolicy(
                heartbeat_interval_s=None,
                verify_points=frozenset() if verify is None else frozenset({verify}),
            ),
        )


class ModbusSession:
    """The gateway's view of one unit (`node_id`) at `host:port`, Modbus unit id `unit`, read with `profile`.
    `transport` says how `host:port` is reached (on a serial port, `host` is the device path); with
    `lines`, units on one RS-485 line share its link and poll in turns. `place`, the unit's index in its
    fleet, staggers its slow reads and heartbeats against the other units'.

    Call `connect(now)` once at start-up (optional: `poll` connects on its own), then `poll(now)` and
    `write_setpoints(values, now)` every cycle, and `close()` at the end. `now` is the caller's monotonic
    clock in seconds; it stamps readings and paces reconnects and writes. `poll` never raises.
    """

    def __init__(
        self,
        node_id: str,
        host: str,
        port: int,
        unit: int,
        profile: Profile,
        *,
        options: SessionOptions | None = None,
        rng: random.Random | None = None,
        transport: Transport = TCP,
        lines: LineRegistry | None = None,
        place: int = 0,
    ) -> None:
        self.node_id = node_id
        self.profile = profile
        self.options = options or SessionOptions()
        self.target = Target(host, port, unit, transport)
        comms = profile.comms
        self.context = NodeContext(
            node_id=node_id,
            profile_key=profile.key,
            variants=variant_ranges(profile),
            address_notation=profile.address_notation,
        )

        def new_link() -> ModbusLink:
            return ModbusLink(
                self.target,
                timeout_s=self.options.timeout_s or comms.timeout_ms / 1000.0,
                connect_timeout_s=self.options.connect_timeout_s,
                min_request_gap_s=comms.min_request_gap_ms / 1000.0,
                context=self.context,
            )

        # On an RS-485 line the units share one link and take turns (lines.py).
        self._lines: LineRegistry | None = lines if self.target.line is not None else None
        self._line = self.target.line or ""
        self.link = (
            new_link() if self._lines is None else self._lines.join(node_id, self.target, profile, new_link)
        )
        self.state = SessionState.DISCONNECTED
        self.error: FieldError | None = None  # why the last request or connect failed (None: all well)
        self.condition: FieldError | None = None  # a standing condition while polling works (E_FW_UNKNOWN)
        self.selection: Selection | None = None
        self.points: Mapping[str, Point] = {}  # the map in use: the variant's, or the common points
        self.read_only = False
        self.connects = 0  # successful connections (reconnect churn shows here)
        # Units connected together would read their slow blocks and write their heartbeat in the same
        # cycles: 500 packs' extra requests in one cycle of ten (a 3x longer poll there). `place` (the
        # unit's index in its fleet) spreads both evenly over the cycles.
        self._place = place
        self.writes = WriteState(self.options.writes, stagger=(place * _GOLDEN_RATIO_CONJUGATE) % 1.0)
        self._backoff = Backoff(
            self.options.backoff_base_s, self.options.backoff_cap_s, rng or random.Random()
        )
        self._next_attempt_s = -math.inf
        self._connect_task: asyncio.Task[None] | None = None
        self._connect_failure: FieldError | None = None
        self._cyclic: dict[str, Point] = {}
        self._full_plan: list[ReadBlock] = []  # every cyclic point
        self._fast_plan: list[ReadBlock] = []  # FAST_POINTS and their scale registers
        self._schedule = PollSchedule((), (), 1, 0.0)  # the blocks of each poll on this connection
        self._heartbeat_planned: bool | None = None  # this cycle's poll saw the heartbeat due (None: no poll)
        self._identity: dict[str, Value | None] = {}
        self._silent = 0
        self._fresh_connection = False
        self._good_values: Mapping[str, Value | None] = {}
        self._good_raw: dict[str, list[int]] = {}
        self._last_decode: tuple[
            Mapping[str, Point] | None, Mapping[str, Sequence[int]], Mapping[str, Value | None]
        ] = (
            None,
            {},
            {},
        )
        self._good_at_s: float | None = None
        self._decoder: PointsDecoder | None = None
        # Per block of the plan in use (by id, with the block to tell a reused id): its last words, split.
        self._splits: dict[int, tuple[ReadBlock, list[int], dict[str, list[int]]]] = {}
        self._state_label: str | None = None
        self._alarms: tuple[str, ...] = ()
        self._alarms_of: tuple[Point, int] | None = None  # the alarms point and raw bits of `_alarms`
        self._write_errors: dict[str, tuple[object, ...]] = {}  # per point, for logging once per change
        self._encoded: dict[str, tuple[float, int | None, list[int]]] = {}  # per point: the last encode
        self._changes_log = RateLimitedLog(
            _NODE_LINES.emit
        )  # a fault that comes and goes: a few lines a minute
        self._not_connected = FieldError(
            Facts(ErrorCode.NOT_CONNECTED, "not connected yet", self.target), self.context
        )

    # ----------------------------------------------------------------------------------------------
    # connection

    async def connect(self, now: float) -> None:
        """Connect and identify the device now; raises the classified FieldError (also recorded)."""
        await self._cancel_connect_task()
        self.state = SessionState.CONNECTING
        try:
            await self._establish()
        except FieldError as error:
            self._connect_failed(error, now)
            raise

    async def close(self) -> None:
        """Release the connection (and stop a connect in progress)."""
        await self._cancel_connect_task()
        self.link.release()
        self.state = SessionState.DISCONNECTED

    async def _cancel_connect_task(self) -> None:
        task, self._connect_task = self._connect_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _establish(self) -> None:
        """Open the connection, identify the device and choose the register map; READY on success."""
        try:
            await (self.link.ensure_open() if self.link.shared else self.link.open())
            await self._identify()
        except BaseException:
            self._let_go()
            raise
        self.state = SessionState.READY
        self.connects += 1
        self._silent = 0
        self._fresh_connection = True
        self.writes.forget_device()

    async def _establish_quietly(self) -> None:
        try:
            await self._establish()
        except FieldError as error:
            self._connect_failure = error
        except Exception as error:  # a bug must not kill the task silently: contained to this node
            log.exception("node %s: unexpected error while connecting", self.node_id)
            self._connect_failure = self._internal(error)

    def _start_connect(self) -> None:
        self.state = SessionState.CONNECTING
        self._connect_failure = None
        self._connect_task = asyncio.create_task(self._establish_quietly(), name=f"connect {self.node_id}")

    def _harvest_connect(self, now: float) -> None:
        task = self._connect_task
        if task is None or not task.done():
            return
        self._connect_task = None
        if self._connect_failure is not None:
            self._connect_failed(self._connect_failure, now)

    def _connect_failed(self, error: FieldError, now: float) -> None:
        self.state = SessionState.DISCONNECTED
        self._set_error(error)
        self._next_attempt_s = now + self._backoff.next_delay_s()

    def _drop(self, now: float) -> None:
        """Give up on the current connection; the next attempt waits for the backoff."""
        self._let_go()
        self.state = SessionState.DISCONNECTED
        self._next_attempt_s = now + self._backoff.next_delay_s()

    def _let_go(self) -> None:
        """Close this unit's connection; a line's stays open for the other units (a silent or garbled
        unit says nothing about the line: the next request starts a clean frame)."""
        if not self.link.shared:
            self.link.close()

    async def _identify(self) -> None:
        identify = self.profile.identify
        raw = await self._read_blocks(plan_reads(identify.points.values(), self.profile.comms))
        values = self._decode(identify.points, raw)
        mismatches = marker_mismatches(self.profile, values)
        if mismatches:
            raise FieldError(
                Facts(
                    ErrorCode.PROFILE_MISMATCH,
                    "; ".join(mismatches),
                    self.target,
                    points=tuple(identify.markers),
                ),
                self.context,
            )
        selection = select_variant(self.profile, values)
        self.selection = selection
        variant = selection.variant
        self.context = replace(
            self.context,
            firmware=selection.firmware_text,
            variant=None if variant is None else str(variant.firmware),
        )
        self.link.context = self.context
        if variant is not None:
            self.points, self.read_only, condition = variant.points, False, None
        else:
            self.points, self.read_only = common_points(self.profile), True
            condition = FieldError(
                Facts(
                    ErrorCode.FW_UNKNOWN,
                    selection.problem or "unknown firmware",
                    self.target,
                    points=("firmware",),
                    extra={"common": str(len(self.points))},
                ),
                self.context,
            )
        self._set_condition(condition)
        self._identity = values
        plan = poll_plan(self.profile, self.points)
        self._cyclic = dict(plan.cyclic)
        self._splits.clear()
        self._full_plan, self._fast_plan = list(plan.full), list(plan.fast)
        self._schedule = PollSchedule(
            self._fast_plan,
            self._full_plan,
            self.options.slow_poll_every,
            self.link.timeout_s,
            phase=self._place if self._lines is None else self._lines.place(self._line, self.node_id),
        )

    # ----------------------------------------------------------------------------------------------
    # polling

    async def poll(self, now: float) -> Reading:
        """One cycle's reading of this unit. Never raises; never waits for a reconnect."""
        polled: asyncio.Future[Reading] = asyncio.get_running_loop().create_future()

        def done(reading: Reading) -> None:
            if not polled.done():  # not when the caller gave up (cancelled)
                polled.set_result(reading)

        if self.poll_soon(now, done):  # the same path as a fleet's poll (`poll_all`)
            return await polled
        try:
            return await self._poll(now)
        except Exception as error:  # a bug must not take the other units' poll down
            return self._poll_bug(error, now)

    def poll_soon(self, now: float, done: Callable[[Reading], None]) -> bool:
        """`poll` without a coroutine (no task per unit per cycle) when this poll is only requests on a
        connection it has to itself: True when started, and `done` gets the reading once the answers came
        (from the loop; at once when there was nothing to ask). False: nothing was done, await `poll`.
        The same requests, timeouts, classification and reading as `poll`."""
        if self.state is not SessionState.READY or self._lines is not None or not self.link.take_turn_now():
            return False
        try:
            planned = self._plan_poll(now)
        except Exception as error:
            self.link.give_back_turn()
            done(self._poll_bug(error, now))
            return True
        self._read_soon(planned, 0, {}, now, done)
        return True

    def _read_soon(
        self,
        planned: PollBlocks,
        index: int,
        raw: dict[str, list[int]],
        now: float,
        done: Callable[[Reading], None],
    ) -> None:
        """Read `planned`'s blocks from `index` on, one request after the other, then hand on the reading."""
        if index == len(planned.blocks):
            self.link.give_back_turn()
            done(self._polled_safely(planned, raw, now))
            return
        block = planned.blocks[index]

        def answered(words: list[int] | Exception) -> None:
            if isinstance(words, Exception):
                self.link.give_back_turn()
                done(self._polled_safely(planned, self._block_failed(words, block), now))
                return
            try:
                self._keep_block(block, words, raw)
            except Exception as error:
                self.link.give_back_turn()
                done(self._poll_bug(error, now))
                return
            self._read_soon(planned, index + 1, raw, now, done)

        self.link.read_in_turn(block.table, block.start, block.count, self.target.unit, answered)

    def _poll_bug(self, error: Exception, now: float) -> Reading:
        log.exception("node %s: unexpected error while polling", self.node_id, exc_info=error)
        self._set_error(self._internal(error))
        return self._carried(now)

    def _polled_safely(
        self, planned: PollBlocks, read: dict[str, list[int]] | Exception, now: float
    ) -> Reading:
        try:
            return self._polled(planned, read, now)
        except Exception as error:
            return self._poll_bug(error, now)

    async def _poll(self, now: float) -> Reading:
        if self.state is SessionState.CONNECTING:
            self._harvest_connect(now)
        if self._lines is not None:
            if not self._lines.my_turn(self._line, self.node_id, now):
                return self._between_turns(now)
            if self.state is SessionState.DISCONNECTED and now >= self._next_attempt_s:
                # On a line, a unit (re)connects in its own turn: a silent one costs the line its timeout
                # there, not in another unit's turn.
                await self._connect_in_turn(now)
                return self._carried(now)
        if self.state is SessionState.READY and not self.link.connected:
            self._request_failed(
                FieldError(
                    Facts(ErrorCode.CONN_RESET, "the device closed the connection", self.target), self.context
                ),
                now,
            )
        if self.state is SessionState.READY:
            planned = self._plan_poll(now)
            try:
                read: dict[str, list[int]] | Exception = await self._read_blocks(planned.blocks)
            except FieldError as error:
                read = error
            return self._polled(planned, read, now)
        if self.state is SessionState.DISCONNECTED and now >= self._next_attempt_s:
            self._start_connect()
        return self._carried(now)

    def _plan_poll(self, now: float) -> PollBlocks:
        """The blocks of this poll of a ready unit."""
        # The heartbeat written later in this cycle takes its share of the node's budget too.
        self._heartbeat_planned = self._heartbeat_due(now) is not None
        return self._schedule.next(self.link.request_s, writes=int(self._heartbeat_planned))

    def _polled(self, planned: PollBlocks, read: dict[str, list[int]] | Exception, now: float) -> Reading:
        """The reading of a poll that read `planned`'s blocks into `read`, or failed with that FieldError."""
        try:
            if isinstance(read, Exception):
                raise read
            if planned.complete:
                raw, values = read, self._decode(self._cyclic, read)
            else:  # what this poll did not read keeps its words and values from earlier polls
                raw = {**self._good_raw, **read}
                values = {
                    **self._good_values,
                    **self._decode(self._cyclic, raw if planned.slow else read),
                }
        except FieldError as error:
            self._request_failed(error, now)
            return self._carried(now)
        return self._good(values, raw, now)

    async def _read_blocks(self, plan: Sequence[ReadBlock]) -> dict[str, list[int]]:
        """The words of every block, by point; raises the FieldError of the first block that failed."""
        raw: dict[str, list[int]] = {}
        unit = self.target.unit
        for block in plan:
            try:
                words = await self.link.read(block.table, block.start, block.count, unit)
            except FieldError as error:
                raise self._block_failed(error, block) from None
            self._keep_block(block, words, raw)
        return raw

    def _block_failed(self, error: Exception, block: ReadBlock) -> Exception:
        """A block's failure, naming its points (an exception that is no FieldError is a bug: as it is)."""
        if isinstance(error, FieldError):
            return error.in_context(self.context, tuple(p.name for p in block.points))
        return error

    def _keep_block(self, block: ReadBlock, words: list[int], raw: dict[str, list[int]]) -> None:
        """Add a block's words to `raw`, by point."""
        # A block whose words did not change gives the same words per point as before (the decode then
        # finds them unchanged at once).
        split = self._splits.get(id(block))
        if split is None or split[0] is not block or split[1] != words:
            split = self._splits[id(block)] = (block, words, split_block(block, words))
        raw.update(split[2])

    def _decode(
        self, points: Mapping[str, Point], raw: Mapping[str, Sequence[int]]
    ) -> dict[str, Value | None]:
        # The last decode of the same map: its unchanged registers are not decoded again.
        before = self._last_decode[1:] if self._last_decode[0] is points else None
        if before is not None and len(before[0]) == len(raw):
            # The same words as last time (the very lists `_read_blocks` keeps for an unchanged block):
            # the same values, without looking at each point.
            earlier = before[0]
            if all(earlier.get(name) is words for name, words in raw.items()):
                return dict(before[1])
        decoder = self._decoder
        if decoder is None or decoder.points is not points:
            decoder = self._decoder = PointsDecoder(points)
        try:
            values = decoder(raw, before)
        except CodecError as error:
            raise FieldError(Facts(ErrorCode.DECODE, str(error), self.target), self.context) from None
        self._last_decode = (points, dict(raw), values)  # a copy: an acknowledged write edits the good raw
        return values

    # ----------------------------------------------------------------------------------------------
    # one point at a time, for the field tools

    @property
    def known_points(self) -> Mapping[str, Point]:
        """The identify block and the map in use (the variant's, chosen at `connect`)."""
        return {**self.profile.identify.points, **self.points}

    async def read_point(self, name: str) -> PointRead:
        """Read point `name` on its own request, and its scale-factor register on another, into its
        engineering value. Call after `connect`; a connection the device closed is opened again.

        Raises FieldError naming this node and the point when the profile has no such point or the device
        does not answer, CodecError (naming the point) when the words do not decode.
        """
        point = self.known_points.get(name)
        if point is None:
            known = ", ".join(sorted(self.known_points))
            raise FieldError(
                Facts(
                    ErrorCode.POINT_UNKNOWN,
                    f"{self.profile.key} has no point {name!r}",
                    self.target,
                    points=(name,),
                    extra={"known": known},
                ),
                self.context,
            )
        if not self.link.connected:
            await self.link.ensure_open()
        words = await self._read_point_words(point)
        if point.scale_register is None:
            return PointRead(point, words, decode(point, words))
        sf_point = self.known_points.get(point.scale_register)
        scale_factor = None  # without its register in the map, decode() names what is missing
        if sf_point is not None:
            scale_factor = decode_scale_factor(sf_point, await self._read_point_words(sf_point))
            if scale_factor is None:  # the scale register reads as not implemented: so does the point
                return PointRead(point, words, None)
        return PointRead(point, words, decode(point, words, scale_factor), scale_factor)

    async def _read_point_words(self, point: Point) -> list[int]:
        try:
            return await self.link.read(point.table, point.address, point.count, self.target.unit)
        except FieldError as error:
            raise error.in_context(self.context, (point.name,)) from None

    def _good(self, values: dict[str, Value | None], raw: dict[str, list[int]], now: float) -> Reading:
        self._silent = 0
        self._backoff.reset()
        self._clear_error()
        for name, value in self._identity.items():
            values.setdefault(name, value)
        state_point, alarm_point = self.points.get("state"), self.points.get("alarms")
        state_raw, alarms_raw = values.get("state"), values.get("alarms")
        self._state_label = (
            enum_label(state_point, int(state_raw))
            if state_point is not None and isinstance(state_raw, int | float)
            else None
        )
        if alarm_point is None or not isinstance(alarms_raw, int | float):
            self._alarms, self._alarms_of = (), None
        elif (alarm_point, int(alarms_raw)) != self._alarms_of:  # the labels change with the bits only
            self._alarms_of = (alarm_point, int(alarms_raw))
            self._alarms = active_labels(alarm_point, int(alarms_raw))
        self._good_values, self._good_raw, self._good_at_s = values, raw, now
        if self._fresh_connection:
            self._fresh_connection = False
            self.writes.learn(self.points, values, raw, now)
            self._check_model_fit(values)
        return self._last_good(Quality.GOOD, self.condition, now)

    def _last_good(self, quality: Quality, error: FieldError | None, now: float) -> Reading:
        """The last good values, with their age, as a reading of `quality`."""
        assert self._good_at_s is not None
        return Reading(
            self.node_id,
            quality,
            self._good_values,
            now - self._good_at_s,
            error,
            now,
            self._state_label,
            self._alarms,
            self.context.firmware,
            self.read_only,
        )

    def _check_model_fit(self, values: Mapping[str, Value | None]) -> None:
        """Say once per connection if the fleet model will reject these values (a profile type error)."""
        try:
            node_from_values(self.node_id, {**values, "state": self._state_label})
        except ValueError as error:
            log.error("%s (profile %s)", error, self.profile.key)

    @property
    def _stale_limit_s(self) -> float:
        """How long last good values are carried: on a line, at least until the unit's next turn."""
        if self._lines is not None:
            plan = self._lines.plan(self._line)
            return max(self.options.stale_limit_s, plan.fast_age_s + plan.cycle_s)
        return self.options.stale_limit_s

    async def _connect_in_turn(self, now: float) -> None:
        self.state = SessionState.CONNECTING
        try:
            await self._establish()
        except FieldError as error:
            self._connect_failed(error, now)

    def _between_turns(self, now: float) -> Reading:
        """A unit on a line, waiting for its turn: its last good values, as good as they were, with their
        age (the line plan bounds it)."""
        if self.error is not None or self._good_at_s is None:
            return self._carried(now)
        return self._last_good(Quality.GOOD, self.condition, now)

    def _carried(self, now: float) -> Reading:
        error = self.error or self._not_connected
        if self._good_at_s is not None and now - self._good_at_s <= self._stale_limit_s:
            return self._last_good(Quality.STALE, error, now)
        age = math.inf if self._good_at_s is None else now - self._good_at_s
        return Reading(self.node_id, Quality.FAILED, {}, age, error, now, firmware=self.context.firmware)

    def _request_failed(self, error: FieldError, now: float) -> None:
        self._set_error(error)
        if not error.code.is_connection_fault:
            return  # the device answered (an exception): the connection is fine
        self._silent += 1
        if (
            not self.link.connected
            or error.code in _DROP_AT_ONCE
            or self._silent >= self.options.max_silent_requests
        ):
            self._drop(now)

    # ----------------------------------------------------------------------------------------------
    # writing

    async def write_setpoints(self, setpoints: Mapping[str, float], now: float) -> list[WriteOutcome]:
        """Write the values that changed (beyond their deadband), then the heartbeat if due.

        Never raises: each point's outcome says what happened. A value outside the point's bounds is
        refused before anything is sent.
        """
        return await self.send_writes(self.plan_writes(setpoints, now), now)

    def plan_writes(self, setpoints: Mapping[str, float], now: float) -> WritePlan:
        """What `write_setpoints` decides before it sends anything (never raises): most cycles nothing is
        due, and a fleet's write step then needs no coroutine for this unit (`plan.idle`)."""
        plan = WritePlan()
        for name, value in setpoints.items():
            try:
                decided = self._decide_write(name, value, now)
            except Exception as error:  # contained to this node
                log.exception("node %s: unexpected error while writing %s", self.node_id, name)
                decided = WriteOutcome(name, value, WriteStatus.FAILED, self._internal(error))
            if isinstance(decided, WriteOutcome):
                plan.outcomes.append(decided)
            else:
                plan.sends.append((len(plan.outcomes), decided[0], value, decided[1]))
                plan.outcomes.append(None)
        planned, self._heartbeat_planned = self._heartbeat_planned, None
        due = self._heartbeat_due(now)
        # Due only after this cycle's poll: the next poll plans it into the node's share of the cycle.
        plan.heartbeat = None if planned is False else due
        return plan

    async def send_writes(self, plan: WritePlan, now: float) -> list[WriteOutcome]:
        """Send what `plan_writes` found due; every outcome, in the order of the setpoints, then the
        heartbeat's."""
        outcomes = list(plan.outcomes)
        for slot, point, value, words in plan.sends:
            try:
                outcomes[slot] = await self._send_point(point, value, words, now)
            except Exception as error:  # contained to this node
                log.exception("node %s: unexpected error while writing %s", self.node_id, point.name)
                outcomes[slot] = WriteOutcome(point.name, value, WriteStatus.FAILED, self._internal(error))
        heartbeat = plan.heartbeat
        if heartbeat is not None and plan.sends:
            heartbeat = self._heartbeat_due(now)  # a write that failed just now may have ended it
        done = [outcome for outcome in outcomes if outcome is not None]
        if heartbeat is not None:
            done.append(await self._send_heartbeat(*heartbeat, now))
        return done

    def send_writes_soon(
        self, plan: WritePlan, now: float, done: Callable[[list[WriteOutcome]], None]
    ) -> bool:
        """`send_writes` without a coroutine (no task per unit) when the unit has its connection to itself
        and reads nothing back: True when started, and `done` gets the outcomes once the last write was
        answered (from the loop). False: nothing was done, await `send_writes`. The same requests, in the
        same order, and the same outcomes as `send_writes`."""
        if (
            self.state is not SessionState.READY
            or self._lines is not None
            or self.options.writes.verify_points
            or not self.link.take_turn_now()
        ):
            return False
        self._write_soon(plan, 0, list(plan.outcomes), now, done)
        return True

    def _write_soon(
        self,
        plan: WritePlan,
        index: int,
        outcomes: list[WriteOutcome | None],
        now: float,
        done: Callable[[list[WriteOutcome]], None],
    ) -> None:
        """Send `plan`'s writes from `index` on, one after the other, then its heartbeat, then hand on every
        outcome and give the link back."""
        if index < len(plan.sends):
            slot, point, value, words = plan.sends[index]

            def acknowledged(error: Exception | None) -> None:
                try:
                    failure = self._write_error(point, error)
                    outcomes[slot] = self._point_written(point, value, words, now, failure)
                except Exception as bug:  # contained to this node
                    log.exception("node %s: unexpected error while writing %s", self.node_id, point.name)
                    outcomes[slot] = WriteOutcome(point.name, value, WriteStatus.FAILED, self._internal(bug))
                self._write_soon(plan, index + 1, outcomes, now, done)

            self.link.write_in_turn(point.table, point.address, words, self.target.unit, acknowledged)
            return
        finished = [outcome for outcome in outcomes if outcome is not None]
        heartbeat = plan.heartbeat
        if heartbeat is not None and plan.sends:
            heartbeat = self._heartbeat_due(now)  # a write that failed just now may have ended it

        def finish(last: WriteOutcome | None = None) -> None:
            self.link.give_back_turn()
            done(finished if last is None else [*finished, last])

        if heartbeat is None:
            finish()
            return
        beat, counter = heartbeat

        def beaten(error: Exception | None) -> None:
            """The heartbeat's outcome (its counter refused by the codec, answered, or not), then the link
            goes back, whatever happens here."""
            try:
                failure = error if isinstance(error, CodecError) else self._write_error(beat, error)
                outcome = self._heartbeat_written(beat, counter, now, failure)
            except Exception as bug:  # contained to this node
                log.exception("node %s: unexpected error while writing %s", self.node_id, beat.name)
                outcome = WriteOutcome(beat.name, counter, WriteStatus.FAILED, self._internal(bug))
            finish(outcome)

        try:
            words = encode(beat, counter)
        except CodecError as error:
            beaten(error)
            return
        self.link.write_in_turn(beat.table, beat.address, words, self.target.unit, beaten)

    def _write_error(self, point: Point, error: Exception | None) -> FieldError | None:
        """A write's FieldError in this node's context (None: acknowledged); raises any other exception."""
        if error is None:
            return None
        if isinstance(error, FieldError):
            return error.in_context(self.context, (point.name,))
        raise error

    def _write_refusal(self, code: ErrorCode, detail: str, point: str, **extra: str) -> FieldError:
        return FieldError(
            Facts(code, detail, self.target, points=(point,), writing=True, extra=extra), self.context
        )

    def _decide_write(self, name: str, value: float, now: float) -> WriteOutcome | tuple[Point, list[int]]:
        """The outcome of writing `value` to point `name` when it needs no request, else the point and the
        words to send."""

        def failed(error: FieldError) -> WriteOutcome:
            self._log_write_error(name, error)
            return WriteOutcome(name, value, WriteStatus.FAILED, error)

        if self.state is not SessionState.READY or not self.link.connected:
            return failed(self.error or self._not_connected)
        if self.read_only:
            assert self.condition is not None
            return failed(self.condition)
        point = self.points.get(name)
        if point is None:
            known = ", ".join(sorted(n for n, p in self.points.items() if p.access.writable))
            return failed(
                self._write_refusal(
                    ErrorCode.POINT_UNKNOWN, f"{self.profile.key} has no point {name!r}", name, known=known
                )
            )
        if name in self.writes.disabled:
            return failed(self.writes.disabled[name])
        try:
            check_write(point, value)
            words = self._encode_setpoint(point, value)
        except CodecError as error:
            return failed(self._write_refusal(ErrorCode.WRITE_REJECTED, str(error), name))
        skip = self.writes.decide(point, value, words, now)
        if skip is not None:
            return WriteOutcome(name, value, skip)
        return point, words

    def _encode_setpoint(self, point: Point, value: float) -> list[int]:
        """`encode`, remembered for the last value of each point: the balancer holds a setpoint for many
        cycles (its deadband), so most cycles ask for the words of the value before."""
        scale_factor = self._scale_factor(point)
        last = self._encoded.get(point.name)
        # Not for 0: -0.0 == 0.0, but a float register tells them apart.
        if last is not None and value and last[0] == value and last[1] == scale_factor:
            return last[2]
        words = encode(point, value, scale_factor)
        self._encoded[point.name] = (value, scale_factor, words)
        return words

    async def _send_point(self, point: Point, value: float, words: list[int], now: float) -> WriteOutcome:
        try:
            await self._send_write(point, words)
        except FieldError as error:
            return self._point_written(point, value, words, now, error)
        return self._point_written(point, value, words, now, None)

    def _point_written(
        self, point: Point, value: float, words: list[int], now: float, error: FieldError | None
    ) -> WriteOutcome:
        """The outcome of the write of `value` to `point`: acknowledged (`error` None) or failed."""
        name = point.name
        if error is not None:
            self.writes.failed(point, now)
            if error.code is ErrorCode.ILLEGAL_FUNCTION:
                self.writes.disabled[name] = error
            if error.code.is_connection_fault:
                self._request_failed(error, now)
            self._log_write_error(name, error)
            return WriteOutcome(name, value, WriteStatus.FAILED, error)
        self.writes.written(point, value, words, now)
        if name in self._good_values:
            # The device acknowledged it: show it now rather than after the next slow poll reads it back.
            self._good_values = {**self._good_values, name: value}
            self._good_raw[name] = list(words)
        self._clear_write_error(name)
        return WriteOutcome(name, value, WriteStatus.WRITTEN)

    async def _send_write(self, point: Point, words: Sequence[int]) -> None:
        unit = self.target.unit
        try:
            await self.link.write(point.table, point.address, words, unit)
            if point.name not in self.options.writes.verify_points or not point.access.readable:
                return
            back = await self.link.read(point.table, point.address, point.count, unit)
        except FieldError as error:
            raise error.in_context(self.context, (point.name,)) from None
        if list(back) != list(words):
            raise self._write_refusal(
                ErrorCode.WRITE_NOT_APPLIED,
                f"wrote {list(words)} to {Region(point.table, point.address, point.count).describe()}, "
                f"read back {back}",
                point.name,
            )

    def _scale_factor(self, point: Point) -> int | None:
        if point.scale_register is None:
            return None
        sf_point, sf_words = self.points.get(point.scale_register), self._good_raw.get(point.scale_register)
        if sf_point is None or sf_words is None:
            return None  # encode() then names the missing scale register
        return decode_scale_factor(sf_point, sf_words)

    def _heartbeat_due(self, now: float) -> tuple[Point, int] | None:
        """The heartbeat point and the counter to write now, or None when no heartbeat is due."""
        point = self.points.get("heartbeat")
        if (
            point is None
            or not point.access.writable
            or self.read_only
            or self.state is not SessionState.READY
            or point.type is DataType.STR
            or self._silent  # the last request got no answer: one timeout per cycle is enough
        ):
            return None
        counter = self.writes.next_heartbeat(point, now)
        return None if counter is None else (point, counter)

    async def _send_heartbeat(self, point: Point, counter: int, now: float) -> WriteOutcome:
        try:
            await self._send_write(point, encode(point, counter))
        except (FieldError, CodecError) as error:
            return self._heartbeat_written(point, counter, now, error)
        return self._heartbeat_written(point, counter, now, None)

    def _heartbeat_written(
        self, point: Point, counter: int, now: float, error: FieldError | CodecError | None
    ) -> WriteOutcome:
        """The outcome of the heartbeat write of `counter`: acknowledged (`error` None) or failed."""
        if error is None:
            self.writes.heartbeat_sent(counter, now)
            self._clear_write_error(point.name)
            return WriteOutcome(point.name, counter, WriteStatus.WRITTEN)
        self.writes.heartbeat_sent(None, now)
        field_error = (
            error
            if isinstance(error, FieldError)
            else self._write_refusal(ErrorCode.WRITE_REJECTED, str(error), point.name)
        )
        self._log_write_error(point.name, field_error)
        if field_error.code.is_connection_fault:
            self._request_failed(field_error, now)
        return WriteOutcome(point.name, counter, WriteStatus.FAILED, field_error)

    # ----------------------------------------------------------------------------------------------
    # logging once per change of state, and a few lines a minute per node when its state flaps

    def _set_error(self, error: FieldError) -> None:
        if self.error is None or self.error.state_key != error.state_key:
            self._changes_log.log(f"node {self.node_id}", logging.WARNING, str(error))
        self.error = error

    def _clear_error(self) -> None:
        if self.error is not None:
            message = f"node {self.node_id}: polling again (after {self.error.code})"
            self._changes_log.log(f"node {self.node_id}", logging.INFO, message)
            self.error = None

    def _set_condition(self, condition: FieldError | None) -> None:
        if condition is not None and (
            self.condition is None or self.condition.state_key != condition.state_key
        ):
            self._changes_log.log(f"node {self.node_id}", logging.WARNING, str(condition))
        self.condition = condition

    def _log_write_error(self, point: str, error: FieldError) -> None:
        if self._write_errors.get(point) != error.state_key:
            self._write_errors[point] = error.state_key
            if error is not self.error:  # a failed connection was logged as such already
                self._changes_log.log(f"node {self.node_id}", logging.WARNING, str(error))

    def _clear_write_error(self, point: str) -> None:
        if self._write_errors.pop(point, None) is not None:
            message = f"node {self.node_id}: writes to {point} work again"
            self._changes_log.log(f"node {self.node_id}", logging.INFO, message)

    def _internal(self, error: Exception) -> FieldError:
        return FieldError(
            Facts(ErrorCode.INTERNAL, f"{type(error).__name__}: {error}", self.target), self.context
        )
