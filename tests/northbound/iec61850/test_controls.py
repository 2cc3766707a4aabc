"""SCADA controls and quality against the gateway in this process, cycle by cycle, with the MMS clients
in their own processes (never an IedConnection inside the gateway's process: notes/iec61850.md).

The engine runs on this test's uvloop; cycles run only when the test calls `run_cycle`, so "within two
cycles" is counted, not timed. Clients run as asyncio subprocesses so the loop keeps turning (an
accepted control reaches the engine through `call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from gateway.engine import Engine
from gateway.fleet import Quality
from gateway.northbound.iec61850 import create
from gateway.northbound.iec61850.adapter import Iec61850Adapter
from gateway.sim.fleet import FleetThread
from tests.conftest import StartFleet, free_port
from tests.northbound.iec61850.helpers import CLIENT_TIMEOUT_S, client_command, iec_section, last_json
from tests.test_engine import site_config, until_online

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

T = TypeVar("T")
PACKS = 3
QUALITY_QUESTIONABLE = 0b11
QUALITY_OLD_DATA = 0x80


async def client(port: int, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *client_command(port, *args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=CLIENT_TIMEOUT_S)
    return last_json(out.decode() + "\n" + err.decode())


async def read_until(port: int, expected: list[Any], *targets: str) -> list[Any]:
    """Read until the values equal `expected` (the updater thread publishes shortly after a cycle)."""
    values: list[Any] = []
    for _ in range(20):
        values = (await client(port, "read", *targets))["values"]
        if values == expected:
            break
        await asyncio.sleep(0.05)
    return values


def setpoints(fleet: FleetThread) -> list[float]:
    return [fleet.snapshot(e.pack_id).state.setpoint_w for e in fleet.endpoints]


def powers(fleet: FleetThread) -> list[float]:
    return [fleet.snapshot(e.pack_id).operating.power_w for e in fleet.endpoints]


def with_gateway(
    tmp_path: Path, fleet: FleetThread, scenario: Callable[[Engine, Iec61850Adapter, int], Awaitable[T]]
) -> T:
    """Run `scenario` with the engine started, every pack online and the MMS server serving."""
    port = free_port()
    config = site_config(tmp_path, fleet.endpoints, iec_section(port))
    engine = Engine(config)
    adapter = create(config, engine.submit)
    assert adapter is not None

    async def run() -> T:
        await engine.start()
        adapter.start()
        engine.publishers.append(adapter)
        try:
            await until_online(engine, len(fleet.endpoints))
            return await scenario(engine, adapter, port)
        finally:
            adapter.stop()
            await engine.shutdown()

    return uvloop.run(asyncio.wait_for(run(), timeout=90))


def test_operate_out_w_set_moves_the_packs_within_two_cycles(
    tmp_path: Path, start_sim_fleet: StartFleet, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)
    caplog.set_level(logging.INFO, logger="gateway")

    async def scenario(engine: Engine, adapter: Iec61850Adapter, port: int) -> int:
        assert sum(setpoints(fleet)) == 0.0
        answer = await client(port, "operate", "SOCGWFLEET/DRCC1.OutWSet", "900")
        assert answer["ok"], answer
        for cycle in (1, 2):
            await engine.run_cycle()
            if abs(sum(setpoints(fleet)) - 900.0) < 1.0:
                return cycle
        raise AssertionError(f"after two cycles the packs' setpoints are {setpoints(fleet)}")

    cycles = with_gateway(tmp_path, fleet, scenario)
    assert cycles <= 2
    assert sum(powers(fleet)) == pytest.approx(0.0)  # shutdown wrote the safe setpoint back
    accepted = [r.getMessage() for r in caplog.records if "SOCGWFLEET/DRCC1.OutWSet = 900" in r.getMessage()]
    assert accepted and "from 127.0.0.1:" in accepted[0]


def test_packs_deliver_the_requested_power(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)

    async def scenario(engine: Engine, adapter: Iec61850Adapter, port: int) -> tuple[list[float], list[Any]]:
        assert (await client(port, "operate", "SOCGWFLEET/DRCC1.OutWSet", "-600"))["ok"]
        await engine.run_cycle()
        await engine.run_cycle()
        delivered = powers(fleet)
        await engine.run_cycle()  # the packs' measured power reaches the model
        shown = await read_until(
            port,
            [-600.0, -600.0],
            "SOCGWFLEET/DRCC1.OutWSet.mxVal.f",
            "MX",
            "SOCGWFLEET/MMXU1.TotW.mag.f",
            "MX",
        )
        return delivered, shown

    delivered, shown = with_gateway(tmp_path, fleet, scenario)
    assert sum(delivered) == pytest.approx(-600.0, abs=1.0)
    assert shown == [-600.0, -600.0]


def test_an_out_of_range_operate_fails_at_the_client_and_changes_nothing(
    tmp_path: Path, start_sim_fleet: StartFleet, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)
    caplog.set_level(logging.INFO, logger="gateway")

    async def scenario(engine: Engine, adapter: Iec61850Adapter, port: int) -> list[dict[str, Any]]:
        answers = [
            await client(port, "operate", "SOCGWFLEET/DRCC1.OutWSet", value)
            for value in ("20000000", "-20000000", "nan")
        ]
        snapshots = [await engine.run_cycle(), await engine.run_cycle()]
        assert [s.command.request_w for s in snapshots] == [0.0, 0.0]
        assert sum(setpoints(fleet)) == 0.0
        return answers

    answers = with_gateway(tmp_path, fleet, scenario)
    assert [answer["ok"] for answer in answers] == [False, False, False]
    refused = [r for r in caplog.records if "refused" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(refused) == 3
    assert all("from 127.0.0.1:" in r.getMessage() for r in refused)


def test_der_str_switches_balancing_off_and_shows_it(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)

    async def scenario(engine: Engine, adapter: Iec61850Adapter, port: int) -> tuple[bool, list[Any]]:
        assert (await client(port, "operate", "SOCGWFLEET/DRCC1.DERStr", "false"))["ok"]
        snapshot = await engine.run_cycle()
        shown = await read_until(port, [False], "SOCGWFLEET/DRCC1.DERStr.stVal", "ST")
        return snapshot.command.balancing_enabled, shown

    enabled, shown = with_gateway(tmp_path, fleet, scenario)
    assert enabled is False
    assert shown == [False]


def test_a_pack_whose_poll_fails_shows_questionable_old_data(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)

    async def scenario(engine: Engine, adapter: Iec61850Adapter, port: int) -> list[Any]:
        fleet.set_faults("pack-02", silent=True)
        for _ in range(50):
            snapshot = await engine.run_cycle()
            if snapshot.fleet.node("pack-02").quality is Quality.STALE:
                break
        else:
            raise AssertionError("pack-02 never turned stale")
        # no cycle runs while the client reads: the model shows exactly that snapshot
        values = (
            await client(
                port, "read", "SOCGWPACK_02/ZBAT1.Soc.mag.f", "MX", "SOCGWPACK_02/ZBAT1.Soc.q", "MX",
                "SOCGWPACK_01/ZBAT1.Soc.q", "MX",
            )
        )["values"]  # fmt: skip
        fleet.clear_faults("pack-02")
        return list(values)

    soc, quality, other_quality = with_gateway(tmp_path, fleet, scenario)
    assert soc == pytest.approx(fleet.snapshot("pack-02").state.soc_pct, abs=0.051)  # the last value read
    assert quality & 0b11 == QUALITY_QUESTIONABLE and quality & QUALITY_OLD_DATA
    assert other_quality == 0
