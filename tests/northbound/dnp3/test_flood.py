"""Unauthenticated garbage on the DNP3 port writes a bounded number of log lines, counted in the status:
garbage from the first byte is closed by the front door (one line), garbage after a valid link header
reaches the stack, whose lines are rate-limited."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest
import uvloop
from dnp3.core.crc import append_crc

from gateway import logbook
from tests.conftest import LOOPBACK, StartFleet
from tests.northbound.dnp3.support import dnp3_site_config, running_gateway

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

GARBAGE_BYTES = 1 << 20
CHUNK = 4096
LINK_HEADER = append_crc(bytes.fromhex("056405c90a000100"))  # a valid first frame: REQUEST_LINK_STATUS


def test_a_mebibyte_of_garbage_writes_a_bounded_number_of_lines(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = start_sim_fleet(packs=1, speed=1.0)
    config = dnp3_site_config(tmp_path, fleet.endpoints, {"port": free_tcp_port})
    caplog.set_level(logging.INFO)
    garbage = random.Random(17).randbytes(GARBAGE_BYTES)
    suppressed_before = logbook.counters()["suppressed_lines"]

    async def scenario() -> None:
        async with running_gateway(config) as gateway:
            caplog.clear()
            _, refused = await asyncio.open_connection(LOOPBACK, free_tcp_port)
            refused.write(garbage[:CHUNK])  # garbage from the first byte: the stack never sees it
            await refused.drain()
            refused.close()
            _, writer = await asyncio.open_connection(LOOPBACK, free_tcp_port)
            writer.write(LINK_HEADER)  # past the front door: the garbage that follows reaches the stack
            for start in range(0, GARBAGE_BYTES, CHUNK):
                writer.write(garbage[start : start + CHUNK])
                await writer.drain()
                # one chunk at a time to the stack, as a direct connection delivered them: the splice
                # would otherwise coalesce what the stack has not read yet, and the stack logs per read
                await asyncio.sleep(0.001)
            writer.close()
            # the stack reads what the front door spliced in after the master closed: let it finish
            for _ in range(100):
                await gateway.cycles(1)
                if logbook.counters()["suppressed_lines"] - suppressed_before >= 1000:
                    break
            await gateway.cycles(10)

    uvloop.run(asyncio.wait_for(scenario(), timeout=60))
    door = [r.getMessage() for r in caplog.records if r.name.startswith("gateway.northbound.frontdoor")]
    assert sum("reason=not-the-protocol" in line for line in door) == 1, door
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("gateway.northbound.dnp3")]
    skipped = [line for line in lines if line.startswith("Skipped")]
    # One source line of the stack logs every skipped run of bytes: LINES_PER_WINDOW of them get through.
    assert len(skipped) == logbook.LINES_PER_WINDOW, lines
    assert len(lines) <= 4 * logbook.LINES_PER_WINDOW + 4, lines  # all stack sources, connect and close
    assert logbook.counters()["suppressed_lines"] - suppressed_before >= 1000  # ~3600 lines before the limit
