"""The outstation's life cycle: it starts and stops cleanly again and again in one process, reports a
busy port by name, and nothing raised while handling a control reaches the stack."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
import uvloop

from gateway.northbound.adapter import NorthboundError
from gateway.northbound.dnp3 import create
from gateway.northbound.dnp3.outstation import Dnp3Outstation
from gateway.sim.fleet import Endpoint
from gateway.site_command import CommandUpdate
from tests.conftest import LOOPBACK, free_port
from tests.northbound.dnp3.support import (
    HARDWARE_ERROR,
    analog_output_block,
    connected_master,
    dnp3_site_config,
)

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

CYCLES = 10


def outstation(tmp_path: Path, port: int, submit: object = None) -> Dnp3Outstation:
    node = Endpoint("pack-01", "microstore/mp2000", "1.4.0", LOOPBACK, free_port(), 1)
    config = dnp3_site_config(tmp_path, [node], {"port": port, "rated_power_w": 1000})
    adapter = create(config, submit if callable(submit) else (lambda update, apply=True: None))
    assert adapter is not None
    return adapter


def resources() -> tuple[int, int]:
    """OS threads and open file descriptors of this process."""
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def test_ten_start_stop_cycles_leave_no_thread_or_descriptor_behind(tmp_path: Path) -> None:
    port = free_port()

    async def one_cycle() -> float:
        adapter = outstation(tmp_path, port)
        adapter.start()
        try:
            async with connected_master(port) as master:
                await master.integrity_poll()
                adapter.stop()  # with the master still connected
                return master.handler.analog_inputs[32].value
        finally:
            adapter.stop()  # a second stop does nothing

    uvloop.run(asyncio.wait_for(one_cycle(), 30))  # warm-up: imports, logging, the loop policy
    before = resources()
    for _ in range(CYCLES):
        uvloop.run(asyncio.wait_for(one_cycle(), 30))
    assert resources() == before


def test_a_busy_port_is_reported_by_number(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        adapter = outstation(tmp_path, port)
        with pytest.raises(NorthboundError, match=f"{LOOPBACK}:{port}"):
            adapter.start()
        adapter.stop()  # nothing to stop: harmless


def test_an_exception_while_handling_a_control_does_not_reach_the_stack(tmp_path: Path) -> None:
    def broken_submit(update: CommandUpdate, *, apply: bool = True) -> None:
        raise RuntimeError("the engine is gone")

    port = free_port()
    adapter = outstation(tmp_path, port, broken_submit)

    async def scenario() -> tuple[int, float]:
        adapter.start()
        try:
            async with connected_master(port) as master:
                status = await master.direct_operate(analog_output_block(93, 100))
                await master.integrity_poll()  # the outstation still answers
                return status, master.handler.analog_inputs[32].value
        finally:
            adapter.stop()

    status, rated = uvloop.run(asyncio.wait_for(scenario(), 30))
    assert status == HARDWARE_ERROR
    assert rated == 0.0  # nothing published yet: the stack's initial value
