"""Checks every Modbus TCP or RTU frame a device sends back, before the client (socgw's own for Modbus
TCP, `tcp_client.py`; pymodbus for RTU) sees it.

pymodbus 3.16 silently drops a response that carries another unit id or transaction id and lets the
request time out; it takes an answer with transaction id 0 as the answer to whatever request is
outstanding, and a frame it cannot decode kills the transport with a traceback. The operator then sees
"timeout" for what is really a wrong `unit` in the config, a slow device, or a non-Modbus peer. The
client's `trace_packet` hook sees every outgoing frame and the raw receive buffer, so `FrameInspector`
remembers what the outstanding request expects and classifies every whole frame that comes back by its
transaction id first, then its unit id and shape: the outstanding request's answer; an earlier request's
answer after its timeout (a slow device: counted in `late_answers`, pymodbus skips it); any other
transaction id, 0 included (WRONG_TID); a frame that is not valid Modbus TCP (MALFORMED). A frame that
must not reach pymodbus is swallowed (the hook returns no bytes); the link then fails the request at once
and reports the recorded anomaly instead of a bare timeout.

RTU frames (a serial line, or RTU tunnelled over TCP) have no transaction id: `RtuInspector` tells the
outstanding request's answer by its unit id, function code, length and CRC. A whole frame with a wrong
CRC is noise (CRC); a frame of the wrong length or function, or bytes that never form a frame, is a
framing error (FRAMING); an answer from a unit asked earlier is late (counted, skipped). pymodbus would
drop all of these silently and let the request time out.

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

_READ_REGISTERS = frozenset({0x03, 0x04})
_READ_BITS = frozenset({0x01, 0x02})
_WRITES = frozenset({0x05, 0x06, 0x0F, 0x10})
_READS = _READ_REGISTERS | _READ_BITS
_MBAP = 7  # transaction id (2), protocol id (2), length (2), unit id (1)
_MBAP_AND_FUNCTION = struct.Struct(">HHHBB")
_RECENT_REQUESTS = 32  # transaction ids remembered to tell a late answer from a foreign one


class Anomaly(enum.Enum):
    """What can be wrong with an answer, the worst last (the worst seen is reported)."""

    UNIT_MISMATCH = 1
    WRONG_TID = 2
    CRC = 3  # RTU only: a whole frame with a wrong CRC
    FRAMING = 4  # RTU only: an answer of the wrong length or function, or bytes that are no frame
    MALFORMED = 5


@dataclass(frozen=True)
class Observation:
    anomaly: Anomaly
    detail: str
    unit: int | None = None  # the unit id the device answered with (UNIT_MISMATCH)
    transaction_id: int | None = None  # the transaction id the device answered with (WRONG_TID)


class Expectation(NamedTuple):  # one per request: a tuple is made faster than a frozen dataclass
    transaction_id: int
    unit: int
    function_code: int
    response_length: int | None  # MBAP length field of a correct normal response, when it is fixed


def expectation_of(request: bytes) -> Expectation | None:
    """What a correct answer to this outgoing Modbus TCP frame looks like."""
    if len(request) < _MBAP + 1:
        return None
    transaction_id = int.from_bytes(request[0:2], "big")
    unit = request[6]
    function_code = request[7]
    length: int | None = None
    if function_code in _READ_REGISTERS and len(request) >= 12:
        length = 3 + 2 * int.from_bytes(request[10:12], "big")  # unit, fc, byte count, data
    elif function_code in _READ_BITS and len(request) >= 12:
        length = 3 + (int.from_bytes(request[10:12], "big") + 7) // 8
    elif function_code in _WRITES:
        length = 6  # unit, fc, address, value/quantity
    return Expectation(transaction_id, unit, function_code, length)


class Inspector:
    """The `trace_packet` hook of one client: `reset()` on each new connection, `begin()` before each
    request, `end()` after it, then read `observation` (the worst anomaly seen meanwhile) and
    `late_answers` (a running count). `FrameInspector` checks Modbus TCP, `RtuInspector` RTU."""

    def __init__(self) -> None:
        self._outstanding = False
        self.observation: Observation | None = None
        self.pending_bytes = 0  # bytes received that do not (yet) form a whole frame
        self.late_answers = 0  # answers that arrived after their request had timed out

    def reset(self) -> None:
        """A new connection: what was asked on the previous one no longer marks late answers."""

    def begin(self) -> None:
        self.observation = None
        self.pending_bytes = 0
        self._outstanding = True

    def end(self) -> None:
        self._outstanding = False

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._sending(data)
            return data
        return self._inspect(data)

    def _sending(self, request: bytes) -> None:
        raise NotImplementedError

    def _inspect(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _note(self, observation: Observation) -> None:
        if self.observation is None or observation.anomaly.value > self.observation.anomaly.value:
            self.observation = observation

    def _swallow(self, observation: Observation) -> bytes:
        """Keep the buffer from pymodbus: it would wait forever, take it for the answer, or raise on it."""
        self._note(observation)
        self.pending_bytes = 0
        return b""


class FrameInspector(Inspector):
    """Modbus TCP: answers told apart by transaction id, then unit id and shape."""

    def __init__(self) -> None:
        super().__init__()
        self._expected: Expectation | None = None
        self._sent: deque[int] = deque(maxlen=_RECENT_REQUESTS)  # transaction ids sent on this connection

    def reset(self) -> None:
        """A new connection: transaction ids start again, so earlier ones no longer mark late answers."""
        self._expected = None
        self._sent.clear()

    def _sending(self, request: bytes) -> None:
        self._expected = expectation_of(request)
        if self._expected is not None:
            self._sent.append(self._expected.transaction_id)

    def _inspect(self, data: bytes) -> bytes:
        expected = self._expected
        position = 0
        while len(data) - position >= _MBAP + 1:
            transaction_id, protocol_id, length, unit, function_code = _MBAP_AND_FUNCTION.unpack_from(
                data, position
            )
            if protocol_id != 0 or not 2 <= length <= 254:
                return self._swallow(
                    Observation(
                        Anomaly.MALFORMED,
                        f"not a Modbus TCP header (protocol id {protocol_id}, length {length}): "
                        f"{data[position : position + 16].hex(' ')}",
                    )
                )
            end = position + 6 + length
            if end > len(data):
                break
            byte_count = data[position + 8] if length > 2 else None  # the PDU's first byte after the fc
            position = end
            if expected is None or not self._outstanding:
                self.late_answers += 1
                return b""  # nobody waits for it: keep pymodbus from matching it to a past request
            if transaction_id != expected.transaction_id:
                if transaction_id in self._sent:
                    self.late_answers += 1  # an earlier request's answer: pymodbus skips it
                    continue
                problem = _shape_problem(expected, function_code, length, byte_count)
                if problem:
                    return self._swallow(
                        Observation(Anomaly.MALFORMED, f"{problem} (transaction id {transaction_id})")
                    )
                return self._swallow(
                    Observation(
                        Anomaly.WRONG_TID,
                        f"transaction id {transaction_id} in the answer to request {expected.transaction_id}",
                        transaction_id=transaction_id,
                    )
                )
            if expected.unit and unit != expected.unit:
                self._note(
                    Observation(
                        Anomaly.UNIT_MISMATCH, f"response from unit {unit}, expected {expected.unit}", unit
                    )
                )
                continue
            problem = _shape_problem(expected, function_code, length, byte_count)
            if problem:
                return self._swallow(Observation(Anomaly.MALFORMED, problem))
        self.pending_bytes = len(data) - position
        return data


def _shape_problem(
    expected: Expectation, function_code: int, length: int, byte_count: int | None
) -> str | None:
    """Why a response to `expected` is not well formed (`byte_count`: the PDU's byte after the function
    code, None when the frame has none)."""
    if function_code == expected.function_code | 0x80:
        return None if length == 3 else f"exception response of length {length}, expected 3"
    if function_code != expected.function_code:
        return f"function code {function_code:#04x} in the answer to a {expected.function_code:#04x} request"
    if expected.response_length is not None and length != expected.response_length:
        if expected.function_code in _READS:
            return (
                f"{byte_count or 0} data bytes where the request asked for "
                f"{expected.response_length - 3} (frame length {length})"
            )
        return f"frame length {length}, expected {expected.response_length}"
    if expected.function_code in _READS and byte_count is not None and byte_count != length - 3:
        return f"byte count {byte_count} disagrees with the frame length {length}"
    return None


_RTU_MIN_FRAME = 4  # unit id, function code, CRC (2)
_RTU_EXCEPTION_FRAME = 5  # unit id, function code | 0x80, exception code, CRC (2)
_RTU_RECENT_UNITS = 8


def crc16(frame: bytes) -> int:
    """The Modbus RTU CRC-16 (reflected polynomial 0xA001, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + crc16(frame).to_bytes(2, "little")


def rtu_response_length(request: bytes) -> int | None:
    """Length of a correct normal RTU answer to `request` (unit id, function code, data, CRC)."""
    if len(request) < 6:
        return None
    function_code = request[1]
    quantity = int.from_bytes(request[4:6], "big")
    if function_code in _READ_REGISTERS:
        return 5 + 2 * quantity
    if function_code in _READ_BITS:
        return 5 + (quantity + 7) // 8
    if function_code in _WRITES:
        return 8
    return None


def _rtu_frame_length(data: bytes, position: int) -> int | None:
    """Length of the RTU answer that starts at `position`, from its own function code and byte count
    (None: not an answer we can delimit)."""
    function_code = data[position + 1]
    if function_code & 0x80:
        return _RTU_EXCEPTION_FRAME
    if function_code in _READS:
        return 5 + data[position + 2]
    if function_code in _WRITES:
        return 8
    return None


class RtuInspector(Inspector):
    """RTU: answers told apart by unit id, function code, length and CRC.

    pymodbus hands the hook its whole receive buffer each time bytes arrive (it is emptied when a request
    is sent): bytes that may still grow into the answer pass through untouched."""

    def __init__(self) -> None:
        super().__init__()
        self._unit = 0
        self._function_code = 0
        self._length: int | None = None
        self._asked: deque[int] = deque(maxlen=_RTU_RECENT_UNITS)  # unit ids asked before this request

    def reset(self) -> None:
        self._unit = 0
        self._asked.clear()

    def _sending(self, request: bytes) -> None:
        if self._unit:
            self._asked.append(self._unit)
        if len(request) >= 2:
            self._unit, self._function_code = request[0], request[1]
        self._length = rtu_response_length(request)

    def _inspect(self, data: bytes) -> bytes:
        if not self._outstanding:
            self.late_answers += 1
            return b""
        position = 0
        while len(data) - position >= _RTU_MIN_FRAME:
            unit = data[position]
            length = _rtu_frame_length(data, position)
            if length is None:
                return self._swallow(
                    Observation(
                        Anomaly.FRAMING,
                        f"function code {data[position + 1]:#04x} from unit {unit} in the answer to a "
                        f"{self._function_code:#04x} request: {data[position : position + 16].hex(' ')}",
                    )
                )
            end = position + length
            if end > len(data):
                break
            frame = data[position:end]
            if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                return self._swallow(
                    Observation(Anomaly.CRC, f"CRC error in a {length}-byte frame: {frame[:16].hex(' ')}")
                )
            if unit != self._unit:
                if unit in self._asked:
                    self.late_answers += 1  # an earlier request's answer, after its timeout
                else:
                    self._note(
                        Observation(
                            Anomaly.UNIT_MISMATCH, f"response from unit {unit}, expected {self._unit}", unit
                        )
                    )
                position = end
                continue
            problem = self._shape_problem(frame)
            if problem:
                return self._swallow(Observation(Anomaly.FRAMING, problem))
            self.pending_bytes = 0
            return data[
                position:
            ]  # pymodbus cuts what it used from its buffer; the rest goes on the next send
        self.pending_bytes = len(data) - position
        return data[position:] if position else data

    def _shape_problem(self, frame: bytes) -> str | None:
        function_code = frame[1]
        if function_code == self._function_code | 0x80:
            return None
        if function_code != self._function_code:
            return f"function code {function_code:#04x} in the answer to a {self._function_code:#04x} request"
        if self._length is not None and len(frame) != self._length:
            return f"a {len(frame)}-byte answer where {self._length} bytes were due"
        return None
