"""The simulator's Modbus TCP server: register images through the profile codec, writes, protocol details.

Reads go through pymodbus's client (a real client nobody here wrote); byte-level checks use a plain
socket (tests/sim/wire.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from gateway.profiles import codec
from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Point, Profile, Table, Version
from gateway.profiles.plan import plan_reads, split_block
from gateway.sim import values
from gateway.sim.device import firmware_value
from gateway.sim.fleet import FleetThread, PackSnapshot
from tests.conftest import StartFleet
from tests.sim import wire as sim_wire

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

PROFILE_CASES = [
    ("microstore/mp2000", None),
    ("rackcell/rbms-x", "1.5.0"),
    ("rackcell/rbms-x", "2.1.0"),
    ("sunspec/battery-802", None),
]


def points_of(profile: Profile, firmware: str) -> dict[str, Point]:
    variant = profile.variant_for(Version.parse(firmware))
    assert variant is not None
    return {**profile.identify.points, **variant.points}


def run(coroutine: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await coroutine

    return asyncio.run(wrapper())


async def with_client(port: int, action: Callable[[AsyncModbusTcpClient], Awaitable[Any]]) -> Any:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        assert await client.connect()
        return await action(client)
    finally:
        client.close()


async def read_block(client: AsyncModbusTcpClient, table: Table, start: int, count: int) -> ModbusPDU:
    if table is Table.HOLDING:
        return await client.read_holding_registers(start, count=count, device_id=1)
    if table is Table.INPUT:
        return await client.read_input_registers(start, count=count, device_id=1)
    if table is Table.COIL:
        return await client.read_coils(start, count=count, device_id=1)
    return await client.read_discrete_inputs(start, count=count, device_id=1)


async def read_all(
    client: AsyncModbusTcpClient, profile: Profile, points: Mapping[str, Point]
) -> dict[str, list[int]]:
    """Raw words of every point, read in the blocks the gateway's planner makes."""
    raw: dict[str, list[int]] = {}
    for block in plan_reads(points.values(), profile.comms):
        response = await read_block(client, block.table, block.start, block.count)
        assert not response.isError(), f"{block}: {response}"
        words = (
            [int(b) for b in response.bits[: block.count]] if block.table.is_bit_table else response.registers
        )
        raw.update(split_block(block, words))
    return raw


def expected_value(point: Point, profile: Profile, snap: PackSnapshot, serial: str) -> codec.Value | None:
    """What the pack should report for `point`, from its physics snapshot."""
    markers = profile.identify.markers
    if point.name in markers:
        return markers[point.name]
    if point.name == "firmware":
        return None  # checked separately
    dynamic = values.dynamic_values(snap.params, snap.state, snap.operating)
    static = values.static_values(snap.params, serial, profile.model.upper())
    value = dynamic.get(point.name, static.get(point.name))
    if point.name == "state":
        return values.raw_for_label(point, snap.operating.state)
    if point.name == "alarms":
        return values.alarm_bits(point, snap.operating.alarms)
    return value


def scale_factor(point: Point, points: Mapping[str, Point], raw: Mapping[str, Sequence[int]]) -> int | None:
    register = point.scale_register
    return None if register is None else codec.decode_scale_factor(points[register], raw[register])


@pytest.mark.parametrize(("key", "firmware"), PROFILE_CASES)
def test_every_point_reads_as_the_codec_encodes_the_physics(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary, key: str, firmware: str | None
) -> None:
    fleet = start_sim_fleet(packs=2, profile=key, firmware=firmware, speed=0)
    endpoint = fleet.endpoint("pack-02")
    profile = profile_library.get(key)
    points = points_of(profile, endpoint.firmware)
    raw = run(with_client(endpoint.port, lambda c: read_all(c, profile, points)))
    snap = fleet.snapshot("pack-02")
    checked = 0
    for name, point in points.items():
        value = expected_value(point, profile, snap, "SIM00002")
        if value is None:
            continue
        expected = codec.encode(point, value, scale_factor(point, points, raw))
        assert raw[name] == expected, f"{key} {name}: wire {raw[name]} != codec {expected} (value {value!r})"
        checked += 1
    assert checked >= 16
    fw_point = profile.identify.points["firmware"]
    fw_value = firmware_value(fw_point, Version.parse(endpoint.firmware), profile.identify.firmware_format)
    assert raw["firmware"] == codec.encode(fw_point, fw_value)
    decoded = codec.decode_points(points, raw)
    assert decoded["soc_pct"] == pytest.approx(25.0)  # two packs: 85 and 25 %
    assert decoded["serial"] == "SIM00002"


def test_soc_spread_and_identity(sim_fleet: FleetThread, profile_library: ProfileLibrary) -> None:
    profile = profile_library.get("microstore/mp2000")
    points = points_of(profile, "1.4.0")
    socs = []
    for endpoint in sim_fleet.endpoints:
        raw = run(with_client(endpoint.port, lambda c: read_all(c, profile, points)))
        decoded = codec.decode_points(points, raw)
        assert decoded["x_device_code"] == 2000
        assert codec.decode_firmware(decoded["firmware"], profile.identify.firmware_format) == Version(1, 4)
        socs.append(decoded["soc_pct"])
    assert socs == pytest.approx([85.0, 65.0, 45.0, 25.0], abs=0.2)


async def write_point(
    client: AsyncModbusTcpClient, point: Point, value: float, sf: int | None = None
) -> ModbusPDU:
    words = codec.encode(point, value, sf)
    if point.table is Table.COIL:
        return await client.write_coils(point.address, [bool(w) for w in words], device_id=1)
    return await client.write_registers(point.address, words, device_id=1)


async def read_point(client: AsyncModbusTcpClient, point: Point, sf: int | None = None) -> codec.Value | None:
    response = await read_block(client, point.table, point.address, point.count)
    assert not response.isError(), f"{point.name}: {response}"
    words = [int(b) for b in response.bits[: point.count]] if point.table.is_bit_table else response.registers
    return codec.decode(point, words, sf)


def test_setpoint_write_changes_power(sim_fleet: FleetThread, profile_library: ProfileLibrary) -> None:
    points = points_of(profile_library.get("microstore/mp2000"), "1.4.0")

    async def scenario(client: AsyncModbusTcpClient) -> tuple[Any, ...]:
        assert not (await write_point(client, points["setpoint_w"], 800.0)).isError()
        return (
            await read_point(client, points["setpoint_w"]),
            await read_point(client, points["power_w"]),
            await read_point(client, points["state"]),
        )

    setpoint, power, state = run(with_client(sim_fleet.endpoint("pack-01").port, scenario))
    assert setpoint == 800.0
    assert power == pytest.approx(800.0)
    assert codec.label_of(points["state"], int(state)) == "discharging"
    assert sim_fleet.snapshot("pack-01").operating.power_w == pytest.approx(800.0)


def test_charging_setpoint_and_caps(sim_fleet: FleetThread, profile_library: ProfileLibrary) -> None:
    """rackcell has no cap registers, microstore none either: caps are exercised through the state API."""
    points = points_of(profile_library.get("microstore/mp2000"), "1.4.0")
    sim_fleet.update_state("pack-03", charge_cap_w=300.0)

    async def scenario(client: AsyncModbusTcpClient) -> tuple[Any, ...]:
        await write_point(client, points["setpoint_w"], -1000.0)
        return (
            await read_point(client, points["power_w"]),
            await read_point(client, points["charge_limit_w"]),
        )

    power, charge_limit = run(with_client(sim_fleet.endpoint("pack-03").port, scenario))
    assert power == pytest.approx(-300.0)
    assert charge_limit == 300.0


def test_enable_coil_and_reserve_act_on_the_model(
    sim_fleet: FleetThread, profile_library: ProfileLibrary
) -> None:
    points = points_of(profile_library.get("microstore/mp2000"), "1.4.0")

    async def scenario(client: AsyncModbusTcpClient) -> list[Any]:
        seen = []
        await write_point(client, points["setpoint_w"], 500.0)
        await write_point(client, points["enable"], 0)
        seen.append(await read_point(client, points["power_w"]))
        seen.append(codec.label_of(points["state"], int(await read_point(client, points["state"]) or 0)))
        await write_point(client, points["enable"], 1)
        await write_point(client, points["backup_reserve_pct"], 50)  # pack-04 is at 25 %: below reserve
        seen.append(await read_point(client, points["power_w"]))
        seen.append(await read_point(client, points["discharge_limit_w"]))
        await write_point(client, points["heartbeat"], 4242)
        seen.append(await read_point(client, points["heartbeat"]))
        return seen

    assert run(with_client(sim_fleet.endpoint("pack-04").port, scenario)) == [0.0, "off", 0.0, 0.0, 4242.0]
    state = sim_fleet.snapshot("pack-04").state
    assert (state.enabled, state.backup_reserve_pct, state.heartbeat) == (True, 50.0, 4242)


def test_sunspec_write_through_scale_factor(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    profile = profile_library.get("sunspec/battery-802")
    fleet = start_sim_fleet(packs=1, profile="sunspec/battery-802")
    points = points_of(profile, fleet.endpoint("pack-01").firmware)

    async def scenario(client: AsyncModbusTcpClient) -> tuple[Any, ...]:
        w_sf = int(await read_point(client, points["w_sf"]) or 0)
        assert not (await write_point(client, points["setpoint_w"], -2500.0, w_sf)).isError()
        assert not (await write_point(client, points["enable"], 0)).isError()
        return (
            await read_point(client, points["setpoint_w"], w_sf),
            await read_point(client, points["enable"]),
            (await client.read_holding_registers(points["enable"].address, count=1, device_id=1)).registers,
        )

    setpoint, enable, enable_raw = run(with_client(fleet.endpoint("pack-01").port, scenario))
    assert setpoint == -2500.0
    assert enable == 0.0
    assert enable_raw == [2]  # SunSpec SetOp DISCONNECT
    assert fleet.snapshot("pack-01").state.setpoint_w == -2500.0


def test_rackcell_firmware_selects_the_setpoint_register(start_sim_fleet: StartFleet) -> None:
    old = start_sim_fleet(packs=1, profile="rackcell/rbms-x", firmware="1.5.0")
    new = start_sim_fleet(packs=1, profile="rackcell/rbms-x", firmware="2.1.0")

    async def write_200(client: AsyncModbusTcpClient) -> bool:
        response = await client.write_registers(200, [0, 1000], device_id=1)
        return not response.isError()

    assert run(with_client(old.endpoint("pack-01").port, write_200))
    assert old.snapshot("pack-01").state.setpoint_w == 1000.0
    assert not run(with_client(new.endpoint("pack-01").port, write_200))  # 200 is unmapped in 2.x


# ---- protocol details on the raw socket ------------------------------------------------------------


def exception_code(pdu: bytes, function: int) -> int:
    assert pdu[0] == function | 0x80, f"expected an exception to function {function}, got {pdu.hex()}"
    return pdu[1]


def test_exceptions_for_bad_requests(sim_fleet: FleetThread) -> None:
    with sim_wire.connect(sim_fleet.endpoint("pack-01").port) as sock:
        # Unknown function code: 01.
        assert exception_code(sim_wire.exchange(sock, bytes([0x2B, 0x0E, 0x01, 0x00]))[2], 0x2B) == 1
        # Read past the input map (0..23): 02.
        assert exception_code(sim_wire.exchange(sock, sim_wire.read_request(4, 20, 10))[2], 4) == 2
        # No holding register at 100: 02 for reads and writes.
        assert exception_code(sim_wire.exchange(sock, sim_wire.read_request(3, 100, 1))[2], 3) == 2
        assert exception_code(sim_wire.exchange(sock, bytes([6, 0, 100, 0, 1]))[2], 6) == 2
        # Count 0 and count 126: 03.
        assert exception_code(sim_wire.exchange(sock, sim_wire.read_request(3, 0, 0))[2], 3) == 3
        assert exception_code(sim_wire.exchange(sock, sim_wire.read_request(3, 0, 126))[2], 3) == 3
        # Setpoint beyond the profile's write bounds (±1200 W): 03.
        too_much = bytes([0x10, 0, 0, 0, 2, 4]) + (5000).to_bytes(4, "big")
        assert exception_code(sim_wire.exchange(sock, too_much)[2], 0x10) == 3
        # Half of the i32 setpoint: 02 (writes must cover whole points).
        assert exception_code(sim_wire.exchange(sock, bytes([6, 0, 1, 0, 5]))[2], 6) == 2
        # Coil value other than 0xFF00/0x0000: 03.
        assert exception_code(sim_wire.exchange(sock, bytes([5, 0, 0, 0x12, 0x34]))[2], 5) == 3
        # A well-formed read still works on the same connection.
        _, unit, pdu = sim_wire.exchange(sock, sim_wire.read_request(4, 0, 1))
        assert (unit, pdu[:2]) == (1, bytes([4, 2]))


def test_write_to_a_read_only_register_is_exception_01(start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=1, profile="sunspec/battery-802")
    with sim_wire.connect(fleet.endpoint("pack-01").port) as sock:
        # 40081 is SoC: a holding register that exists but is read-only.
        assert (
            exception_code(
                sim_wire.exchange(sock, bytes([6]) + (40081).to_bytes(2, "big") + b"\x00\x01")[2], 6
            )
            == 1
        )


def test_other_unit_id_gets_exception_0b(sim_fleet: FleetThread) -> None:
    with sim_wire.connect(sim_fleet.endpoint("pack-01").port) as sock:
        _, unit, pdu = sim_wire.exchange(sock, sim_wire.read_request(4, 0, 1), unit=7)
        assert unit == 7
        assert exception_code(pdu, 4) == 0x0B


def test_pipelined_requests_in_one_segment_are_all_answered_in_order(sim_fleet: FleetThread) -> None:
    with sim_wire.connect(sim_fleet.endpoint("pack-01").port) as sock:
        requests = [sim_wire.frame(100 + i, 1, sim_wire.read_request(4, i, 1)) for i in range(5)]
        sock.sendall(b"".join(requests))
        answers = [sim_wire.receive_frame(sock) for _ in range(5)]
    assert [transaction for transaction, _, _ in answers] == [100, 101, 102, 103, 104]
    assert all(pdu[:2] == bytes([4, 2]) for _, _, pdu in answers)


def test_a_request_split_across_segments_is_answered(sim_fleet: FleetThread) -> None:
    with sim_wire.connect(sim_fleet.endpoint("pack-01").port) as sock:
        request = sim_wire.frame(9, 1, sim_wire.read_request(4, 0, 2))
        sock.sendall(request[:5])
        assert sim_wire.nothing_arrives(sock, 0.05)
        sock.sendall(request[5:])
        transaction, _, pdu = sim_wire.receive_frame(sock)
    assert (transaction, pdu[:2]) == (9, bytes([4, 4]))


def test_an_impossible_length_closes_the_connection(sim_fleet: FleetThread) -> None:
    with sim_wire.connect(sim_fleet.endpoint("pack-01").port) as sock:
        sock.sendall(bytes([0, 1, 0, 0, 0x40, 0x00, 1, 3]))
        assert sim_wire.closed_by_peer(sock)


def test_heartbeat_watchdog_over_the_wire(sim_fleet: FleetThread, profile_library: ProfileLibrary) -> None:
    """microstore: x_heartbeat_timeout_s arms the watchdog; a stale heartbeat stops the pack."""
    points = points_of(profile_library.get("microstore/mp2000"), "1.4.0")

    async def arm(client: AsyncModbusTcpClient) -> None:
        await write_point(client, points["x_heartbeat_timeout_s"], 5)
        await write_point(client, points["setpoint_w"], 400.0)
        await write_point(client, points["heartbeat"], 1)

    async def observe(client: AsyncModbusTcpClient) -> tuple[Any, ...]:
        alarms = int(await read_point(client, points["alarms"]) or 0)
        return (await read_point(client, points["power_w"]), codec.active_labels(points["alarms"], alarms))

    async def beat(client: AsyncModbusTcpClient) -> None:
        await write_point(client, points["heartbeat"], 2)

    port = sim_fleet.endpoint("pack-01").port
    run(with_client(port, arm))
    assert sim_fleet.snapshot("pack-01").state.heartbeat_timeout_s == 5.0
    sim_fleet.update_state("pack-01", heartbeat_age_s=6.0)  # as if 6 s passed without a heartbeat
    assert run(with_client(port, observe)) == (0.0, ("heartbeat_timeout",))
    run(with_client(port, beat))
    power, alarms = run(with_client(port, observe))
    assert power == pytest.approx(400.0)
    assert alarms == ()
