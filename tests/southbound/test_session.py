"""Sessions against simulated packs: identification, polling, idempotent writes, isolation, resources."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from gateway.fleet import Quality
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Access, Version
from gateway.sim.faults import ExceptionCode, ExceptionRule, Faults
from gateway.sim.scenario import Scenario, make_pack
from gateway.southbound.errors import ErrorCode, FieldError
from gateway.southbound.poller import close_all, connect_all, poll_all, write_all
from gateway.southbound.reading import PointRead, Reading
from gateway.southbound.session import ModbusSession, SessionState
from gateway.southbound.writer import WritePolicy, WriteStatus
from tests.conftest import StartFleet
from tests.southbound.helpers import (
    TEST_TIMEOUT_S,
    WRITE_PATHS,
    open_fds,
    run,
    session_for,
    with_point,
    write_by,
)

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"
SUNSPEC = "sunspec/battery-802"


@pytest.mark.parametrize(("firmware", "address"), [(Version(1, 2), 200), (Version(2, 1), 300)])
def test_the_firmware_picks_the_variant(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, firmware: Version, address: int
) -> None:
    rack = profile_library.get("rackcell/rbms-x")
    fleet = start_sim_fleet(Scenario((make_pack("rack-01", rack, index=0, firmware=firmware, soc_pct=62.0),)))
    session = session_for(fleet.endpoint("rack-01"), rack)

    async def scenario() -> Reading:
        await session.connect(time.monotonic())
        reading = await session.poll(time.monotonic())
        await session.close()
        return reading

    reading = run(scenario())
    assert reading.quality is Quality.GOOD and reading.error is None and not reading.read_only
    assert session.points["setpoint_w"].address == address
    assert reading.values["soc_pct"] == pytest.approx(62.0, abs=1.0)
    assert reading.firmware is not None and reading.firmware.startswith(str(firmware))
    node = reading.to_node_state()
    assert node.soc_pct == reading.values["soc_pct"] and node.state is not None


def test_the_socket_has_nodelay_and_reads_are_decoded_through_the_profile(
    sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    session = session_for(sim_fleet.endpoint("pack-02"), profile_library.get(MP2000))

    async def scenario() -> tuple[int, Reading]:
        await session.connect(time.monotonic())
        client = session.link._client
        assert client is not None
        transport = client.ctx.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        reading = await session.poll(time.monotonic())
        await session.close()
        return nodelay, reading

    nodelay, reading = run(scenario())
    assert nodelay
    assert reading.values["soc_pct"] == pytest.approx(65.0)
    assert reading.values["capacity_wh"] == pytest.approx(2048.0)
    assert reading.values["serial"] == "SIM00002"  # identification registers ride along
    assert reading.state == "idle" and reading.alarms == ()


def test_writes_are_bounds_checked_idempotent_counted_and_verified(
    sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    endpoint = sim_fleet.endpoint("pack-01")
    session = session_for(
        endpoint,
        profile_library.get(MP2000),
        writes=WritePolicy(heartbeat_interval_s=None, verify_points=frozenset({"setpoint_w"})),
    )

    def requests() -> int:
        return int(sim_fleet.request_count("pack-01"))

    async def scenario() -> dict[str, Any]:
        await session.connect(time.monotonic())
        await session.poll(time.monotonic())
        seen: dict[str, Any] = {}
        before = requests()
        seen["too big"] = await session.write_setpoints({"setpoint_w": 5000.0}, time.monotonic())
        seen["sent for too big"] = requests() - before
        seen["first"] = await session.write_setpoints({"setpoint_w": 400.0}, time.monotonic())
        before = requests()
        seen["again"] = await session.write_setpoints({"setpoint_w": 400.0}, time.monotonic())
        seen["inside deadband"] = await session.write_setpoints({"setpoint_w": 403.0}, time.monotonic())
        seen["sent for repeats"] = requests() - before
        seen["changed"] = await session.write_setpoints({"setpoint_w": -300.0}, time.monotonic())
        seen["reading"] = await session.poll(time.monotonic())
        await session.close()
        return seen

    seen = run(scenario())
    rejected = seen["too big"][0]
    assert rejected.status is WriteStatus.FAILED and rejected.error.code is ErrorCode.WRITE_REJECTED
    assert "outside its write bounds -1200.0..1200.0" in str(rejected.error) and "nothing was sent" in str(
        rejected.error
    )
    assert seen["sent for too big"] == 0
    assert seen["first"][0].status is WriteStatus.WRITTEN
    assert seen["again"][0].status is WriteStatus.UNCHANGED
    assert seen["inside deadband"][0].status is WriteStatus.UNCHANGED
    assert seen["sent for repeats"] == 0
    assert seen["changed"][0].status is WriteStatus.WRITTEN
    assert session.writes.writes_by_point == {"setpoint_w": 2}
    assert seen["reading"].values["setpoint_w"] == pytest.approx(-300.0)
    assert sim_fleet.snapshot("pack-01").state.setpoint_w == pytest.approx(-300.0)


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_the_heartbeat_counts_up_on_the_device(
    sim_fleet: Any, profile_library: ProfileLibrary, path: str
) -> None:
    session = session_for(
        sim_fleet.endpoint("pack-03"),
        profile_library.get(MP2000),
        writes=WritePolicy(heartbeat_interval_s=1.0),
    )

    async def scenario() -> list[int]:
        now = time.monotonic()
        await session.connect(now)
        await session.poll(now)
        counters = []
        for step in range(3):
            await write_by(path, session, {}, now + step)  # the interval is paced on the caller's clock
            await write_by(path, session, {}, now + step + 0.5)  # not due: nothing written
            counters.append(sim_fleet.snapshot("pack-03").state.heartbeat)
        await session.close()
        return counters

    assert run(scenario()) == [1, 2, 3]
    assert session.writes.heartbeats == 3


def test_a_disconnected_unit_never_aborts_the_others(sim_fleet: Any, profile_library: ProfileLibrary) -> None:
    profile = profile_library.get(MP2000)
    sessions = [session_for(endpoint, profile) for endpoint in sim_fleet.endpoints]
    dead = ModbusSession("dead", "127.0.0.1", 1, 1, profile)  # nothing listens on port 1

    async def scenario() -> list[Reading]:
        failures = await connect_all([*sessions, dead], time.monotonic())
        assert set(failures) == {"dead"}
        readings = await poll_all([dead, *sessions], time.monotonic())
        outcomes = await write_all([dead, *sessions], {"dead": {"setpoint_w": 1.0}}, time.monotonic())
        assert outcomes["dead"][0].error is not None
        await close_all([*sessions, dead])
        return readings

    readings = run(scenario())
    assert readings[0].quality is Quality.FAILED and readings[0].error_code is ErrorCode.CONN_REFUSED
    assert [r.quality for r in readings[1:]] == [Quality.GOOD] * len(sessions)


def test_a_fleet_polls_without_a_task_per_unit_and_each_reading_arrives_in_order(
    sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    profile = profile_library.get(MP2000)
    sessions = [session_for(endpoint, profile) for endpoint in sim_fleet.endpoints]

    async def scenario() -> tuple[int, list[int], list[tuple[int, str]], list[Reading]]:
        await connect_all(sessions, time.monotonic())
        tasks_before = len(asyncio.all_tasks())
        tasks_seen: list[int] = []
        arrived: list[tuple[int, str]] = []

        def each(index: int, reading: Reading) -> None:
            tasks_seen.append(len(asyncio.all_tasks()))
            arrived.append((index, reading.node_id))

        readings = await poll_all(sessions, time.monotonic(), each)
        await close_all(sessions)
        return tasks_before, tasks_seen, arrived, readings

    tasks_before, tasks_seen, arrived, readings = run(scenario())
    assert tasks_seen == [tasks_before] * len(sessions)  # no task was started for any unit's poll
    assert sorted(arrived) == [(i, s.node_id) for i, s in enumerate(sessions)]
    assert [r.node_id for r in readings] == [s.node_id for s in sessions]
    assert [r.quality for r in readings] == [Quality.GOOD] * len(sessions)


def test_a_poll_waits_for_a_write_in_progress_on_its_connection(
    sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    session = session_for(sim_fleet.endpoint("pack-01"), profile_library.get(MP2000))

    async def scenario() -> tuple[Reading, Any, int]:
        await session.connect(time.monotonic())
        await session.poll(time.monotonic())
        requests = session.link.requests
        now = time.monotonic()
        writing = asyncio.ensure_future(session.write_setpoints({"setpoint_w": -300.0}, now))
        await asyncio.sleep(0)  # the write holds the link, its answer not in yet
        assert not session.link.take_turn_now()
        reading = await session.poll(now)  # not the coroutine-free path: it waits its turn
        outcomes = await writing
        await session.close()
        return reading, outcomes, session.link.requests - requests

    reading, outcomes, requests = run(scenario())
    assert reading.quality is Quality.GOOD
    assert [o.status for o in outcomes if o.point == "setpoint_w"] == [WriteStatus.WRITTEN]
    assert requests >= 2  # the write and the poll's read, one after the other on one connection


def test_a_connection_closed_under_a_poll_ends_it_and_frees_the_link(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1)
    session = session_for(fleet.endpoint("pack-01"), profile_library.get(MP2000))

    async def scenario() -> tuple[Reading, Reading]:
        await session.connect(time.monotonic())
        await session.poll(time.monotonic())
        fleet.set_faults("pack-01", silent=True)
        polling = asyncio.ensure_future(session.poll(time.monotonic()))
        await asyncio.sleep(0.01)  # its request is out, no answer will come
        session.link.close()
        reading = await asyncio.wait_for(polling, TEST_TIMEOUT_S / 2)  # at once, not at the timeout
        fleet.set_faults("pack-01", silent=False)
        await asyncio.wait_for(session.connect(time.monotonic()), 2.0)  # the link's turn is free again
        again = await asyncio.wait_for(session.poll(time.monotonic()), 2.0)
        await session.close()
        return reading, again

    reading, again = run(scenario())
    assert reading.quality is not Quality.GOOD and reading.error_code is ErrorCode.CONN_RESET
    assert again.quality is Quality.GOOD


def test_stale_values_age_and_then_fail(sim_fleet: Any, profile_library: ProfileLibrary) -> None:
    session = session_for(sim_fleet.endpoint("pack-01"), profile_library.get(MP2000), stale_limit_s=2.0)

    async def scenario() -> list[Reading]:
        start = time.monotonic()
        await session.connect(start)
        good = await session.poll(start)
        sim_fleet.set_faults("pack-01", exceptions=(ExceptionRule(ExceptionCode.SERVER_DEVICE_FAILURE),))
        stale = await session.poll(start + 1.5)
        failed = await session.poll(start + 2.5)
        await session.close()
        return [good, stale, failed]

    good, stale, failed = run(scenario())
    assert good.quality is Quality.GOOD and good.age_s == 0
    assert stale.quality is Quality.STALE and stale.age_s == pytest.approx(1.5)
    assert stale.values["soc_pct"] == good.values["soc_pct"]
    assert failed.quality is Quality.FAILED and failed.values == {}
    assert failed.error_code is ErrorCode.DEVICE_FAILURE


def test_a_unit_that_comes_back_is_reconnected_in_the_background(
    sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    session = session_for(
        sim_fleet.endpoint("pack-01"), profile_library.get(MP2000), backoff_base_s=0.01, backoff_cap_s=0.05
    )

    async def scenario() -> list[Reading]:
        await session.connect(time.monotonic())
        sim_fleet.set_faults("pack-01", drop_probability=1.0, refuse_connections=True)
        readings = [await session.poll(time.monotonic())]
        sim_fleet.clear_faults("pack-01")
        for _ in range(200):  # bounded: ~2 s
            readings.append(await session.poll(time.monotonic()))
            if readings[-1].quality is Quality.GOOD:
                break
            await asyncio.sleep(0.01)
        await session.close()
        return readings

    readings = run(scenario())
    assert readings[0].error_code is ErrorCode.CONN_RESET
    assert readings[-1].quality is Quality.GOOD and readings[-1].error is None
    assert session.connects == 2


def test_faulted_units_do_not_slow_the_healthy_ones_down(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    """10 % of 50 units faulted: the healthy units are good in every cycle, as without faults."""
    profile = profile_library.get(MP2000)
    locked = with_point(profile, "setpoint_w", access=Access.READ)
    faults = {
        "pack-05": Faults(refuse_connections=True),
        "pack-15": Faults(delay_ms=TEST_TIMEOUT_S * 1000 + 200),
        "pack-25": Faults(wrong_unit_id=9),
        "pack-35": Faults(exceptions=(ExceptionRule(ExceptionCode.GATEWAY_TARGET_NO_RESPONSE),)),
    }
    packs = tuple(
        make_pack(
            f"pack-{i:02d}",
            locked if i == 45 else profile,
            index=i,
            soc_pct=20.0 + i,
            faults=faults.get(f"pack-{i:02d}", Faults()),
        )
        for i in range(1, 51)
    )
    fleet = start_sim_fleet(Scenario(packs))
    endpoints = fleet.endpoints
    faulty = {*faults, "pack-45"}
    expected = {
        "pack-05": ErrorCode.CONN_REFUSED,
        "pack-15": ErrorCode.TIMEOUT,
        "pack-25": ErrorCode.UNIT_MISMATCH,
        "pack-35": ErrorCode.GATEWAY_TARGET,
    }
    cycles = 8

    async def cycle_run(faulted: bool) -> tuple[list[int], dict[str, ErrorCode | None], dict[str, Any]]:
        sessions = [
            session_for(e, profile, writes=WritePolicy(heartbeat_interval_s=None))
            for e in endpoints
            if faulted or e.pack_id not in faulty
        ]
        await connect_all(sessions, time.monotonic())
        good_healthy = []
        codes: dict[str, ErrorCode | None] = {}
        outcomes: dict[str, Any] = {}
        for step in range(cycles):
            readings = await poll_all(sessions, time.monotonic())
            good_healthy.append(
                sum(1 for r in readings if r.node_id not in faulty and r.quality is Quality.GOOD)
            )
            codes = {r.node_id: r.error_code for r in readings}
            setpoints = {s.node_id: {"setpoint_w": 100.0 + 10 * step} for s in sessions}
            outcomes = await write_all(sessions, setpoints, time.monotonic())
        await close_all(sessions)
        return good_healthy, codes, outcomes

    baseline, _, _ = run(cycle_run(False))
    with_faults, codes, outcomes = run(cycle_run(True))
    healthy = len(endpoints) - len(faulty)
    assert baseline == [healthy] * cycles
    assert with_faults == baseline
    for pack_id, code in expected.items():
        assert codes[pack_id] is code, pack_id
    assert codes["pack-45"] is None  # monitored and good ...
    assert outcomes["pack-45"][0].error.code is ErrorCode.ILLEGAL_FUNCTION  # ... but its writes stopped
    written = [o[0].status for node, o in outcomes.items() if node not in faulty]
    assert written == [WriteStatus.WRITTEN] * healthy


def test_a_thousand_forced_reconnects_leak_no_file_descriptor(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    profile = profile_library.get(MP2000)
    # The pack closes each connection when its 6th request arrives: identify (1) + one poll (4 blocks).
    fleet = start_sim_fleet(
        Scenario((make_pack("pack-01", profile, index=0, faults=Faults(drop_after_requests=5)),))
    )
    session = session_for(fleet.endpoint("pack-01"), profile, writes=WritePolicy(heartbeat_interval_s=None))
    rounds = 1000

    async def scenario() -> tuple[int, int, int]:
        await session.connect(time.monotonic())
        await session.close()
        await asyncio.sleep(0.05)
        before = open_fds()
        resets = 0
        for _ in range(rounds):
            await session.connect(time.monotonic())
            assert (await session.poll(time.monotonic())).quality is Quality.GOOD
            await session.poll(time.monotonic())  # the pack drops the connection
            resets += session.error is not None and session.error.code is ErrorCode.CONN_RESET
            assert session.state is SessionState.DISCONNECTED
        await session.close()
        after = open_fds()
        for _ in range(100):  # sockets the server closes finish closing on its own thread
            if after <= before:
                break
            await asyncio.sleep(0.02)
            after = open_fds()
        return before, after, resets

    before, after, resets = run(scenario())
    assert resets == rounds
    assert session.connects == rounds + 1
    assert after == before


def test_slow_points_are_read_every_nth_poll_and_carried_between(
    sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    session = session_for(sim_fleet.endpoint("pack-04"), profile_library.get(MP2000), slow_poll_every=3)

    async def scenario() -> tuple[list[int], list[Reading]]:
        await session.connect(time.monotonic())
        sent, readings = [], []
        for _ in range(6):
            before = sim_fleet.request_count("pack-04")
            readings.append(await session.poll(time.monotonic()))
            sent.append(sim_fleet.request_count("pack-04") - before)
        await session.close()
        return sent, readings

    sent, readings = run(scenario())
    full, fast = sent[0], sent[1]
    assert fast == 1 < full  # the telemetry block alone, then the whole map every 3rd poll
    assert sent == [full, fast, fast, full, fast, fast]
    assert all(r.quality is Quality.GOOD and r.values["setpoint_w"] is not None for r in readings)
    assert readings[1].values["capacity_wh"] == readings[0].values["capacity_wh"]


def test_read_point_resolves_the_scale_factor_register_like_the_poll(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    profile = profile_library.get(SUNSPEC)
    fleet = start_sim_fleet(packs=1, profile=SUNSPEC, speed=0)
    session = session_for(fleet.endpoint("pack-01"), profile)

    async def scenario() -> tuple[list[PointRead], Reading, FieldError]:
        await session.connect(time.monotonic())
        reads = [await session.read_point(name) for name in ("soc_pct", "soc_sf", "serial")]
        reading = await session.poll(time.monotonic())
        with pytest.raises(FieldError) as unknown:
            await session.read_point("soc")
        await session.close()
        return reads, reading, unknown.value

    (soc, soc_sf, serial), reading, unknown = run(scenario())
    assert soc.scale_factor is not None and soc.scale_factor == soc_sf.value
    assert soc.value == pytest.approx(85.0) and soc.value == reading.values["soc_pct"]
    assert (serial.value, serial.scale_factor) == ("SIM00001", None)
    assert unknown.code is ErrorCode.POINT_UNKNOWN
    assert "has no point 'soc'" in str(unknown) and "soc_pct" in str(unknown)


def test_a_scale_register_reading_as_its_sentinel_makes_its_points_not_implemented(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    profile = profile_library.get(SUNSPEC)
    endpoint = start_sim_fleet(packs=1, profile=SUNSPEC, speed=0).endpoint("pack-01")

    async def read(session: ModbusSession, name: str) -> PointRead:
        await session.connect(time.monotonic())
        try:
            return await session.read_point(name)
        finally:
            await session.close()

    soc_sf = run(read(session_for(endpoint, profile), "soc_sf"))
    # The same device through a profile that calls the scale factor it sends "not implemented".
    blind = with_point(profile, "soc_sf", sentinel=soc_sf.words[0])
    soc = run(read(session_for(endpoint, blind), "soc_pct"))
    assert soc.words != [] and (soc.value, soc.scale_factor) == (None, None)
