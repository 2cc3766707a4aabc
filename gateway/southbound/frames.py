"""Checks every Modbus TCP frame a device sends back, before pymodbus sees it.

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

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

_READ_REGISTERS = frozenset({0x03, 0x04})
_READ_BITS = frozenset({0x01, 0x02})
_WRITES = frozenset({0x05, 0x06, 0x0F, 0x10})
_MBAP = 7  # transaction id (2), protocol id (2), length (2), unit id (1)
_RECENT_REQUESTS = 32  # transaction ids remembered to tell a late answer from a foreign one


class Anomaly(enum.Enum):
    """What can be wrong with an answer, the worst last (the worst seen is reported)."""

    UNIT_MISMATCH = 1
    WRONG_TID = 2
    MALFORMED = 3


@dataclass(frozen=True)
class Observation:
    anomaly: Anomaly
    detail: str
    unit: int | None = None  # the unit id the device answered with (UNIT_MISMATCH)
    transaction_id: int | None = None  # the transaction id the device answered with (WRONG_TID)


@dataclass(frozen=True)
class Expectation:
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


class FrameInspector:
    """The `trace_packet` hook of one client: `reset()` on each new connection, `begin()` before each
    request, `end()` after it, then read `observation` (the worst anomaly seen meanwhile) and
    `late_answers` (a running count)."""

    def __init__(self) -> None:
        self._expected: Expectation | None = None
        self._outstanding = False
        self._sent: deque[int] = deque(maxlen=_RECENT_REQUESTS)  # transaction ids sent on this connection
        self.observation: Observation | None = None
        self.pending_bytes = 0  # bytes received that do not (yet) form a whole frame
        self.late_answers = 0  # answers that arrived after their request had timed out

    def reset(self) -> None:
        """A new connection: transaction ids start again, so earlier ones no longer mark late answers."""
        self._expected = None
        self._sent.clear()

    def begin(self) -> None:
        self.observation = None
        self.pending_bytes = 0
        self._outstanding = True

    def end(self) -> None:
        self._outstanding = False

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._expected = expectation_of(data)
            if self._expected is not None:
                self._sent.append(self._expected.transaction_id)
            return data
        return self._inspect(data)

    def _note(self, observation: Observation) -> None:
        if self.observation is None or observation.anomaly.value > self.observation.anomaly.value:
            self.observation = observation

    def _swallow(self, observation: Observation) -> bytes:
        """Keep the buffer from pymodbus: it would wait forever, take it for the answer, or raise on it."""
        self._note(observation)
        self.pending_bytes = 0
        return b""

    def _inspect(self, data: bytes) -> bytes:
        expected = self._expected
        position = 0
        while len(data) - position >= _MBAP + 1:
            transaction_id = int.from_bytes(data[position : position + 2], "big")
            protocol_id = int.from_bytes(data[position + 2 : position + 4], "big")
            length = int.from_bytes(data[position + 4 : position + 6], "big")
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
            unit = data[position + 6]
            function_code = data[position + 7]
            body = data[end - length + 2 : end]
            position = end
            if expected is None or not self._outstanding:
                self.late_answers += 1
                return b""  # nobody waits for it: keep pymodbus from matching it to a past request
            if transaction_id != expected.transaction_id:
                if transaction_id in self._sent:
                    self.late_answers += 1  # an earlier request's answer: pymodbus skips it
                    continue
                problem = _shape_problem(expected, function_code, length, body)
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
            problem = _shape_problem(expected, function_code, length, body)
            if problem:
                return self._swallow(Observation(Anomaly.MALFORMED, problem))
        self.pending_bytes = len(data) - position
        return data


def _shape_problem(expected: Expectation, function_code: int, length: int, body: bytes) -> str | None:
    """Why a response to `expected` (PDU after the function code in `body`) is not well formed."""
    if function_code == expected.function_code | 0x80:
        return None if length == 3 else f"exception response of length {length}, expected 3"
    if function_code != expected.function_code:
        return f"function code {function_code:#04x} in the answer to a {expected.function_code:#04x} request"
    if expected.response_length is not None and length != expected.response_length:
        if expected.function_code in _READ_REGISTERS | _READ_BITS:
            byte_count = body[0] if body else 0
            return (
                f"{byte_count} data bytes where the request asked for "
                f"{expected.response_length - 3} (frame length {length})"
            )
        return f"frame length {length}, expected {expected.response_length}"
    if expected.function_code in _READ_REGISTERS | _READ_BITS and body and body[0] != length - 3:
        return f"byte count {body[0]} disagrees with the frame length {length}"
    return None
