"""One RS-485 line is one shared medium: how long its polls take, and which units poll in which cycle.

Every unit on a line (one serial port, or one converter host:port) shares one request at a time. A
request-answer exchange takes its frames' characters on the wire (start bit, 8 data bits, the parity bit if
any, the stop bits: 10 or 11 bits each), the unit's turnaround (at least the 3.5-character silence that ends
the request), and the silence after the answer before the next request (or the profile's
`min_request_gap_ms`, if longer). RTU frames: a read request is 8 bytes (unit, function, address, quantity,
CRC), its answer 5 + the data bytes; a write of n registers 9 + 2n, its answer 8.

`plan_line` adds those up per unit (its fast blocks every turn, its slow blocks every `slow_every`-th turn,
its setpoint writes at up to `WRITES_PER_UNIT_PER_MIN`) and chooses the schedule: every unit every cycle
when the line has the time, else round-robin, `units_per_cycle` units a cycle, so that each unit's fast
points (SOC, power, limits) are at most `fast_age_s` old: a round of cycles, plus what the turns that
carry slow blocks run past their cycle (each unit's slow turns are staggered by its place on the line, so a
round carries few). A unit that does not answer costs its own slot (its timeout), never another's.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.profiles.model import Profile
from gateway.profiles.plan import ReadBlock
from gateway.southbound.errors import Target
from gateway.southbound.identify import common_points
from gateway.southbound.schedule import poll_plan
from gateway.southbound.transport import SerialSettings

READ_REQUEST_CHARS = 8  # unit id, function, address (2), quantity (2), CRC (2)
ANSWER_OVERHEAD_CHARS = 5  # unit id, function, byte count, CRC (2)
WRITE_ANSWER_CHARS = 8  # unit id, function, address (2), quantity or value (2), CRC (2)
# Time a unit takes from the end of a request to its answer, beyond the 3.5 characters of silence that end
# the request: BMS firmware typically answers within a few milliseconds. The planner assumes this unless
# told better; the link measures each unit's real answer time.
DEFAULT_TURNAROUND_S = 0.005
SETPOINT_WORDS = 2  # a setpoint point's registers when the profile has none (32-bit value)
# Setpoint writes the line budgets for: the balancer's deadbands and ramp keep a steady fleet well below
# this (writes are counted per node, see `socgw status`); a cycle that carries more writes runs longer.
WRITES_PER_UNIT_PER_MIN = 6.0


def read_chars(block: ReadBlock) -> tuple[int, int]:
    """(request, answer) characters of one RTU read of `block`."""
    data = (block.count + 7) // 8 if block.table.is_bit_table else 2 * block.count
    return READ_REQUEST_CHARS, ANSWER_OVERHEAD_CHARS + data


def write_chars(words: int) -> tuple[int, int]:
    """(request, answer) characters of one RTU write of `words` registers (function 06 or 16)."""
    return (8 if words == 1 else 9 + 2 * words), WRITE_ANSWER_CHARS


@dataclass(frozen=True)
class Exchanges:
    """Request-answer exchanges as their character counts, (request, answer) each."""

    frames: tuple[tuple[int, int], ...]

    def wire_s(self, serial: SerialSettings) -> float:
        """The frames alone on the wire: the physical minimum, with no silence and no turnaround."""
        return sum(request + answer for request, answer in self.frames) * serial.char_s

    def time_s(self, serial: SerialSettings, turnaround_s: float, min_gap_s: float) -> float:
        """Each exchange: its frames, the unit's turnaround (at least the silence that ends the request),
        and the silence (or the profile's gap, if longer) before the next request."""
        per_exchange = max(turnaround_s, serial.silence_s) + max(min_gap_s, serial.silence_s)
        return self.wire_s(serial) + len(self.frames) * per_exchange


@dataclass(frozen=True)
class UnitLoad:
    """What one unit asks of its line."""

    node_id: str
    fast: Exchanges  # every turn
    slow: Exchanges  # every `slow_every`-th turn
    write: Exchanges  # a setpoint write
    min_gap_s: float  # the profile's minimum gap between two requests


def unit_load(node_id: str, profile: Profile) -> UnitLoad:
    """The load of a unit read with `profile`: of its variants, the one with the most to read."""
    maps = [variant.points for variant in profile.variants] or [common_points(profile)]
    plans = [poll_plan(profile, points) for points in maps]
    plan = max(plans, key=lambda p: sum(sum(read_chars(b)) for b in p.full))
    setpoint = next((m["setpoint_w"] for m in maps if "setpoint_w" in m), None)
    words = setpoint.count if setpoint is not None else SETPOINT_WORDS
    return UnitLoad(
        node_id,
        Exchanges(tuple(read_chars(b) for b in plan.fast)),
        Exchanges(tuple(read_chars(b) for b in plan.slow)),
        Exchanges((write_chars(words),)),
        profile.comms.min_request_gap_ms / 1000.0,
    )


@dataclass(frozen=True)
class LinePlan:
    """The computed timing and the schedule of one line."""

    line: str
    serial: SerialSettings
    units: tuple[str, ...]
    cycle_s: float
    fast_poll_s: float  # every unit's fast blocks once, back to back
    full_poll_s: float  # every unit's every block once
    wire_minimum_s: float  # the frames of `full_poll_s` alone: what no schedule can go below
    units_per_cycle: int  # units whose fast blocks are read in one cycle (round-robin)
    cycles_per_round: int  # cycles until every unit has had its turn
    slow_every: int  # a unit's slow blocks come with every Nth of its turns
    slow_overrun_s: float = 0.0  # how much longer than the cycle a turn with slow blocks takes, at most

    @property
    def slow_turns_per_round(self) -> int:
        """Turns of a round that carry a unit's slow blocks (the units' slow turns are staggered)."""
        return math.ceil(len(self.units) / self.slow_every) if self.slow_overrun_s > 0 else 0

    @property
    def round_robin(self) -> bool:
        return self.units_per_cycle < len(self.units)

    @property
    def fast_age_s(self) -> float:
        """Bound on the age of a unit's fast points: a round of cycles, the cycles stretched by the slow
        blocks they carry included."""
        return self.cycles_per_round * self.cycle_s + self.slow_turns_per_round * self.slow_overrun_s

    @property
    def slow_age_s(self) -> float:
        return self.slow_every * self.fast_age_s

    def meets(self, max_age_s: float) -> bool:
        return self.fast_age_s <= max_age_s

    def describe(self) -> str:
        units = len(self.units)
        if self.round_robin:
            schedule = (
                f"round-robin: {self.units_per_cycle} of {units} units a cycle, each every "
                f"{self.cycles_per_round} cycles"
            )
        else:
            schedule = f"every unit every cycle ({units} units)"
        return (
            f"line {self.line} ({self.serial}, {units} units): full poll {self.full_poll_s * 1000:.0f} ms "
            f"(frames alone {self.wire_minimum_s * 1000:.0f} ms), fast points of all units "
            f"{self.fast_poll_s * 1000:.0f} ms; {schedule}; slow points every {self.slow_every} turns; "
            f"telemetry age <= {self.fast_age_s * 1000:.0f} ms (fast), {self.slow_age_s:.1f} s (slow)"
        )


@dataclass(frozen=True)
class LineMember:
    """A unit on a line, for planning."""

    node_id: str
    target: Target
    profile: Profile


def plan_lines(members: Sequence[LineMember], cycle_s: float, *, slow_every: int = 10) -> list[LinePlan]:
    """A plan per line among `members` (Modbus TCP units share no line and get none), in order of first
    appearance."""
    by_line: dict[str, list[LineMember]] = {}
    for member in members:
        if member.target.line is not None:
            by_line.setdefault(member.target.line, []).append(member)
    return [
        plan_line(
            line,
            group[0].target.transport.serial,
            [unit_load(m.node_id, m.profile) for m in group],
            cycle_s,
            slow_every=slow_every,
        )
        for line, group in by_line.items()
    ]


def plan_line(
    line: str,
    serial: SerialSettings,
    loads: Sequence[UnitLoad],
    cycle_s: float,
    *,
    slow_every: int = 10,
    turnaround_s: float = DEFAULT_TURNAROUND_S,
) -> LinePlan:
    """The schedule of `loads` sharing `line`: as many units' fast polls a cycle as fit beside the writes'
    share (the slow blocks' share spread over `slow_every` turns), at least one."""

    def time_s(exchanges: Exchanges, load: UnitLoad) -> float:
        """`exchanges` of `load` on this line."""
        return exchanges.time_s(serial, turnaround_s, load.min_gap_s)

    count = len(loads)
    fast_s = max((time_s(load.fast, load) for load in loads), default=0.0)
    slow_s = max((time_s(load.slow, load) for load in loads), default=0.0)
    write_s = max((time_s(load.write, load) for load in loads), default=0.0)
    writes_per_cycle = count * WRITES_PER_UNIT_PER_MIN / 60.0 * cycle_s
    budget_s = cycle_s - min(1.0, writes_per_cycle) * write_s  # the writes' share of each cycle
    with_slow = _fitting(budget_s, fast_s + slow_s / slow_every, count)
    alone = _fitting(budget_s, fast_s, count)
    if with_slow >= 1:  # the slow blocks ride along, a share each turn
        units_per_cycle, cycles_per_round = with_slow, math.ceil(count / with_slow)
    elif alone >= 1:  # the slow blocks take a turn of their own, every `slow_every`-th
        slow_cycles = math.ceil(slow_s / budget_s) if slow_s else 0
        units_per_cycle = alone
        cycles_per_round = math.ceil(count * (1 + slow_cycles / slow_every) / alone)
    else:  # one unit's fast blocks take more than a cycle: one unit at a time, over several cycles
        units_per_cycle = min(count, 1)
        cycles_per_round = count * math.ceil((fast_s + write_s) / cycle_s)
    # A turn that reads a unit's slow blocks too may run past its cycle (the link serves it whole).
    slow_overrun_s = max(0.0, units_per_cycle * fast_s + slow_s + write_s - cycle_s)
    fast_all = sum(time_s(load.fast, load) for load in loads)
    slow_all = sum(time_s(load.slow, load) for load in loads)
    wire = sum(load.fast.wire_s(serial) + load.slow.wire_s(serial) for load in loads)
    return LinePlan(
        line,
        serial,
        tuple(load.node_id for load in loads),
        cycle_s,
        fast_poll_s=fast_all,
        full_poll_s=fast_all + slow_all,
        wire_minimum_s=wire,
        units_per_cycle=units_per_cycle,
        cycles_per_round=max(1, cycles_per_round),
        slow_every=slow_every,
        slow_overrun_s=slow_overrun_s,
    )


def _fitting(budget_s: float, turn_s: float, count: int) -> int:
    """How many turns of `turn_s` fit in `budget_s`, at most `count`."""
    if turn_s <= 0:
        return count
    return max(0, min(count, math.floor(budget_s / turn_s)))
