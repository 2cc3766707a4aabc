"""Helpers for the DNP3 tests: the gateway on the simulator in the test's loop, and an independent master.

The master is dnp3py (pure Python, its own DNP3 implementation). What it lacks is added here, from the
standard and not from the outstation's code: control objects for indices above 255 (its CommandBuilder
writes a one-byte count with the two-byte-index qualifier 0x28), the status octet of the echoed
controls (it frames but does not deliver them), and a TLS channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnp3.application.builder import (
    build_direct_operate_request,
    build_operate_request,
    build_select_request,
)
from dnp3.application.fragment import ObjectBlock
from dnp3.application.parser import parse_response
from dnp3.application.qualifiers import ObjectHeader
from dnp3.master import DefaultSOEHandler, Master, MasterConfig, MasterTcpRunner
from dnp3.master.handler import AnalogValue, ResponseInfo
from dnp3.transport_io.channel import ChannelState, TcpConfig
from dnp3.transport_io.tcp_client import TcpClientChannel

from gateway.commands.run import serve
from gateway.config import SiteConfig, load_config
from gateway.engine import Engine
from gateway.northbound import dnp3
from gateway.northbound.dnp3.outstation import Dnp3Outstation
from gateway.sim.fleet import Endpoint
from tests.conftest import LOOPBACK, PROFILES

OUTSTATION_ADDRESS = 10
MASTER_ADDRESS = 1
WAIT_S = 20.0

# Control codes of a CROB (IEEE 1815 table: operation type in the low nibble, trip/close in the top bits).
LATCH_ON = 0x03
LATCH_OFF = 0x04
PULSE_ON = 0x01
PULSE_ON_CLOSE = 0x41
PULSE_ON_TRIP = 0x81
# Command status octets.
SUCCESS = 0
TIMEOUT = 1
NO_SELECT = 2
NOT_SUPPORTED = 4
HARDWARE_ERROR = 6
OUT_OF_RANGE = 12
# IIN2.3: an event buffer overflowed.
IIN_EVENT_BUFFER_OVERFLOW = 0x0800
COUNT_AND_INDEX_16 = 0x28  # qualifier: 2-byte count, 2-byte index prefix

ANALOG_OUTPUT_FORMATS = {1: "<i", 2: "<h", 3: "<f", 4: "<d"}  # g41 variations


def dnp3_site_config(
    tmp_path: Path,
    endpoints: Sequence[Endpoint],
    dnp3: Mapping[str, Any],
    *,
    command: Mapping[str, Any] | None = None,
) -> SiteConfig:
    """A site config for the simulated packs with a `northbound.dnp3` section (JSON is YAML)."""
    document: dict[str, Any] = {
        "site": {"name": "dnp3-test", "cycle_ms": 100},
        "nodes": [
            {"id": e.pack_id, "host": e.host, "port": e.port, "unit": e.unit_id, "profile": e.profile_key}
            for e in endpoints
        ],
        "command": dict(command or {"default_request_w": 0}),
        "logging": {"level": "info", "balancing_log": None},
        "status": {"socket": str(tmp_path / "status.sock")},
        "northbound": {"dnp3": dict(dnp3)},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(document, indent=2))
    return load_config(path, [PROFILES])


@dataclass
class Gateway:
    engine: Engine
    outstation: Dnp3Outstation  # built from the same config, not started: its point list

    @property
    def rated_power_w(self) -> float | None:
        """The rated power behind AO93 in this cycle (configured, else learned), as the outstation's."""
        assert self.engine.last is not None
        return self.engine.last.rated_power_w(self.outstation.settings.rated_power_w)

    async def cycles(self, count: int) -> None:
        """Wait until `count` more cycles have run (bounded)."""
        assert self.engine.last is not None
        target = self.engine.last.index + count
        for _ in range(int(WAIT_S / 0.02)):
            if self.engine.last.index >= target:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the engine did not run {count} cycles in {WAIT_S} s")


@contextlib.asynccontextmanager
async def running_gateway(config: SiteConfig) -> AsyncIterator[Gateway]:
    """`socgw run` in this loop (serve(): the outstation in its own process, engine cycling) until the
    block ends."""
    engine = Engine(config)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(engine, stop))
    try:
        for _ in range(int(WAIT_S / 0.05)):
            if task.done():
                await task  # raises what stopped it
            last = engine.last
            if last is not None and len(last.fleet.online_nodes) == len(config.nodes):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the nodes did not come online: {engine.status()}")
        outstation = dnp3.create(config, engine.submit)
        assert outstation is not None
        gateway = Gateway(engine, outstation)
        await gateway.cycles(2)  # a publish with every node online
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=WAIT_S)


class RecordingHandler(DefaultSOEHandler):
    """dnp3py's handler (last value per point), plus every analog input value in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.analog_log: list[tuple[int, float, bool]] = []  # (index, value, unsolicited)

    def on_analog_input(self, values: list[AnalogValue], info: ResponseInfo) -> None:
        super().on_analog_input(values, info)
        self.analog_log.extend((value.index, value.value, info.is_unsolicited) for value in values)


@dataclass
class RecordingMaster(Master):
    """dnp3py's Master, keeping every raw response fragment (for the control statuses)."""

    responses: list[bytes] = field(default_factory=list)

    def process_response(self, data: bytes) -> ResponseInfo | None:
        self.responses.append(data)
        return super().process_response(data)


@dataclass
class TlsClientChannel(TcpClientChannel):
    """dnp3py's TCP channel over TLS (it has none): the same stream, opened with an SSL context; and
    from a given source address (a second master on this machine: 127.0.0.2)."""

    ssl_context: ssl.SSLContext | None = None
    source: str | None = None

    async def open(self) -> None:
        local = None if self.source is None else (self.source, 0)
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.config.host, self.config.port, ssl=self.ssl_context, local_addr=local
            ),
            timeout=self.config.connect_timeout,
        )
        self._state = ChannelState.OPEN


def control_statuses(fragment: bytes) -> list[tuple[int, int, int]]:
    """(group, index, status) of every control object echoed in a response fragment."""
    found = []
    for block in parse_response(fragment).objects:
        group, variation, qualifier = block.header.group, block.header.variation, block.header.qualifier
        if group == 12 and variation == 1:
            size = 11
        elif group == 41 and variation in ANALOG_OUTPUT_FORMATS:
            size = struct.calcsize(ANALOG_OUTPUT_FORMATS[variation]) + 1
        else:
            continue
        width = 2 if qualifier == COUNT_AND_INDEX_16 else 1
        count = int.from_bytes(block.data[:width], "little")
        position = width
        for _ in range(count):
            index = int.from_bytes(block.data[position : position + width], "little")
            body = block.data[position + width : position + width + size]
            found.append((group, index, body[-1]))
            position += width + size
    return found


def analog_output_block(index: int, value: float, variation: int = 1) -> ObjectBlock:
    body = struct.pack(ANALOG_OUTPUT_FORMATS[variation], value) + b"\x00"
    return _control_block(41, variation, index, body)


def crob_block(index: int, code: int, on_ms: int = 100, off_ms: int = 100) -> ObjectBlock:
    return _control_block(12, 1, index, struct.pack("<BBIIB", code, 1, on_ms, off_ms, 0))


def _control_block(group: int, variation: int, index: int, body: bytes) -> ObjectBlock:
    header = ObjectHeader(group=group, variation=variation, qualifier=COUNT_AND_INDEX_16)
    return ObjectBlock(header=header, data=(1).to_bytes(2, "little") + index.to_bytes(2, "little") + body)


@dataclass
class MasterSession:
    handler: RecordingHandler
    master: RecordingMaster
    runner: MasterTcpRunner

    def clear(self) -> None:
        self.handler.clear()
        self.handler.analog_log.clear()

    async def integrity_poll(self) -> list[ResponseInfo]:
        self.clear()
        return await self.runner.integrity_poll()

    async def class_poll(self) -> list[ResponseInfo]:
        self.clear()
        return await self.runner.class_poll()

    async def _control(self, build: Any, block: ObjectBlock) -> int:
        self.master.responses.clear()
        await self.runner.request(build(objects=(block,), seq=self.master.next_request_sequence()))
        statuses = [
            status for response in self.master.responses for _, _, status in control_statuses(response)
        ]
        assert len(statuses) == 1, statuses
        return statuses[0]

    async def direct_operate(self, block: ObjectBlock) -> int:
        return await self._control(build_direct_operate_request, block)

    async def select(self, block: ObjectBlock) -> int:
        return await self._control(build_select_request, block)

    async def operate(self, block: ObjectBlock) -> int:
        return await self._control(build_operate_request, block)


@contextlib.asynccontextmanager
async def connected_master(
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    timeout_s: float = 5.0,
    address: int = MASTER_ADDRESS,
    outstation_address: int = OUTSTATION_ADDRESS,
    host: str = LOOPBACK,
    source: str | None = None,
) -> AsyncIterator[MasterSession]:
    handler = RecordingHandler()
    master = RecordingMaster(
        config=MasterConfig(address=address, outstation_address=outstation_address), handler=handler
    )
    channel = None
    if tls is not None or source is not None:
        channel = TlsClientChannel(config=TcpConfig(host=host, port=port), ssl_context=tls, source=source)
    runner = MasterTcpRunner(master=master, host=host, port=port, response_timeout=timeout_s, channel=channel)
    await runner.open()
    try:
        yield MasterSession(handler, master, runner)
    finally:
        await runner.close()
        if channel is not None:
            await channel.close()
