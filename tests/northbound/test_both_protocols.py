"""One gateway serving DNP3 and IEC 61850 at once: the same control makes the same site command and
the same dispatch on both, the same bad value is refused on both, and a stale or offline pack shows
the quality docs/quality.md documents on both.

The engine runs on this test's uvloop and cycles only when the test calls `run_cycle`, so nothing
moves while the masters read. The DNP3 master (dnp3py) runs in the same loop; the IEC 61850 client
(libiec61850) in its own process, as an asyncio subprocess so the loop keeps turning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from gateway.balancer import NodeMode
from gateway.engine import Engine
from gateway.fleet import Quality
from gateway.northbound.registry import create_adapters
from gateway.sim.fleet import FleetThread
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from tests.conftest import StartFleet, free_port
from tests.northbound.dnp3.support import (
    LATCH_OFF,
    LATCH_ON,
    OUT_OF_RANGE,
    SUCCESS,
    MasterSession,
    analog_output_block,
    connected_master,
    crob_block,
)
from tests.northbound.iec61850.helpers import CLIENT_TIMEOUT_S, client_command, iec_section, last_json
from tests.test_engine import site_config, until_online

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

T = TypeVar("T")
PACKS = 3
# DNP3 flags (IEEE 1815) and IEC 61850 quality bits (validity in the low two bits), as docs/quality.md.
ONLINE, COMM_LOST = 0x01, 0x04
IEC_VALIDITY, IEC_QUESTIONABLE, IEC_INVALID = 0b11, 0b11, 0b10
IEC_FAILURE, IEC_OLD_DATA = 0x40, 0x80
SOC_OF_PACK_2 = 955 + 27 + 6  # DNP3 AI: AN2018 bank 2, SOC
PACK_2_SOC_IEC = ("SOCGWPACK_02/ZBAT1.Soc.mag.f", "MX", "SOCGWPACK_02/ZBAT1.Soc.q", "MX")


async def iec(port: int, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *client_command(port, *args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=CLIENT_TIMEOUT_S)
    return last_json(out.decode() + "\n" + err.decode())


@dataclasses.dataclass
class Both:
    engine: Engine
    dnp3: MasterSession
    iec_port: int
    updates: list[CommandUpdate]

    async def cycles(self, count: int = 2) -> CycleSnapshot:
        for _ in range(count):
            snapshot = await self.engine.run_cycle()
            await asyncio.sleep(0.05)  # the IEC 61850 updater thread writes the model
        return snapshot


def with_both(tmp_path: Path, fleet: FleetThread, scenario: Callable[[Both], Awaitable[T]]) -> T:
    """Run `scenario` with one engine, both adapters serving, every pack online, a DNP3 master."""
    iec_port, dnp3_port = free_port(), free_port()
    extra = iec_section(iec_port) + "  dnp3: " + json.dumps({"port": dnp3_port}) + "\n"
    config = site_config(tmp_path, fleet.endpoints, extra)
    engine = Engine(config)
    updates: list[CommandUpdate] = []

    def recording_submit(update: CommandUpdate, *, apply: bool = True) -> str | None:
        refusal = engine.submit(update, apply=apply)
        if refusal is None and apply:
            updates.append(update)
        return refusal

    async def run() -> T:
        adapters = create_adapters(config, recording_submit)
        assert sorted(adapter.name for adapter in adapters) == ["dnp3", "iec61850"]
        await engine.start()
        try:
            for adapter in adapters:
                adapter.start()
                engine.publishers.append(adapter)
            await until_online(engine, len(fleet.endpoints))
            async with connected_master(dnp3_port) as master:
                both = Both(engine, master, iec_port, updates)
                await both.cycles()
                return await scenario(both)
        finally:
            for adapter in adapters:
                adapter.stop()
            await engine.shutdown()

    return uvloop.run(asyncio.wait_for(run(), timeout=120))


def without_source(update: CommandUpdate) -> CommandUpdate:
    return dataclasses.replace(update, source="")


def effect(snapshot: CycleSnapshot) -> tuple[object, ...]:
    """What the balancer decided, as far as the three controls reach."""
    return (
        snapshot.params.reserve_pct,
        snapshot.params.ceiling_pct,
        snapshot.command.maintenance,
        snapshot.dispatch.node("pack-01").mode,
        tuple(round(node.setpoint_w, 3) for node in snapshot.dispatch.nodes),
    )


def test_reserve_ceiling_and_maintenance_do_the_same_on_dnp3_and_iec61850(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)  # frozen physics: the same state for both runs

    async def scenario(both: Both) -> None:
        port, dnp3 = both.iec_port, both.dnp3
        assert (await iec(port, "operate", "SOCGWFLEET/DRCC1.OutWSet", "900"))["ok"]
        at_rest = effect(await both.cycles())
        # DNP3: AO100 minimum reserve 20 %, AO101 maximum reserve 90 % (0.1 %), BO1100 pack-01 maintenance.
        both.updates.clear()
        assert await dnp3.direct_operate(analog_output_block(100, 200)) == SUCCESS
        assert await dnp3.direct_operate(analog_output_block(101, 900)) == SUCCESS
        assert await dnp3.direct_operate(crob_block(1100, LATCH_ON)) == SUCCESS
        by_dnp3 = [without_source(update) for update in both.updates]
        moved_by_dnp3 = effect(await both.cycles())
        # Back to where it was, then the same through IEC 61850.
        assert await dnp3.direct_operate(analog_output_block(100, 100)) == SUCCESS
        assert await dnp3.direct_operate(analog_output_block(101, 950)) == SUCCESS
        assert await dnp3.direct_operate(crob_block(1100, LATCH_OFF)) == SUCCESS
        assert effect(await both.cycles()) == at_rest
        both.updates.clear()
        assert (await iec(port, "operate", "SOCGWFLEET/DSTO1.MinRsvPct", "20"))["ok"]
        assert (await iec(port, "operate", "SOCGWFLEET/DSTO1.MaxRsvPct", "90"))["ok"]
        assert (await iec(port, "operate", "SOCGWPACK_01/ZBAT1.MntCtl", "true"))["ok"]
        by_iec = [without_source(update) for update in both.updates]
        moved_by_iec = effect(await both.cycles())

        assert (
            by_dnp3
            == by_iec
            == [
                CommandUpdate("", reserve_pct=20.0),
                CommandUpdate("", ceiling_pct=90.0),
                CommandUpdate("", maintenance=("pack-01", True)),
            ]
        )
        assert moved_by_dnp3 == moved_by_iec != at_rest
        assert moved_by_iec[:4] == (20.0, 90.0, frozenset({"pack-01"}), NodeMode.MAINTENANCE)
        shown = (
            await iec(
                port, "read", "SOCGWFLEET/DSTO1.MinRsvPct.mxVal.f", "MX",
                "SOCGWFLEET/DSTO1.MaxRsvPct.mxVal.f", "MX", "SOCGWPACK_01/ZBAT1.MntCtl.stVal", "ST",
            )
        )["values"]  # fmt: skip
        assert shown == [20.0, 90.0, True]

        # Out of range on both: beyond 0..100 %, and a reserve that leaves no room below the ceiling
        # (hysteresis 2 %), which the site command state refuses when it is applied.
        both.updates.clear()
        assert await dnp3.direct_operate(analog_output_block(100, 1001)) == OUT_OF_RANGE
        assert await dnp3.direct_operate(analog_output_block(100, 890)) == OUT_OF_RANGE
        assert not (await iec(port, "operate", "SOCGWFLEET/DSTO1.MinRsvPct", "100.5"))["ok"]
        assert not (await iec(port, "operate", "SOCGWFLEET/DSTO1.MaxRsvPct", "-1"))["ok"]
        late = await iec(port, "operate", "SOCGWFLEET/DSTO1.MinRsvPct", "89")  # refused after the check
        assert not late["ok"], late
        assert both.updates == []
        assert effect(await both.cycles()) == moved_by_iec

    with_both(tmp_path, fleet, scenario)


def test_a_stale_then_offline_pack_shows_the_documented_quality_on_both(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)

    async def read_both(both: Both) -> tuple[tuple[float, int], list[Any]]:
        await both.dnp3.integrity_poll()
        point = both.dnp3.handler.analog_inputs[SOC_OF_PACK_2]
        return (point.value, point.quality), (await iec(both.iec_port, "read", *PACK_2_SOC_IEC))["values"]

    async def until(both: Both, quality: Quality) -> None:
        for _ in range(100):
            snapshot = await both.cycles(1)
            if snapshot.fleet.node("pack-02").quality is quality:
                return
        raise AssertionError(f"pack-02 never turned {quality}")

    async def scenario(both: Both) -> list[tuple[tuple[float, int], list[Any]]]:
        good = await read_both(both)
        fleet.set_faults("pack-02", silent=True)
        await until(both, Quality.STALE)
        stale = await read_both(both)
        await until(both, Quality.FAILED)
        await both.cycles(1)
        offline = await read_both(both)
        fleet.clear_faults("pack-02")
        return [good, stale, offline]

    (good, stale, offline) = with_both(tmp_path, fleet, scenario)
    soc_count = round(fleet.snapshot("pack-02").state.soc_pct * 10)
    # good: DNP3 ONLINE; IEC 61850 good
    assert list(good[0]) == [soc_count, ONLINE]
    assert good[1][0] == pytest.approx(soc_count / 10, abs=0.051) and good[1][1] == 0
    # stale: the last value read; DNP3 ONLINE | COMM_LOST; IEC 61850 questionable + oldData
    assert list(stale[0]) == [soc_count, ONLINE | COMM_LOST]
    assert stale[1][0] == good[1][0]
    assert stale[1][1] & IEC_VALIDITY == IEC_QUESTIONABLE and stale[1][1] & IEC_OLD_DATA
    # offline: the last value kept; DNP3 COMM_LOST without ONLINE; IEC 61850 invalid + failure
    assert list(offline[0]) == [soc_count, COMM_LOST]
    assert offline[1][0] == good[1][0]
    assert offline[1][1] & IEC_VALIDITY == IEC_INVALID and offline[1][1] & IEC_FAILURE
