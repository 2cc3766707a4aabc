"""Raw Modbus TCP on a plain socket, for tests that look at the bytes the simulator puts on the wire.

Deliberately minimal and independent of the simulator's own framing code.
"""

from __future__ import annotations

import socket
import struct
import time

MBAP = struct.Struct(">HHHB")


def frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu


def read_request(function: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", function, address, count)


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """`size` bytes, or fewer if the peer closed the connection first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def receive_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    """(transaction id, unit id, PDU) of the next response; raises ConnectionError if the peer closed."""
    header = receive_exactly(sock, MBAP.size)
    if len(header) < MBAP.size:
        raise ConnectionError(f"connection closed after {len(header)} header byte(s)")
    transaction, protocol, length, unit = MBAP.unpack(header)
    assert protocol == 0
    pdu = receive_exactly(sock, length - 1)
    if len(pdu) < length - 1:
        raise ConnectionError("connection closed inside a frame")
    return transaction, unit, pdu


def exchange(
    sock: socket.socket, pdu: bytes, *, unit: int = 1, transaction: int = 1
) -> tuple[int, int, bytes]:
    sock.sendall(frame(transaction, unit, pdu))
    return receive_frame(sock)


def nothing_arrives(sock: socket.socket, within_s: float) -> bool:
    """True if no byte arrives (and the connection is not closed) within `within_s`."""
    previous = sock.gettimeout()
    sock.settimeout(within_s)
    try:
        sock.recv(1, socket.MSG_PEEK)  # returns data, or b"" when closed
    except TimeoutError:
        return True
    finally:
        sock.settimeout(previous)
    return False


def closed_by_peer(sock: socket.socket, within_s: float = 5.0) -> bool:
    """True if the peer closes (FIN or RST) within `within_s` (data arriving first counts as not closed)."""
    previous = sock.gettimeout()
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                return sock.recv(1) == b""
            except ConnectionResetError:
                return True
            except TimeoutError:
                continue
        return False
    finally:
        sock.settimeout(previous)
