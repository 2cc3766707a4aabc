"""Modbus TCP server of one simulated pack: MBAP framing, function codes 1-6, 15, 16, fault injection.

Hand-written rather than pymodbus's server: that costs 50-90 µs CPU per request, answers only the first
of pipelined requests, and cannot put byte-level faults (wrong unit id, garbage) on the wire.

Behaviour a client can rely on:
- every complete request in a TCP segment is answered, in order (pipelining);
- a request for another unit id is answered with exception 0x0B (gateway target failed to respond), as a
  Modbus TCP gateway does: the client gets a fast, explicit error instead of a timeout;
- unknown function code: exception 01; address outside the profile's map: 02; bad count, byte count or
  coil value: 03; write to a read-only point: 01; a frame with protocol id != 0 is discarded;
- a frame with an impossible length field closes the connection (the stream cannot be re-synchronised).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import cast

from gateway.profiles.model import Table
from gateway.sim.device import PackDevice
from gateway.sim.faults import NO_FAULTS, ExceptionCode, Faults

log = logging.getLogger(__name__)

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length (unit id + PDU), unit id
_START_COUNT = struct.Struct(">HH")
MAX_PDU = 253

READ_COILS = 0x01
READ_DISCRETE_INPUTS = 0x02
READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
WRITE_SINGLE_COIL = 0x05
WRITE_SINGLE_REGISTER = 0x06
WRITE_MULTIPLE_COILS = 0x0F
WRITE_MULTIPLE_REGISTERS = 0x10

_READ_TABLES = {
    READ_COILS: Table.COIL,
    READ_DISCRETE_INPUTS: Table.DISCRETE,
    READ_HOLDING_REGISTERS: Table.HOLDING,
    READ_INPUT_REGISTERS: Table.INPUT,
}
_MAX_READ_BITS = 2000
_MAX_READ_REGISTERS = 125
_MAX_WRITE_BITS = 1968
_MAX_WRITE_REGISTERS = 123


def exception_pdu(function: int, code: int) -> bytes:
    return bytes((function | 0x80, code))


def unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i >> 3] >> (i & 7)) & 1 for i in range(count)]


def request_range(pdu: bytes) -> tuple[Table, int, int] | None:
    """(table, start, count) a well-formed data request touches, for fault rules; None otherwise."""
    if len(pdu) < 5:
        return None
    function = pdu[0]
    start, quantity = _START_COUNT.unpack_from(pdu, 1)
    if function in _READ_TABLES:
        return _READ_TABLES[function], start, max(1, quantity)
    if function == WRITE_SINGLE_COIL:
        return Table.COIL, start, 1
    if function == WRITE_SINGLE_REGISTER:
        return Table.HOLDING, start, 1
    if function == WRITE_MULTIPLE_COILS:
        return Table.COIL, start, max(1, quantity)
    if function == WRITE_MULTIPLE_REGISTERS:
        return Table.HOLDING, start, max(1, quantity)
    return None


class PackServer:
    """Serves one `PackDevice` on (host, port), with the fault knobs in `faults`.

    `faults` may be replaced from any thread between requests; a change of `refuse_connections` takes
    effect when `apply_listener_faults()` runs on the loop (SimulatedFleet.set_faults does that).
    """

    def __init__(
        self,
        device: PackDevice,
        host: str,
        port: int,
        *,
        unit_id: int = 1,
        clock: Callable[[], float],
        faults: Faults = NO_FAULTS,
        seed: int = 0,
    ) -> None:
        self.device = device
        self.host = host
        self.port = port  # the actual port once started (a requested port 0 is replaced)
        self.unit_id = unit_id
        self.clock = clock  # simulated seconds
        self.faults = faults
        self.rng = random.Random(seed)
        self.requests = 0
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        if not self.faults.refuse_connections:
            await self._listen()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=256
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def apply_listener_faults(self) -> None:
        """Open or close the listening socket to match `faults.refuse_connections`."""
        if self.faults.refuse_connections and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif not self.faults.refuse_connections and self._server is None:
            await self._listen()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ---- request handling (called by connections) ----------------------------------------------------

    def respond(self, unit_id: int, pdu: bytes, faults: Faults) -> bytes:
        """The response PDU to one request PDU."""
        if unit_id != self.unit_id:
            return exception_pdu(pdu[0], ExceptionCode.GATEWAY_TARGET_NO_RESPONSE)
        function = pdu[0]
        if faults.exceptions:
            touched = request_range(pdu)
            code = faults.exception_for(*touched) if touched else None
            if code is not None:
                return exception_pdu(function, code)
        try:
            if function in _READ_TABLES:
                return self._read(function, pdu)
            if function in (WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER):
                return self._write_single(function, pdu)
            if function in (WRITE_MULTIPLE_COILS, WRITE_MULTIPLE_REGISTERS):
                return self._write_multiple(function, pdu)
        except struct.error:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        return exception_pdu(function, ExceptionCode.ILLEGAL_FUNCTION)

    def _read(self, function: int, pdu: bytes) -> bytes:
        if len(pdu) != 5:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        start, count = _START_COUNT.unpack_from(pdu, 1)
        table = _READ_TABLES[function]
        limit = _MAX_READ_BITS if function in (READ_COILS, READ_DISCRETE_INPUTS) else _MAX_READ_REGISTERS
        if not 1 <= count <= limit:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        if start + count > 0x10000:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        data = self.device.read(table, start, count, self.clock())
        if isinstance(data, ExceptionCode):
            return exception_pdu(function, data)
        return bytes((function, len(data))) + data

    def _write_single(self, function: int, pdu: bytes) -> bytes:
        if len(pdu) != 5:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        address, raw = _START_COUNT.unpack_from(pdu, 1)
        if function == WRITE_SINGLE_COIL:
            if raw not in (0x0000, 0xFF00):
                return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
            error = self.device.write(Table.COIL, address, [1 if raw else 0], self.clock())
        else:
            error = self.device.write(Table.HOLDING, address, [raw], self.clock())
        return exception_pdu(function, error) if error is not None else pdu

    def _write_multiple(self, function: int, pdu: bytes) -> bytes:
        if len(pdu) < 6:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        start, count = _START_COUNT.unpack_from(pdu, 1)
        byte_count = pdu[5]
        data = pdu[6:]
        if function == WRITE_MULTIPLE_COILS:
            valid = 1 <= count <= _MAX_WRITE_BITS and byte_count == (count + 7) // 8
        else:
            valid = 1 <= count <= _MAX_WRITE_REGISTERS and byte_count == 2 * count
        if not valid or len(data) != byte_count:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_VALUE)
        if start + count > 0x10000:
            return exception_pdu(function, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        if function == WRITE_MULTIPLE_COILS:
            error = self.device.write(Table.COIL, start, unpack_bits(data, count), self.clock())
        else:
            error = self.device.write(
                Table.HOLDING, start, list(struct.unpack(f">{count}H", data)), self.clock()
            )
        return exception_pdu(function, error) if error is not None else pdu[:5]


def _reset(transport: asyncio.Transport) -> None:
    """Close with an RST rather than a FIN (SO_LINGER 0), as an overloaded device does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Connection(asyncio.Protocol):
    """One client connection: reassembles MBAP frames from the byte stream and answers each."""

    def __init__(self, server: PackServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        limit = self.server.faults.max_connections
        if limit is not None and len(self.server.connections) >= limit:
            _reset(stream)
            return
        self.transport = stream
        self.server.connections.add(self)
        sock = stream.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= _MBAP.size and self.transport is not None:
            transaction, protocol, length, unit_id = _MBAP.unpack_from(buffer)
            if not 2 <= length <= MAX_PDU + 1:
                log.debug("closing connection: impossible MBAP length %d", length)
                self.transport.close()
                return
            frame_end = 6 + length
            if len(buffer) < frame_end:
                return
            pdu = bytes(buffer[_MBAP.size : frame_end])
            del buffer[:frame_end]
            if protocol == 0:
                self._handle(transaction, unit_id, pdu)

    def _handle(self, transaction: int, unit_id: int, pdu: bytes) -> None:
        server = self.server
        faults = server.faults
        self.requests += 1
        server.requests += 1
        transport = self.transport
        assert transport is not None
        if faults.drop_after_requests is not None and self.requests > faults.drop_after_requests:
            transport.close()
            return
        if faults.drop_probability and server.rng.random() < faults.drop_probability:
            transport.close()
            return
        if faults.silent:
            return
        if faults.garbage_probability and server.rng.random() < faults.garbage_probability:
            frame = server.rng.randbytes(server.rng.randint(3, 12))
        else:
            response = server.respond(unit_id, pdu, faults)
            reply_unit = faults.wrong_unit_id if faults.wrong_unit_id is not None else unit_id
            frame = _MBAP.pack(transaction, 0, len(response) + 1, reply_unit) + response
        if faults.delay_ms > 0:
            asyncio.get_running_loop().call_later(faults.delay_ms / 1000.0, self._send, frame)
        else:
            transport.write(frame)

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


def monotonic_clock(speed: float) -> Callable[[], float]:
    """Simulated seconds since now, running `speed` times faster than the monotonic clock."""
    origin = time.monotonic()
    return lambda: (time.monotonic() - origin) * speed
