"""The line planner: frame lengths, character times, the schedule, and the turns it gives the units."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Table
from gateway.profiles.plan import ReadBlock
from gateway.southbound.errors import Target
from gateway.southbound.line import (
    Exchanges,
    LineMember,
    UnitLoad,
    plan_line,
    plan_lines,
    read_chars,
    unit_load,
    write_chars,
)
from gateway.southbound.lines import LineRegistry
from gateway.southbound.link import ModbusLink
from gateway.southbound.transport import SerialSettings, Transport, TransportKind

BAUDS = st.sampled_from([1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200])
SETTINGS = st.builds(SerialSettings, BAUDS, st.sampled_from(["N", "E", "O"]), st.sampled_from([1, 2]))
FRAMES = st.lists(st.tuples(st.integers(4, 256), st.integers(4, 256)), min_size=1, max_size=8)


def test_bits_per_character_and_silence_follow_the_serial_line_spec() -> None:
    assert SerialSettings(9600, "N", 1).bits_per_char == 10
    assert SerialSettings(9600, "E", 1).bits_per_char == 11
    assert SerialSettings(9600, "N", 2).bits_per_char == 11
    assert SerialSettings(9600, "O", 2).bits_per_char == 12
    assert SerialSettings(9600).silence_s == pytest.approx(3.5 * 10 / 9600)
    assert SerialSettings(115200).silence_s == pytest.approx(0.00175)  # fixed above 19200 baud


def test_rtu_frame_lengths() -> None:
    assert read_chars(ReadBlock(Table.HOLDING, 0, 20, ())) == (8, 45)
    assert read_chars(ReadBlock(Table.COIL, 0, 9, ())) == (8, 7)
    assert write_chars(1) == (8, 8)
    assert write_chars(2) == (13, 8)


@given(SETTINGS, FRAMES, st.floats(0, 0.05), st.floats(0, 0.05))
def test_an_exchange_never_takes_less_than_its_frames_and_silences(
    serial: SerialSettings, frames: list[tuple[int, int]], turnaround_s: float, gap_s: float
) -> None:
    exchanges = Exchanges(tuple(frames))
    bits = sum(request + answer for request, answer in frames) * serial.bits_per_char
    time_s = exchanges.time_s(serial, turnaround_s, gap_s)
    assert exchanges.wire_s(serial) == pytest.approx(bits / serial.baud)
    assert time_s >= bits / serial.baud + 2 * len(frames) * serial.silence_s - 1e-12
    assert time_s >= exchanges.wire_s(serial) + len(frames) * (turnaround_s + gap_s) - 1e-12


@given(SETTINGS, st.lists(FRAMES, min_size=1, max_size=30), st.sampled_from([0.05, 0.1, 0.25, 1.0]))
def test_the_plan_never_promises_less_than_the_physics_and_gives_every_unit_a_turn(
    serial: SerialSettings, fast_frames: list[list[tuple[int, int]]], cycle_s: float
) -> None:
    loads = [
        UnitLoad(f"u{i}", Exchanges(tuple(f)), Exchanges(tuple(f[:1])), Exchanges(((13, 8),)), 0.0)
        for i, f in enumerate(fast_frames)
    ]
    plan = plan_line("line", serial, loads, cycle_s)
    assert plan.full_poll_s >= plan.wire_minimum_s
    # One round of fast turns needs at least every unit's fast frames on the wire.
    fast_wire_s = sum(load.fast.wire_s(serial) for load in loads)
    assert plan.fast_age_s >= min(fast_wire_s, plan.fast_poll_s) - 1e-9
    assert plan.fast_age_s >= cycle_s
    assert 1 <= plan.units_per_cycle <= len(loads)
    assert plan.cycles_per_round * plan.units_per_cycle >= len(loads)


def _members(profile_library: ProfileLibrary, count: int, baud: int) -> list[LineMember]:
    profile = profile_library.get("microstore/mp2000")
    transport = Transport(TransportKind.SERIAL, SerialSettings(baud))
    return [
        LineMember(f"p{i:02d}", Target("/dev/ttyUSB0", 0, i, transport), profile) for i in range(1, count + 1)
    ]


def test_twenty_mp2000_units_at_9600_baud_are_polled_round_robin(profile_library: ProfileLibrary) -> None:
    (plan,) = plan_lines(_members(profile_library, 20, 9600), 0.1)
    load = unit_load("p01", profile_library.get("microstore/mp2000"))
    # The fast block is one read of 24 input registers from 30001: 8 + 53 characters, 64 ms at 9600 baud.
    assert load.fast.frames == ((8, 53),)
    # A round of 20 cycles, and two turns a round that also read a unit's slow blocks and overrun their cycle.
    assert plan.round_robin and plan.units_per_cycle == 1 and plan.slow_turns_per_round == 2
    assert plan.fast_age_s == pytest.approx(2.0 + 2 * plan.slow_overrun_s) and plan.slow_overrun_s > 0
    assert not plan.meets(0.4)
    assert "round-robin: 1 of 20 units a cycle" in plan.describe()
    (fast_line,) = plan_lines(_members(profile_library, 20, 115200), 0.1)
    assert fast_line.units_per_cycle > 1 and fast_line.fast_age_s < plan.fast_age_s


def test_tcp_units_share_no_line(profile_library: ProfileLibrary) -> None:
    profile = profile_library.get("microstore/mp2000")
    assert plan_lines([LineMember("a", Target("10.0.0.1", 502, 1), profile)], 0.1) == []


def test_turns_go_round_robin_and_units_share_one_link(profile_library: ProfileLibrary) -> None:
    registry = LineRegistry(0.1)
    members = _members(profile_library, 5, 9600)
    made: list[ModbusLink] = []

    def new_link() -> ModbusLink:
        made.append(ModbusLink(members[0].target, timeout_s=0.1, connect_timeout_s=0.1))
        return made[-1]

    links = {registry.join(m.node_id, m.target, m.profile, new_link) for m in members}
    assert len(made) == 1 and links == {made[0]} and made[0].users == 5
    turns = [
        [m.node_id for m in members if registry.my_turn("/dev/ttyUSB0", m.node_id, cycle * 0.1)]
        for cycle in range(6)
    ]
    assert turns == [["p01"], ["p02"], ["p03"], ["p04"], ["p05"], ["p01"]]
    plan = registry.plan("/dev/ttyUSB0")
    assert math.isclose(plan.fast_age_s, 0.5 + plan.slow_overrun_s)
