"""A hostile Modbus server on loopback: each mangled answer gets its own fault code, never a traceback,
and a healthy pack polled beside it stays good every cycle.

The hostile server is a proxy in front of a real simulated pack: identification goes through unharmed,
then every answer is mangled the way the case says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.fleet import Quality
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import Endpoint
from gateway.southbound.errors import ErrorCode
from tests.conftest import LOOPBACK, StartFleet
from tests.southbound.helpers import run, session_for

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

MP2000 = "microstore/mp2000"
POLLS = 12

Mangle = Callable[[bytes], bytes]  # the pack's true answer -> what the hostile server sends instead


class HostileProxy:
    """Forwards each request to `upstream` and sends back `mangle(answer)` (the answer itself while None)."""

    def __init__(self, upstream: Endpoint) -> None:
        self.upstream = upstream
        self.mangle: Mangle | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.upstream.host, self.upstream.port)
        try:
            while True:
                request = await _read_frame(reader)
                up_writer.write(request)
                answer = await _read_frame(up_reader)
                writer.write(answer if self.mangle is None else self.mangle(answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the gateway dropped the connection: that is its answer to a mangled frame
        finally:
            up_writer.close()
            writer.close()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(6)
    return header + await reader.readexactly(int.from_bytes(header[4:6], "big"))


@contextlib.asynccontextmanager
async def hostile(upstream: Endpoint) -> AsyncIterator[tuple[HostileProxy, Endpoint]]:
    proxy = HostileProxy(upstream)
    server = await asyncio.start_server(proxy._serve, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield proxy, dataclasses.replace(upstream, host=LOOPBACK, port=port)
    finally:
        server.close()


def with_tid(answer: bytes, tid: int) -> bytes:
    return struct.pack(">H", tid) + answer[2:]


def undecodable_with_tid_0(answer: bytes) -> bytes:
    # Function code 0x63 with the right length: pymodbus cannot decode it and raised inside its receive
    # callback ("Fatal error on transport") when the transaction id was 0.
    return struct.pack(">HHHBB", 0, 0, 2, answer[6], 0x63)


CASES: list[tuple[str, Mangle, ErrorCode]] = [
    ("transaction id 0, undecodable", undecodable_with_tid_0, ErrorCode.MALFORMED),
    ("transaction id 0, well formed", lambda answer: with_tid(answer, 0), ErrorCode.WRONG_TID),
    (
        "another transaction id",
        lambda answer: with_tid(answer, (int.from_bytes(answer[:2], "big") + 7000) % 65536),
        ErrorCode.WRONG_TID,
    ),
    ("a burst beyond 516 bytes", lambda answer: answer + bytes(range(256)) * 3, ErrorCode.MALFORMED),
    ("a huge length field", lambda answer: answer[:4] + b"\xff\xff" + answer[6:], ErrorCode.MALFORMED),
    ("half a frame", lambda answer: answer[: len(answer) // 2], ErrorCode.MALFORMED),
    ("another unit id", lambda answer: answer[:6] + b"\x09" + answer[7:], ErrorCode.UNIT_MISMATCH),
]


@pytest.mark.parametrize(("mangle", "code"), [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_a_mangled_answer_gets_its_own_code_and_no_traceback(
    start_sim_fleet: StartFleet,
    profile_library: ProfileLibrary,
    caplog: pytest.LogCaptureFixture,
    mangle: Mangle,
    code: ErrorCode,
) -> None:
    fleet = start_sim_fleet(packs=2)
    profile = profile_library.get(MP2000)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> tuple[list[ErrorCode | None], list[Quality]]:
        async with hostile(fleet.endpoint("pack-01")) as (proxy, endpoint):
            victim = session_for(endpoint, profile)
            healthy = session_for(fleet.endpoint("pack-02"), profile)
            sessions = (victim, healthy)
            try:
                for session in sessions:
                    await session.connect(time.monotonic())
                assert (await victim.poll(time.monotonic())).quality is Quality.GOOD
                proxy.mangle = mangle
                codes: list[ErrorCode | None] = []
                healthy_qualities: list[Quality] = []
                for _ in range(POLLS):
                    now = time.monotonic()
                    bad, good = await asyncio.gather(victim.poll(now), healthy.poll(now))
                    codes.append(bad.error_code if bad.quality is not Quality.GOOD else None)
                    healthy_qualities.append(good.quality)
                    await asyncio.sleep(0.05)
                return codes, healthy_qualities
            finally:
                for session in sessions:
                    await session.close()

    codes, healthy_qualities = run(scenario())
    assert codes[0] is code, codes  # at once: not a timeout first
    assert set(codes) <= {code, ErrorCode.NOT_CONNECTED, None}, codes  # None: reconnected, not yet re-asked
    assert code in codes[1:], codes
    assert healthy_qualities == [Quality.GOOD] * POLLS
    tracebacks = [r for r in caplog.records if r.exc_info is not None or "Fatal error" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_hundred_mangled_connections_leave_descriptors_and_memory_flat(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    """Each round connects, gets an answer with a wrong transaction id and drops the connection: after
    100 rounds the process holds the same descriptors and about the same memory as after the first."""
    fleet = start_sim_fleet(packs=1)
    profile = profile_library.get(MP2000)

    async def scenario() -> tuple[tuple[int, int], tuple[int, int]]:
        async with hostile(fleet.endpoint("pack-01")) as (proxy, endpoint):
            victim = session_for(endpoint, profile)
            proxy.mangle = lambda answer: with_tid(answer, 0)

            async def round_() -> None:
                with contextlib.suppress(Exception):  # the identification itself may be refused
                    await victim.connect(time.monotonic())
                reading = await victim.poll(time.monotonic())
                assert reading.quality is not Quality.GOOD
                await victim.close()

            async def settled() -> tuple[int, int]:
                await asyncio.sleep(0.2)  # the proxy closes its side of each dropped connection
                return _open_descriptors(), _resident_bytes()

            for _ in range(5):  # warm up: first-use allocations are not a leak
                await round_()
            before = await settled()
            for _ in range(100):
                await round_()
            return before, await settled()

    (fds_before, rss_before), (fds_after, rss_after) = run(scenario())
    assert fds_after == fds_before
    assert rss_after - rss_before < 4 * 1024 * 1024
