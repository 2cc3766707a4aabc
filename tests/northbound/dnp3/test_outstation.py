"""The DNP3 outstation end to end: the gateway on the simulator, polled and commanded by dnp3py.

Everything runs in the test's uvloop: the simulated packs in their background thread (Modbus TCP on
loopback), the engine with its adapters as `socgw run` starts them (`serve()`), and the master.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop

from gateway.balancer import NodeMode
from gateway.mapping.dnp3 import DNP3_SOURCES, PointType, ResolvedPoint
from gateway.mapping.sources import Value, read_fleet, read_node
from gateway.northbound.dnp3 import create
from gateway.sim.fleet import Endpoint
from gateway.snapshot import CycleSnapshot
from tests.conftest import StartFleet, free_port
from tests.northbound.dnp3.support import (
    HARDWARE_ERROR,
    LATCH_OFF,
    LATCH_ON,
    NO_SELECT,
    NOT_SUPPORTED,
    OUT_OF_RANGE,
    PULSE_ON,
    PULSE_ON_CLOSE,
    SUCCESS,
    TIMEOUT,
    analog_output_block,
    connected_master,
    crob_block,
    dnp3_site_config,
    running_gateway,
)

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

T = TypeVar("T")
ONLINE = 0x01
RESTART = 0x02
COMM_LOST = 0x04


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(asyncio.wait_for(scenario(), timeout=60))


def expected_count(point: ResolvedPoint, snapshot: CycleSnapshot, adapter: dict[str, Value]) -> float | bool:
    """What the map promises for a point: the source's value over the scale, rounded (binaries: as is)."""
    spec = point.spec
    if point.node_id is not None:
        value = read_node(spec.source, snapshot, snapshot.fleet.node(point.node_id))
    elif spec.source in DNP3_SOURCES:
        value = adapter[spec.source]
    else:
        value = read_fleet(spec.source, snapshot)
    assert value is not None, f"{point.name} ({spec.source}) is unknown"
    if not point.type.analog:
        return bool(value)
    rated = adapter["dnp3.rated_power_w"]
    assert isinstance(rated, float)
    return round(float(value) * 1000.0 / rated) if spec.rated_permille else round(float(value) / spec.scale)


def test_integrity_poll_returns_every_mapped_point_with_the_fleet_state(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=4, speed=0.0)  # frozen physics: the values hold still while polled
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})

    async def scenario() -> tuple[
        dict[tuple[PointType, int], tuple[float, int]], CycleSnapshot, list[ResolvedPoint], dict[str, Value]
    ]:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            await master.integrity_poll()
            handler = master.handler
            seen: dict[tuple[PointType, int], tuple[float, int]] = {}
            for point_type, values in (
                (PointType.ANALOG_INPUT, handler.analog_inputs),
                (PointType.BINARY_INPUT, handler.binary_inputs),
                (PointType.ANALOG_OUTPUT, handler.analog_outputs),
                (PointType.BINARY_OUTPUT, handler.binary_outputs),
            ):
                for index, value in values.items():
                    seen[(point_type, index)] = (value.value, value.quality)
            snapshot = gateway.engine.last
            assert snapshot is not None
            adapter: dict[str, Value] = {
                "dnp3.rated_power_w": gateway.rated_power_w,
                "dnp3.charge_discharge_enabled": snapshot.charge_discharge_enabled,
            }
            return seen, snapshot, gateway.outstation.points, adapter

    seen, snapshot, points, adapter = run(scenario)
    assert len(points) == 138  # 4 packs: 38 fleet points + 25 per pack
    for point in points:
        value, quality = seen[(point.type, point.index)]
        assert quality & (ONLINE | COMM_LOST) == ONLINE, (point.name, hex(quality))
        assert value == expected_count(point, snapshot, adapter), point.name
    # The per-pack banks against the simulator's own state (not through the gateway's sources).
    for number, endpoint in enumerate(fleet.endpoints, start=1):
        physics = fleet.snapshot(endpoint.pack_id)
        bank = 955 + 27 * (number - 1)
        assert seen[(PointType.ANALOG_INPUT, bank + 6)][0] == round(physics.state.soc_pct * 10)
        assert seen[(PointType.ANALOG_INPUT, bank + 1)][0] == round(physics.params.capacity_wh)
        assert seen[(PointType.BINARY_INPUT, 1100 + 8 * (number - 1))][0] is True  # node online
    assert seen[(PointType.ANALOG_INPUT, 27)][0] == 4  # number of batteries
    assert seen[(PointType.ANALOG_INPUT, 33)][0] == -seen[(PointType.ANALOG_INPUT, 32)][0] < 0
    assert seen[(PointType.ANALOG_INPUT, 44)][0] < 0  # AN2018: charging power is negative
    # An index between mapped points exists but was never written: RESTART, not ONLINE.
    assert seen[(PointType.ANALOG_INPUT, 0)] == (0.0, RESTART)


def test_power_targets_move_the_packs_and_bad_commands_change_nothing(
    tmp_path: Path,
    start_sim_fleet: StartFleet,
    free_tcp_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = start_sim_fleet(packs=3, speed=1.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})
    caplog.set_level(logging.INFO)

    def pack_power_w() -> float:
        return sum(fleet.snapshot(e.pack_id).operating.power_w for e in fleet.endpoints)

    async def scenario() -> None:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            engine = gateway.engine
            rated = gateway.rated_power_w
            assert rated == 3 * 1200.0  # three mp2000 packs, 1.2 kW each, learned from their limits

            def request_w() -> float:
                assert engine.last is not None
                return engine.last.command.request_w

            # AO93: 0.1 % of the rated power, + = discharge. The packs follow within two cycles.
            assert await master.direct_operate(analog_output_block(93, 500)) == SUCCESS
            await gateway.cycles(2)
            assert request_w() == pytest.approx(0.5 * rated)
            assert pack_power_w() == pytest.approx(0.5 * rated, abs=3 * 10.0)
            # The private watts AO (int32, index above 255), charging.
            assert await master.direct_operate(analog_output_block(1000, -1200)) == SUCCESS
            await gateway.cycles(2)
            assert request_w() == -1200.0
            assert pack_power_w() == pytest.approx(-1200.0, abs=3 * 10.0)
            # Out of range, unknown, read-only: refused, and nothing changes.
            assert await master.direct_operate(analog_output_block(93, 1001)) == OUT_OF_RANGE
            assert await master.direct_operate(analog_output_block(93, -2000, variation=2)) == OUT_OF_RANGE
            assert await master.direct_operate(analog_output_block(1000, int(rated) + 1)) == OUT_OF_RANGE
            assert await master.direct_operate(analog_output_block(94, 10)) == NOT_SUPPORTED
            assert await master.direct_operate(analog_output_block(537, 200)) == NOT_SUPPORTED  # an input
            assert await master.direct_operate(crob_block(5, LATCH_ON)) == NOT_SUPPORTED
            await gateway.cycles(2)
            assert request_w() == -1200.0
            # Select-before-operate, with a float object; OPERATE without SELECT is refused.
            assert await master.select(analog_output_block(93, 250.0, variation=3)) == SUCCESS
            assert await master.operate(analog_output_block(93, 250.0, variation=3)) == SUCCESS
            await gateway.cycles(2)
            assert request_w() == pytest.approx(0.25 * rated)
            assert await master.operate(analog_output_block(93, 300)) == NO_SELECT
            await gateway.cycles(2)
            assert request_w() == pytest.approx(0.25 * rated)

    run(scenario)
    accepted = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert len(accepted) == 3
    assert all("dnp3 master 1 @ 127.0.0.1" in message for message in accepted)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("OUT_OF_RANGE" in m and "AO93" in m for m in refused)


def test_reserve_and_ceiling_outputs_retune_the_balancer_within_its_rules(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=2, speed=1.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})

    async def scenario() -> None:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            engine = gateway.engine

            def limits() -> tuple[float, float]:
                assert engine.last is not None
                return engine.last.params.reserve_pct, engine.last.params.ceiling_pct

            assert limits() == (10.0, 95.0)  # the config's
            # AO100/AO101 in 0.1 %: reserve 20 %, ceiling 90 %; the balancer uses them the next cycle.
            assert await master.direct_operate(analog_output_block(100, 200)) == SUCCESS
            assert await master.direct_operate(analog_output_block(101, 900)) == SUCCESS
            await gateway.cycles(2)
            assert limits() == (20.0, 90.0)
            await master.integrity_poll()
            assert master.handler.analog_inputs[161].value == 200  # AI161 minimum reserve follows
            # A reserve that leaves no room below the ceiling (hysteresis 2 %), or beyond the range: refused.
            assert await master.direct_operate(analog_output_block(100, 890)) == OUT_OF_RANGE
            assert await master.direct_operate(analog_output_block(101, 1001)) == OUT_OF_RANGE
            await gateway.cycles(2)
            assert limits() == (20.0, 90.0)

    run(scenario)


def test_an_operate_after_the_select_timed_out_gets_timeout_and_changes_nothing(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    """IEEE 1815: an OPERATE matching a SELECT whose arm timer expired answers TIMEOUT (not NO_SELECT)."""
    fleet = start_sim_fleet(packs=2, speed=1.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port, "select_timeout_s": 0.5})

    async def scenario() -> None:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            assert await master.select(analog_output_block(100, 200)) == SUCCESS
            await asyncio.sleep(1.0)
            assert await master.operate(analog_output_block(100, 200)) == TIMEOUT
            await gateway.cycles(2)
            assert gateway.engine.last is not None and gateway.engine.last.params.reserve_pct == 10.0
            assert await master.select(analog_output_block(100, 200)) == SUCCESS  # in time: it works
            assert await master.operate(analog_output_block(100, 200)) == SUCCESS

    run(scenario)


def test_crobs_switch_balancing_maintenance_and_the_charge_discharge_mode(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=2, speed=1.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})

    async def scenario() -> None:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            engine = gateway.engine

            def last() -> CycleSnapshot:
                assert engine.last is not None
                return engine.last

            assert await master.direct_operate(crob_block(1000, LATCH_OFF)) == SUCCESS  # balancing off
            assert await master.select(crob_block(1100, LATCH_ON)) == SUCCESS  # pack-01 maintenance, SBO
            assert await master.operate(crob_block(1100, LATCH_ON)) == SUCCESS
            await gateway.cycles(2)
            assert last().command.balancing_enabled is False
            assert last().dispatch.node("pack-01").mode is NodeMode.MAINTENANCE
            await master.integrity_poll()
            assert master.handler.binary_inputs[1000].value is False  # BalancingEnabled
            assert master.handler.binary_inputs[1104].value is True  # status1.Maintenance
            assert master.handler.binary_outputs[1100].value is True
            assert await master.direct_operate(crob_block(1100, PULSE_ON_CLOSE)) == SUCCESS  # close = on
            assert await master.direct_operate(crob_block(1100, PULSE_ON)) == NOT_SUPPORTED  # not a latch
            assert await master.direct_operate(crob_block(1100, LATCH_OFF)) == SUCCESS
            # BO18 off: the fleet idles; a target written meanwhile waits for BO18 on.
            assert await master.direct_operate(analog_output_block(93, 400)) == SUCCESS
            await gateway.cycles(2)
            target = last().command.request_w
            assert target > 0
            assert await master.direct_operate(crob_block(18, LATCH_OFF)) == SUCCESS
            await gateway.cycles(2)
            assert last().command.request_w == 0.0
            assert await master.direct_operate(analog_output_block(93, 200)) == SUCCESS
            await gateway.cycles(2)
            assert last().command.request_w == 0.0
            assert await master.direct_operate(crob_block(18, LATCH_ON)) == SUCCESS
            await gateway.cycles(2)
            assert last().command.request_w == pytest.approx(target / 2)
            assert last().dispatch.node("pack-01").mode is not NodeMode.MAINTENANCE

    run(scenario)


def test_a_silent_pack_shows_comm_lost_not_stale_numbers(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})

    async def scenario() -> None:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            fleet.set_faults("pack-02", silent=True)
            for _ in range(100):  # bounded: until the engine gives the pack up
                await gateway.cycles(1)
                assert gateway.engine.last is not None
                if not gateway.engine.last.fleet.node("pack-02").online:
                    break
            await gateway.cycles(1)
            await master.integrity_poll()
            analog, binary = master.handler.analog_inputs, master.handler.binary_inputs
            bank2 = 955 + 27
            assert analog[bank2 + 6].quality & (ONLINE | COMM_LOST) == COMM_LOST  # SOC of pack-02
            assert analog[bank2 + 11].quality & (ONLINE | COMM_LOST) == COMM_LOST  # its power
            assert analog[955 + 6].quality & ONLINE  # pack-01 unaffected
            assert binary[1108].value is False and binary[1108].quality & ONLINE  # status2.Online
            assert binary[1109].value is True  # status2.CommFailed
            assert binary[0].value is True  # AN2018 BI0 system communication error
            assert analog[27].value == 2 and analog[8007].value == 1  # configured / online

    run(scenario)


def test_a_second_master_cannot_take_the_session(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})

    async def scenario() -> None:
        async with running_gateway(config), connected_master(free_tcp_port) as first:
            await first.integrity_poll()
            # another master (another address: the same address is the master reconnecting, docs/dnp3.md)
            with pytest.raises(Exception, match=r"(?i)link|timed out|closed|lost"):
                async with connected_master(free_tcp_port, timeout_s=2.0, source="127.0.0.2") as intruder:
                    await intruder.integrity_poll()
            await first.integrity_poll()
            assert first.handler.analog_inputs[27].value == 1

    run(scenario)


def test_power_target_before_the_rated_power_is_known_is_refused(tmp_path: Path) -> None:
    """With no pack reachable the rated power is unknown: AO93 cannot be scaled, so it is refused."""
    port = free_port()
    dead = Endpoint("pack-dead", "microstore/mp2000", "1.4.0", "127.0.0.1", free_port(), 1)
    config = dnp3_site_config(tmp_path, [dead], {"port": port})

    async def scenario() -> int:
        outstation = create(config, lambda update, apply=True: None)
        assert outstation is not None
        outstation.start()
        try:
            async with connected_master(port) as master:
                return await master.direct_operate(analog_output_block(93, 100))
        finally:
            outstation.stop()

    assert run(scenario) == HARDWARE_ERROR


def test_a_target_the_master_stops_refreshing_reverts_after_the_command_timeout(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    config = dnp3_site_config(
        tmp_path,
        fleet.endpoints,
        {"port": free_tcp_port},
        command={"default_request_w": 100, "timeout_s": 0.5},
    )

    async def scenario() -> tuple[float, float]:
        async with running_gateway(config) as gateway, connected_master(free_tcp_port) as master:
            assert await master.direct_operate(analog_output_block(1000, 600)) == SUCCESS
            await gateway.cycles(2)
            assert gateway.engine.last is not None
            commanded = gateway.engine.last.command.request_w
            await asyncio.sleep(0.8)  # no refresh
            await gateway.cycles(1)
            return commanded, gateway.engine.last.command.request_w

    assert run(scenario) == (600.0, 100.0)
