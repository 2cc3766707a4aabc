"""Modbus RTU over TCP and on a serial line (a pseudo-terminal pair) against the simulator's RTU line:
every point of every shipped profile, a setpoint write, CRC errors and a dead unit with their own codes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.fleet import Quality
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.rtu import RtuLine
from gateway.southbound.errors import ErrorCode, FieldError
from gateway.southbound.lines import LineRegistry
from gateway.southbound.poller import close_all, connect_all, poll_all
from gateway.southbound.reading import Reading
from gateway.southbound.session import ModbusSession, SessionOptions
from gateway.southbound.transport import SerialSettings, Transport, TransportKind
from tests.southbound.helpers import TEST_TIMEOUT_S, run

pytestmark = pytest.mark.wire

PROFILES = ("microstore/mp2000", "rackcell/rbms-x", "sunspec/battery-802")
RTU_OVER_TCP = Transport(TransportKind.RTU_OVER_TCP)
SERIAL_19200 = Transport(TransportKind.SERIAL, SerialSettings(baud=19200))


def _open_line(fleet: Any, transport: Transport) -> RtuLine:
    if transport.kind is TransportKind.SERIAL:
        line: RtuLine = fleet.run(fleet.fleet.open_line(baud=transport.serial.baud))
    else:
        line = fleet.run(fleet.fleet.open_line(host="127.0.0.1"))
    return line


def _session(line: RtuLine, transport: Transport, unit: int, profile: Any) -> ModbusSession:
    host = line.device if transport.kind is TransportKind.SERIAL else "127.0.0.1"
    return ModbusSession(
        f"unit-{unit}",
        host,
        line.port,
        unit,
        profile,
        options=SessionOptions(timeout_s=TEST_TIMEOUT_S),
        transport=transport,
    )


@pytest.mark.parametrize("transport", [RTU_OVER_TCP, SERIAL_19200], ids=["rtu-over-tcp", "serial"])
@pytest.mark.parametrize("profile_key", PROFILES)
def test_every_point_of_a_profile_reads_over_rtu(
    start_sim_fleet: Any, profile_library: ProfileLibrary, profile_key: str, transport: Transport
) -> None:
    fleet = start_sim_fleet(packs=2, profile=profile_key, speed=0)
    line = _open_line(fleet, transport)
    profile = profile_library.get(profile_key)

    async def read_all() -> dict[str, object]:
        session = _session(line, transport, 2, profile)
        try:
            await session.connect(0.0)
            return {name: (await session.read_point(name)).value for name in session.known_points}
        finally:
            await session.close()

    values = run(read_all())
    assert values, profile_key
    assert values["soc_pct"] == pytest.approx(fleet.snapshot("pack-02").state.soc_pct, abs=0.1)


@pytest.mark.parametrize("transport", [RTU_OVER_TCP, SERIAL_19200], ids=["rtu-over-tcp", "serial"])
def test_a_setpoint_written_over_rtu_reaches_its_unit_only(
    start_sim_fleet: Any, profile_library: ProfileLibrary, transport: Transport
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)
    line = _open_line(fleet, transport)
    profile = profile_library.get("microstore/mp2000")

    async def write() -> None:
        session = _session(line, transport, 1, profile)
        try:
            await session.connect(0.0)
            outcomes = await session.write_setpoints({"setpoint_w": -300.0}, 1.0)
            assert outcomes and all(o.error is None for o in outcomes)
        finally:
            await session.close()

    run(write())
    assert fleet.snapshot("pack-01").state.setpoint_w == pytest.approx(-300.0)
    assert fleet.snapshot("pack-02").state.setpoint_w == pytest.approx(0.0)


def test_crc_errors_and_a_dead_unit_have_their_own_codes_and_spare_the_other_unit(
    start_sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=3, speed=0)
    line = _open_line(fleet, RTU_OVER_TCP)
    fleet.set_faults("pack-02", crc_error_probability=1.0)
    fleet.set_faults("pack-03", silent=True)
    profile = profile_library.get("microstore/mp2000")

    async def read_soc(unit: int) -> ErrorCode | float:
        session = _session(line, RTU_OVER_TCP, unit, profile)
        try:
            await session.link.open()
            value = await session.link.read(profile.variants[0].points["soc_pct"].table, 0, 1, unit)
            return float(value[0])
        except FieldError as error:
            return error.code
        finally:
            await session.close()

    assert run(read_soc(2)) is ErrorCode.CRC
    assert run(read_soc(3)) is ErrorCode.TIMEOUT
    assert run(read_soc(1)) == pytest.approx(fleet.snapshot("pack-01").state.soc_pct * 10, abs=1)


def test_a_dead_unit_and_a_noisy_one_cost_only_their_own_turns_on_a_shared_line(
    start_sim_fleet: Any, profile_library: ProfileLibrary
) -> None:
    fleet = start_sim_fleet(packs=4, speed=0)
    line = _open_line(fleet, SERIAL_19200)
    fleet.set_faults("pack-03", silent=True)
    fleet.set_faults("pack-04", crc_error_probability=1.0)
    profile = profile_library.get("microstore/mp2000")
    cycle_s = 0.1
    registry = LineRegistry(cycle_s)
    sessions = [
        ModbusSession(
            f"unit-{unit}",
            line.device,
            0,
            unit,
            profile,
            options=SessionOptions(timeout_s=0.15),
            transport=SERIAL_19200,
            lines=registry,
        )
        for unit in (1, 2, 3, 4)
    ]
    plan = registry.plan(line.device)

    async def cycles() -> tuple[dict[str, FieldError], list[list[Reading]]]:
        loop = asyncio.get_running_loop()
        failures = await connect_all(sessions, loop.time())
        history = []
        for _ in range(30):
            started = loop.time()
            history.append(await poll_all(sessions, started))
            await asyncio.sleep(max(0.0, cycle_s - (loop.time() - started)))
        await close_all(sessions)
        return failures, history

    failures, history = run(cycles())
    assert {node: error.code for node, error in failures.items()} == {
        "unit-3": ErrorCode.TIMEOUT,
        "unit-4": ErrorCode.CRC,
    }
    # The healthy units are good in every cycle: read in their turn, their values as old as the plan says.
    for readings in history:
        for reading in readings[:2]:
            assert reading.quality is Quality.GOOD, reading
            assert reading.age_s <= plan.fast_age_s, (reading.node_id, reading.age_s, plan.describe())
    assert sum(readings[0].age_s == 0 for readings in history) >= len(history) // plan.cycles_per_round - 1
    # The dead and the noisy unit carry their own codes, naming their own unit ids.
    for unit, code in ((3, ErrorCode.TIMEOUT), (4, ErrorCode.CRC)):
        errors = [cycle[unit - 1].error for cycle in history]
        assert all(cycle[unit - 1].quality is Quality.FAILED for cycle in history)
        assert {e.code for e in errors if e is not None} == {code}
        assert f"unit {unit}" in str(errors[-1])


def test_a_missing_serial_device_says_where_to_look(profile_library: ProfileLibrary, tmp_path: Any) -> None:
    session = ModbusSession(
        "rack-1",
        str(tmp_path / "ttyUSB-gone"),
        0,
        1,
        profile_library.get("microstore/mp2000"),
        options=SessionOptions(timeout_s=TEST_TIMEOUT_S),
        transport=SERIAL_19200,
    )

    async def connect() -> FieldError:
        try:
            with pytest.raises(FieldError) as refused:
                await session.connect(0.0)
            return refused.value
        finally:
            await session.close()

    error = run(connect())
    assert error.code is ErrorCode.UNREACHABLE
    assert "no such serial device" in str(error) and "/dev/serial/by-id/" in str(error)
    assert "docs/rs485.md" in str(error)  # the packaged service hides ttys without the drop-in
