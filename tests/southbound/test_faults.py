"""Each fault class of a field device yields its own error code and an explanatory message.

Real parts only: the simulator's packs with their fault knobs on loopback, real pymodbus clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from typing import Any

import pytest

from gateway import logbook
from gateway.fleet import Quality
from gateway.logbook import CROWD_LINES_PER_S, CROWD_WINDOW_S
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Table, Version, VersionRange
from gateway.sim.faults import ExceptionCode, ExceptionRule
from gateway.sim.scenario import Scenario, make_pack
from gateway.southbound.errors import ErrorCode, FieldError
from gateway.southbound.poller import close_all, poll_all
from gateway.southbound.reading import Reading
from gateway.southbound.session import ModbusSession
from gateway.southbound.writer import WriteOutcome, WriteStatus
from tests.conftest import StartFleet
from tests.southbound.helpers import (
    TEST_TIMEOUT_S,
    WRITE_PATHS,
    run,
    session_for,
    with_firmware_ranges,
    with_point,
    write_by,
)

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"


async def poll_until_not_good(session: ModbusSession, polls: int = 10) -> Reading:
    """Poll (connecting first) until a reading is not good; bounded."""
    reading = await session.poll(time.monotonic())
    for _ in range(polls):
        if reading.quality is not Quality.GOOD and session.error is not None:
            return reading
        await asyncio.sleep(0.01)
        reading = await session.poll(time.monotonic())
    return reading


READ_FAULTS: list[tuple[str, dict[str, Any], ErrorCode, str]] = [
    ("silent", {"silent": True}, ErrorCode.TIMEOUT, "no answer within 500 ms"),
    (
        "wrong unit id",
        {"wrong_unit_id": 7},
        ErrorCode.UNIT_MISMATCH,
        "expected unit 1, got 7; check `unit` of node",
    ),
    ("garbage", {"garbage_probability": 1.0}, ErrorCode.MALFORMED, "speaks Modbus TCP"),
    ("dropped", {"drop_probability": 1.0}, ErrorCode.CONN_RESET, "the device closed the connection"),
    (
        "exception 01",
        {"exceptions": (ExceptionRule(ExceptionCode.ILLEGAL_FUNCTION, Table.INPUT),)},
        ErrorCode.ILLEGAL_FUNCTION,
        "does not support read input registers",
    ),
    (
        "exception 02",
        {"exceptions": (ExceptionRule(ExceptionCode.ILLEGAL_DATA_ADDRESS, Table.INPUT, 0, 1),)},
        ErrorCode.ILLEGAL_ADDRESS,
        "does not match firmware 1.4.0",
    ),
    (
        "exception 04",
        {"exceptions": (ExceptionRule(ExceptionCode.SERVER_DEVICE_FAILURE),)},
        ErrorCode.DEVICE_FAILURE,
        "internal failure",
    ),
    (
        "exception 0A",
        {"exceptions": (ExceptionRule(ExceptionCode.GATEWAY_PATH_UNAVAILABLE),)},
        ErrorCode.GATEWAY_PATH,
        "has no path to unit 1",
    ),
    (
        "exception 0B",
        {"exceptions": (ExceptionRule(ExceptionCode.GATEWAY_TARGET_NO_RESPONSE),)},
        ErrorCode.GATEWAY_TARGET,
        'the Modbus "504"',
    ),
]


@pytest.mark.parametrize(
    ("knobs", "code", "hint"), [pytest.param(*case[1:], id=case[0]) for case in READ_FAULTS]
)
def test_a_faulty_poll_names_its_cause(
    start_sim_fleet: StartFleet,
    profile_library: ProfileLibrary,
    knobs: dict[str, Any],
    code: ErrorCode,
    hint: str,
) -> None:
    fleet = start_sim_fleet(packs=1)
    endpoint = fleet.endpoint("pack-01")
    session = session_for(endpoint, profile_library.get(MP2000))

    async def scenario() -> Reading:
        await session.connect(time.monotonic())
        good = await session.poll(time.monotonic())
        assert good.quality is Quality.GOOD
        fleet.set_faults("pack-01", **knobs)
        try:
            return await poll_until_not_good(session)
        finally:
            await session.close()

    reading = run(scenario())
    assert reading.quality is Quality.STALE  # the last good values are carried, with their age
    assert reading.values["soc_pct"] == pytest.approx(85.0)
    assert reading.age_s > 0
    assert reading.error_code is code, str(reading.error)
    message = str(reading.error)
    assert message.startswith(f"node pack-01 ({endpoint.host}:{endpoint.port} unit 1): {code}:")
    assert hint in message
    assert "register" in message and "point" in message


def test_a_slow_device_is_told_apart_from_a_silent_one(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1)
    session = session_for(fleet.endpoint("pack-01"), profile_library.get(MP2000), max_silent_requests=10)

    async def scenario() -> tuple[FieldError | None, FieldError | None]:
        await session.connect(time.monotonic())
        fleet.set_faults("pack-01", delay_ms=TEST_TIMEOUT_S * 1000 + 200)
        await session.poll(time.monotonic())
        first = session.error
        await asyncio.sleep(0.3)  # the late answer arrives meanwhile
        await session.poll(time.monotonic())
        await session.close()
        return first, session.error

    first, second = run(scenario())
    assert first is not None and first.code is ErrorCode.TIMEOUT
    assert second is not None and second.code is ErrorCode.TIMEOUT
    assert "a late answer arrived after the timeout: the device is slow; raise comms.timeout_ms" in str(
        second
    )


def test_a_slow_device_is_logged_as_slow_and_a_dead_one_as_dead(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = start_sim_fleet(packs=2)
    profile = profile_library.get(MP2000)
    slow, dead = (session_for(fleet.endpoint(pack), profile) for pack in ("pack-01", "pack-02"))
    caplog.set_level(logging.INFO, logger="gateway.southbound.session")  # `socgw read` tests silence it

    async def scenario() -> None:
        for session in (slow, dead):
            await session.connect(time.monotonic())
            assert (await session.poll(time.monotonic())).quality is Quality.GOOD  # then the cyclic block
        fleet.set_faults("pack-01", delay_ms=TEST_TIMEOUT_S * 1000 + 150)  # answers, but late
        fleet.set_faults("pack-02", silent=True)
        for _ in range(3):  # default options: the second timeout in a row re-connects
            now = time.monotonic()
            await asyncio.gather(slow.poll(now), dead.poll(now))
            await asyncio.sleep(0.05)
        for session in (slow, dead):
            await session.close()

    run(scenario())
    lines = [record.getMessage() for record in caplog.records]
    slow_lines = [line for line in lines if line.startswith("node pack-01") and "E_MB_TIMEOUT" in line]
    dead_lines = [line for line in lines if line.startswith("node pack-02") and "E_MB_TIMEOUT" in line]
    # The first timeout cannot tell (nothing is known yet); the next one, with the late answer in hand,
    # is reported again although it is the same code on the same block.
    assert "check that the device is powered" in slow_lines[0]
    assert any("a late answer arrived after the timeout: the device is slow" in line for line in slow_lines)
    assert dead_lines and not any("slow" in line for line in dead_lines)
    assert "check that the device is powered" in dead_lines[0]


def test_a_node_that_stops_answering_costs_one_timeout_per_cycle_not_two(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1)
    session = session_for(fleet.endpoint("pack-01"), profile_library.get(MP2000))

    async def scenario() -> tuple[Reading, list[WriteOutcome], float]:
        await session.connect(time.monotonic())
        assert (await session.poll(time.monotonic())).quality is Quality.GOOD
        fleet.set_faults("pack-01", silent=True)  # stops answering after identification
        started = time.monotonic()
        reading = await session.poll(started)
        outcomes = await session.write_setpoints({}, started)  # the heartbeat is due
        elapsed = time.monotonic() - started
        await session.close()
        return reading, outcomes, elapsed

    reading, outcomes, elapsed = run(scenario())
    assert reading.error_code is ErrorCode.TIMEOUT
    assert outcomes == []  # the heartbeat waits for an answered poll: it would only time out too
    assert elapsed < 1.5 * TEST_TIMEOUT_S  # one timeout in the cycle (it was poll + heartbeat: two)


CONNECT_FAULTS: list[tuple[str, dict[str, Any], ErrorCode, str]] = [
    ("refused", {"refuse_connections": True}, ErrorCode.CONN_REFUSED, "run out of connections"),
    ("no free connection", {"max_connections": 0}, ErrorCode.CONN_RESET, "accept only a few clients"),
    ("silent", {"silent": True}, ErrorCode.TIMEOUT, "reconnecting with backoff"),
]


@pytest.mark.parametrize(
    ("knobs", "code", "hint"), [pytest.param(*case[1:], id=case[0]) for case in CONNECT_FAULTS]
)
def test_a_failed_connect_names_its_cause(
    start_sim_fleet: StartFleet,
    profile_library: ProfileLibrary,
    knobs: dict[str, Any],
    code: ErrorCode,
    hint: str,
) -> None:
    fleet = start_sim_fleet(packs=1)
    fleet.set_faults("pack-01", **knobs)
    session = session_for(fleet.endpoint("pack-01"), profile_library.get(MP2000))

    async def scenario() -> tuple[FieldError, Reading]:
        try:
            with pytest.raises(FieldError) as caught:
                await session.connect(time.monotonic())
            return caught.value, await session.poll(time.monotonic())
        finally:
            await session.close()

    error, reading = run(scenario())
    assert error.code is code, str(error)
    assert hint in str(error)
    assert reading.quality is Quality.FAILED and reading.error_code is code and not reading.values


def test_a_wrong_unit_id_in_the_config_gets_the_gateways_0b(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1)
    session = session_for(fleet.endpoint("pack-01"), profile_library.get(MP2000), unit=2)

    async def scenario() -> FieldError:
        with pytest.raises(FieldError) as caught:
            await session.connect(time.monotonic())
        await session.close()
        return caught.value

    error = run(scenario())
    assert error.code is ErrorCode.GATEWAY_TARGET
    assert "check RS-485 wiring" in str(error) and "`unit` of node pack-01" in str(error)


def test_a_device_of_another_model_fails_identification(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=1)
    profile = profile_library.get(MP2000)
    marker = next(iter(profile.identify.markers))
    other_model = dataclasses.replace(
        profile, identify=dataclasses.replace(profile.identify, markers={marker: 3000})
    )
    session = session_for(fleet.endpoint("pack-01"), other_model)

    async def scenario() -> FieldError:
        with pytest.raises(FieldError) as caught:
            await session.connect(time.monotonic())
        await session.close()
        return caught.value

    error = run(scenario())
    assert error.code is ErrorCode.PROFILE_MISMATCH
    assert f"identify point {marker} is 2000.0, {MP2000} expects 3000" in str(error)
    assert "`profile` of node pack-01" in str(error)


def test_an_unknown_firmware_is_monitored_read_only_with_the_common_points(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    rack = profile_library.get("rackcell/rbms-x")
    fleet = start_sim_fleet(Scenario((make_pack("rack-01", rack, index=0, firmware=Version(1, 7)),)))
    narrowed = with_firmware_ranges(
        rack, VersionRange(Version(1, 0), Version(1, 5)), VersionRange(Version(2, 0))
    )
    session = session_for(fleet.endpoint("rack-01"), narrowed)

    async def scenario() -> tuple[Reading, list[Any]]:
        await session.connect(time.monotonic())
        reading = await session.poll(time.monotonic())
        outcomes = await session.write_setpoints({"setpoint_w": 1000.0}, time.monotonic())
        await session.close()
        return reading, outcomes

    reading, outcomes = run(scenario())
    assert reading.quality is Quality.GOOD and reading.read_only
    assert reading.error_code is ErrorCode.FW_UNKNOWN
    message = str(reading.error)
    assert "firmware 1.7.0 (raw 107) is not covered by profile rackcell/rbms-x" in message
    assert ">=1.0.0,<1.5.0" in message and ">=2.0.0" in message
    assert reading.values["voltage_v"] is not None  # a common point
    assert "setpoint_w" not in reading.values  # moved between variants: not trusted
    assert outcomes[0].error.code is ErrorCode.FW_UNKNOWN


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_a_refused_write_stops_writes_to_that_point_but_the_node_stays_monitored(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, path: str
) -> None:
    profile = profile_library.get(MP2000)
    locked = with_point(profile, "setpoint_w", access=profile.variants[0].points["soh_pct"].access)
    fleet = start_sim_fleet(Scenario((make_pack("pack-01", locked, index=0),)))
    session = session_for(fleet.endpoint("pack-01"), profile)

    async def scenario() -> tuple[list[Any], list[Any], Reading, int]:
        await session.connect(time.monotonic())
        await session.poll(time.monotonic())
        first = await write_by(path, session, {"setpoint_w": 500.0}, time.monotonic())
        requests = fleet.request_count("pack-01")
        second = await write_by(path, session, {"setpoint_w": 600.0}, time.monotonic() + 10)
        sent = fleet.request_count("pack-01") - requests
        reading = await session.poll(time.monotonic())
        await session.close()
        return first, second, reading, sent

    first, second, reading, sent = run(scenario())
    refused = first[0].error
    assert refused.code is ErrorCode.ILLEGAL_FUNCTION
    assert "writes to this point are stopped until the config or the profile changes" in str(refused)
    assert f"profile {MP2000}" in str(refused) and "firmware 1.4.0" in str(refused)
    assert second[0].error is refused and sent <= 1  # only the heartbeat went out
    assert reading.quality is Quality.GOOD


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_a_value_the_device_rejects_is_its_exception_03(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, path: str
) -> None:
    fleet = start_sim_fleet(packs=1)
    wider = with_point(profile_library.get(MP2000), "setpoint_w", minimum=-5000.0, maximum=5000.0)
    session = session_for(fleet.endpoint("pack-01"), wider)

    async def scenario() -> list[Any]:
        await session.connect(time.monotonic())
        await session.poll(time.monotonic())
        outcomes = await write_by(path, session, {"setpoint_w": 4000.0}, time.monotonic())
        await session.close()
        return outcomes

    error = run(scenario())[0].error
    assert error.code is ErrorCode.ILLEGAL_VALUE
    assert "the device refused the value: check the point's minimum/maximum" in str(error)


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_a_write_the_device_leaves_unanswered_fails_and_frees_the_connection(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, path: str
) -> None:
    fleet = start_sim_fleet(packs=1)
    session = session_for(fleet.endpoint("pack-01"), profile_library.get(MP2000))

    async def scenario() -> tuple[list[WriteOutcome], float, Reading, Reading]:
        await session.connect(time.monotonic())
        assert (await session.poll(time.monotonic())).quality is Quality.GOOD
        fleet.set_faults("pack-01", silent=True)
        started = time.monotonic()
        outcomes = await write_by(path, session, {"setpoint_w": 700.0}, started)
        elapsed = time.monotonic() - started
        # The link is free again: this poll is not stuck waiting for the write's turn.
        silent = await asyncio.wait_for(session.poll(time.monotonic()), 10 * TEST_TIMEOUT_S)
        fleet.set_faults("pack-01", silent=False)
        back = silent
        for _ in range(100):  # bounded: the session reconnects in the background, then polls again
            if back.quality is Quality.GOOD:
                break
            await asyncio.sleep(0.05)
            back = await session.poll(time.monotonic())
        await session.close()
        return outcomes, elapsed, silent, back

    outcomes, elapsed, silent, back = run(scenario())
    assert [outcome.point for outcome in outcomes] == ["setpoint_w"]  # no heartbeat after a timeout
    failed = outcomes[0]
    assert failed.status is WriteStatus.FAILED and failed.error is not None
    assert failed.error.code is ErrorCode.TIMEOUT and "setpoint_w" in str(failed.error)
    assert elapsed < 2 * TEST_TIMEOUT_S  # one request timeout
    assert silent.quality is not Quality.GOOD
    assert back.quality is Quality.GOOD
    assert session.writes.writes_by_point == {}  # nothing was confirmed


def test_a_fleet_failing_at_once_logs_a_few_lines_a_second_and_counts_the_rest(
    profile_library: ProfileLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    profile = profile_library.get(MP2000)
    nodes = 40
    # Nothing listens on port 1: a gateway started before its packs.
    sessions = [ModbusSession(f"dead-{index:02d}", "127.0.0.1", 1, 1, profile) for index in range(nodes)]

    async def scenario() -> None:
        await asyncio.sleep(CROWD_WINDOW_S)  # lines of the tests before are out of the gate's window
        logbook.sweep()
        caplog.clear()
        for _ in range(50):  # bounded: until every node has its connect failure
            await poll_all(sessions, time.monotonic())
            if all(session.error is not None for session in sessions):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(CROWD_WINDOW_S)
        logbook.sweep()
        await close_all(sessions)

    with caplog.at_level(logging.INFO, logger="gateway.southbound.session"):
        run(scenario())
    lines = [record.getMessage() for record in caplog.records]
    per_node = [line for line in lines if line.startswith("node dead-")]
    summaries = [line for line in lines if "held back" in line]
    assert all(session.error is not None for session in sessions)
    assert 0 < len(per_node) <= CROWD_LINES_PER_S
    assert all("E_MB_CONN_REFUSED" in line for line in per_node)
    assert len(summaries) == 1, lines
    held = nodes - len(per_node)
    assert re.match(
        rf"{held} more line\(s\) of nodes held back in the last \d+ s \(E_MB_CONN_REFUSED ×{held}\)",
        summaries[0],
    ), summaries[0]
    assert "`socgw status` shows each" in summaries[0]
