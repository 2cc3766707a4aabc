"""Simulated packs as units on one Modbus RTU line: tunnelled over TCP (as an RS-485-to-Ethernet converter
in transparent mode does), or on a serial line through a pseudo-terminal pair.

Several packs share the line as several unit ids behind one endpoint. A request whose CRC is wrong, or
that is for a unit id nobody has, gets no answer (as on RS-485). With `baud`, every answer leaves only
after the time its request and itself take on the wire at that baud rate (11 bits a character for 8E1),
so the line's timing is realistic; requests are answered one after the other, as on a half-duplex line.
The fault knobs of each pack apply: `silent` is a dead unit, `crc_error_probability` corrupts its
answers' CRC, `delay_ms` adds to its turnaround.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Sequence
from typing import cast

from gateway.sim.server import PackServer

_FIXED_LENGTH_REQUESTS = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06})
_COUNTED_REQUESTS = frozenset({0x0F, 0x10})  # unit, fc, address, quantity, byte count, data, CRC


def crc16(frame: bytes) -> int:
    """The Modbus RTU CRC (sent low byte first): the simulator's own, independent of the gateway's."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _request_length(buffer: bytes | bytearray) -> int | None:
    """Length of the request at the start of `buffer`; None: not known yet (or not a request we serve)."""
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in _FIXED_LENGTH_REQUESTS:
        return 8
    if function in _COUNTED_REQUESTS:
        return 9 + buffer[6] if len(buffer) >= 7 else None
    return 0  # unknown function: resynchronise


class RtuLine:
    """The units `servers` (each with its own unit id) on one line; `bits_per_char` 11 is 8E1 / 8N2."""

    def __init__(
        self, servers: Sequence[PackServer], *, baud: int | None = None, bits_per_char: int = 10
    ) -> None:
        self.units = {server.unit_id: server for server in servers}
        if len(self.units) != len(servers):
            raise ValueError("two packs on one RTU line have the same unit id")
        self.char_s = bits_per_char / baud if baud else 0.0
        self.requests = 0
        self._buffer = bytearray()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._write: list[object] = []  # the current writer: a transport or the pty's master fd
        self._server: asyncio.Server | None = None
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self.port = 0
        self.device = ""

    async def serve_tcp(self, host: str, port: int) -> None:
        """RTU over TCP on host:port (0: ephemeral; `port` then holds the one chosen)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TcpSide(self), host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self._start()

    async def serve_pty(self) -> str:
        """Open a pseudo-terminal pair and serve on its master; returns the device a client opens."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as on a serial port
        os.set_blocking(master, False)
        self._master_fd, self._slave_fd = master, slave
        self.device = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._read_pty)
        self._write = [master]
        self._start()
        return self.device

    def _start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._answer_in_turn())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._master_fd is not None:
            asyncio.get_running_loop().remove_reader(self._master_fd)
            os.close(self._master_fd)
        if self._slave_fd is not None:
            os.close(self._slave_fd)
        self._server = self._master_fd = self._slave_fd = None

    def _read_pty(self) -> None:
        assert self._master_fd is not None
        try:
            data = os.read(self._master_fd, 4096)
        except (BlockingIOError, OSError):
            return  # EIO while no client holds the device open
        self.received(data)

    def received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while (length := _request_length(buffer)) is not None:
            if length == 0 or length > 256:
                buffer.clear()
                return
            if len(buffer) < length:
                return
            frame = bytes(buffer[:length])
            del buffer[:length]
            self._queue.put_nowait(frame)

    async def _answer_in_turn(self) -> None:
        while True:
            request = await self._queue.get()
            answer = self._answer(request)
            wire_s = (len(request) + len(answer)) * self.char_s
            server = self.units.get(request[0])
            delay_s = wire_s + (server.faults.delay_ms / 1000.0 if server is not None else 0.0)
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if answer:
                self._send(answer)

    def _answer(self, request: bytes) -> bytes:
        """The answer frame to one request frame (b"": none)."""
        if crc16(request[:-2]) != int.from_bytes(request[-2:], "little"):
            return b""
        server = self.units.get(request[0])
        if server is None:
            return b""
        self.requests += 1
        server.requests += 1
        faults = server.faults
        if faults.silent:
            return b""
        frame = request[:1] + server.respond(request[0], request[1:-2], faults)
        crc = crc16(frame)
        if faults.crc_error_probability and server.rng.random() < faults.crc_error_probability:
            crc ^= 0xFFFF
        return frame + crc.to_bytes(2, "little")

    def _send(self, frame: bytes) -> None:
        for writer in self._write:
            if isinstance(writer, int):
                with contextlib.suppress(OSError):
                    os.write(writer, frame)
            else:
                transport = cast(asyncio.Transport, writer)
                if not transport.is_closing():
                    transport.write(frame)


class _TcpSide(asyncio.Protocol):
    """One converter client: its bytes go onto the line, the line's answers come back to it."""

    def __init__(self, line: RtuLine) -> None:
        self.line = line
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.line._write.append(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport in self.line._write:
            self.line._write.remove(self.transport)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.line.received(data)
