"""DNP3 events: deadbands decide what is an event, unsolicited responses carry them, and the event
buffers keep them while no master is connected (up to their configured size)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop

from tests.conftest import StartFleet
from tests.northbound.dnp3.support import (
    IIN_EVENT_BUFFER_OVERFLOW,
    Gateway,
    MasterSession,
    connected_master,
    dnp3_site_config,
    running_gateway,
)

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

T = TypeVar("T")
BANK1_SOC = 955 + 6  # AN2018 "Battery Bank #1 Actual State of Charge"
LISTEN_S = 1.0  # ten 100 ms cycles

# One SOC per pack at index n - 1, nothing else: every event of the outstation is one of these.
SOC_ONLY_MAP = """\
map_version: "1.0.0"
description: one state of charge per pack
max_nodes: 4
node_blocks:
  - name: bank
    type: analog_input
    start: 0
    stride: 1
    points:
      - { offset: 0, name: Soc, source: node.soc_pct, scale: 0.1, unit: "%", class: 1, deadband: 5 }
"""


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(asyncio.wait_for(scenario(), timeout=60))


def unsolicited_values(master: MasterSession, index: int) -> list[float]:
    return [value for i, value, unsolicited in master.handler.analog_log if i == index and unsolicited]


async def listen(master: MasterSession, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        await master.runner.listen_unsolicited(timeout=remaining)


def test_unsolicited_soc_event_beyond_the_deadband_only(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port, "unsolicited": True})

    async def scenario() -> tuple[list[float], list[float], float]:
        async with running_gateway(config), connected_master(free_tcp_port) as master:
            await master.integrity_poll()
            await master.runner.enable_unsolicited()
            master.clear()
            soc = fleet.snapshot("pack-01").state.soc_pct
            fleet.update_state("pack-01", soc_pct=soc + 2.0)  # 20 counts, deadband 5
            for _ in range(20):  # bounded: until the event arrives
                await master.runner.listen_unsolicited(timeout=0.5)
                if unsolicited_values(master, BANK1_SOC):
                    break
            beyond = unsolicited_values(master, BANK1_SOC)
            master.clear()
            fleet.update_state("pack-01", soc_pct=soc + 2.3)  # 3 counts: inside the deadband
            await listen(master, LISTEN_S)
            inside = unsolicited_values(master, BANK1_SOC)
            await master.integrity_poll()  # the static value moved all the same
            return beyond, inside, master.handler.analog_inputs[BANK1_SOC].value

    beyond, inside, static = run(scenario)
    assert beyond == [850.0 + 20.0]
    assert inside == []
    assert static == 873.0


def test_events_wait_for_a_reconnecting_master_up_to_the_buffer_size(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    map_path = tmp_path / "soc-only.yaml"
    map_path.write_text(SOC_ONLY_MAP)
    dnp3 = {"port": free_tcp_port, "map": str(map_path), "event_buffer": {"analog": 5}}
    config = dnp3_site_config(tmp_path, fleet.endpoints, dnp3)

    async def collect_after_outage(gateway: Gateway, steps: range) -> tuple[list[float], bool]:
        for step in steps:  # the master is away: each change is one event in the buffer
            fleet.update_state("pack-01", soc_pct=50.0 + step)
            await gateway.cycles(2)
        async with connected_master(free_tcp_port) as master:
            responses = await master.class_poll()
            values = [value for index, value, _ in master.handler.analog_log if index == 0]
            overflow = any(response.iin & IIN_EVENT_BUFFER_OVERFLOW for response in responses)
            return values, overflow

    async def scenario() -> tuple[tuple[list[float], bool], tuple[list[float], bool]]:
        async with running_gateway(config) as gateway:
            async with connected_master(free_tcp_port) as master:
                await master.integrity_poll()  # collects (and so clears) whatever is buffered
            within = await collect_after_outage(gateway, range(1, 5))  # 4 events, buffer of 5
            beyond = await collect_after_outage(gateway, range(5, 13))  # 8 events, buffer of 5
            return within, beyond

    within, beyond = run(scenario)
    assert within == ([510.0, 520.0, 530.0, 540.0], False)
    values, overflow = beyond
    assert overflow
    assert values == [580.0, 590.0, 600.0, 610.0, 620.0]  # the newest five, in order
