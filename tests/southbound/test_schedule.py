"""A slow device's poll stays within its share of the cycle: its slow blocks are spread over polls."""

from __future__ import annotations

import time

import pytest

from gateway.fleet import Quality
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Table
from gateway.profiles.plan import ReadBlock
from gateway.southbound.schedule import PollSchedule
from tests.conftest import StartFleet
from tests.southbound.helpers import run, session_for

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

FAST = ReadBlock(Table.INPUT, 0, 24, ())
SLOW = tuple(ReadBlock(Table.HOLDING, start, 4, ()) for start in (0, 10, 20))
FULL = (FAST, *SLOW)


def blocks_per_poll(request_s: float | None, polls: int = 20) -> list[tuple[ReadBlock, ...]]:
    schedule = PollSchedule((FAST,), FULL, slow_every=10, budget_s=0.08)
    return [schedule.next(request_s).blocks for _ in range(polls)]


def test_a_quick_device_reads_everything_every_tenth_poll() -> None:
    assert blocks_per_poll(0.002) == ([FULL] + [(FAST,)] * 9) * 2


def test_a_device_answering_in_30_ms_gets_one_slow_block_beside_the_fast_one() -> None:
    polls = blocks_per_poll(0.03)
    assert polls[0] == FULL  # the first poll of a connection reads every point
    assert polls[10:14] == [(FAST, SLOW[0]), (FAST, SLOW[1]), (FAST, SLOW[2]), (FAST,)]
    assert all(len(blocks) * 0.03 <= 0.08 for blocks in polls[1:])


def test_a_device_answering_in_50_ms_reads_one_block_per_poll_and_the_fast_one_every_other() -> None:
    polls = blocks_per_poll(0.05)
    assert polls[10:17] == [(SLOW[0],), (FAST,), (SLOW[1],), (FAST,), (SLOW[2],), (FAST,), (FAST,)]
    assert all(len(blocks) == 1 for blocks in polls[1:])


def test_a_slow_device_never_costs_more_than_one_request_per_poll_and_every_point_is_read(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1)
    # 150 ms per answer with a 250 ms timeout: like 50 ms with 80 ms, with room for a loaded machine.
    session = session_for(fleet.endpoint("pack-01"), profile_library.get("microstore/mp2000"), timeout_s=0.25)

    async def scenario() -> tuple[list[int], list[object]]:
        await session.connect(time.monotonic())
        await session.poll(time.monotonic())  # the first poll reads every point, quickly
        fleet.set_faults("pack-01", delay_ms=150)
        fleet.update_state("pack-01", backup_reserve_pct=37.0)  # a slow point (a read-back)
        requests: list[int] = []
        reserves: list[object] = []
        for _ in range(20):  # cycles as the engine runs them: poll, then write (here: the heartbeat)
            sent = session.link.requests
            reading = await session.poll(time.monotonic())
            await session.write_setpoints({}, time.monotonic())
            assert reading.quality is Quality.GOOD, reading.error
            requests.append(session.link.requests - sent)
            reserves.append(reading.values["backup_reserve_pct"])
        await session.close()
        return requests, reserves

    requests, reserves = run(scenario())
    # One request per cycle: it was 4 reads in every 10th poll (600 ms here, 200 ms at 50 ms per answer), and
    # the heartbeat on top of a read once a second.
    assert max(requests[1:]) == 1, requests
    assert reserves[-1] == 37.0, reserves  # the slow points are still read


def test_a_write_due_takes_the_share_of_the_reads_but_never_twice_in_a_row() -> None:
    schedule = PollSchedule((FAST,), FULL, slow_every=10, budget_s=0.08)
    schedule.next(0.05)  # the first poll: everything
    assert schedule.next(0.05, writes=1).blocks == ()  # 50 ms read + 50 ms heartbeat would not fit
    assert schedule.next(0.05, writes=1).blocks == (FAST,)  # the heartbeat was not written: read anyway
    assert schedule.next(0.002, writes=1).blocks == (FAST,)  # a quick device reads and writes


def test_without_a_write_the_fast_blocks_are_read_even_when_they_alone_exceed_the_budget() -> None:
    schedule = PollSchedule((FAST,), (FAST,), slow_every=10, budget_s=0.08)
    schedule.next(0.1)
    assert [schedule.next(0.1).blocks for _ in range(3)] == [(FAST,)] * 3
    assert schedule.next(0.05, writes=1).blocks == ()  # a device with fast blocks only: the heartbeat too
