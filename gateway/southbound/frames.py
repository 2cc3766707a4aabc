"""Checks every Modbus TCP frame a device sends back, before pymodbus sees it.

pymodbus 3.16 silently drops a response that carries another unit id or transaction id and lets the
request time out; a frame it cannot decode kills the transport with a traceback. The operator then sees
"timeout" for what is really a wrong `unit` in the config, a slow device, or a non-Modbus peer. The
client's `trace_packet` hook sees every outgoing frame and the raw receive buffer, so `FrameInspector`
remembers what the outstanding request expects and records what actually came back. A frame that is
not valid Modbus TCP is swallowed (the hook returns no bytes) so pymodbus never chokes on it; the
request then times out and the link reports the recorded anomaly instead of a bare timeout.

Pure: bytes in, bytes out; no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

_READ_REGISTERS = frozenset({0x03, 0x04})
_READ_BITS = frozenset({0x01, 0x02})
_WRITES = frozenset({0x05, 0x06, 0x0F, 0x10})
_MBAP = 7  # transaction id (2), protocol id (2), length (2), unit id (1)


class Anomaly(enum.Enum):
    UNIT_MISMATCH = "unit mismatch"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Observation:
    anomaly: Anomaly
    detail: str
    unit: int | None = None  # the unit id the device answered with (UNIT_MISMATCH)


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
    """The `trace_packet` hook of one client: `begin()` before each request, `end()` after it, then read
    `observation` (the worst anomaly seen meanwhile) and `late_answers` (a running count)."""

    def __init__(self) -> None:
        self._expected: Expectation | None = None
        self._outstanding = False
        self.observation: Observation | None = None
        self.pending_bytes = 0  # bytes received that do not (yet) form a whole frame
        self.late_answers = 0  # answers that arrived after their request had timed out

    def begin(self) -> None:
        self.observation = None
        self.pending_bytes = 0
        self._outstanding = True

    def end(self) -> None:
        self._outstanding = False

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self._expected = expectation_of(data)
            return data
        return self._inspect(data)

    def _note(self, observation: Observation) -> None:
        # A malformed frame outranks a unit mismatch: report the worst.
        if self.observation is None or observation.anomaly is Anomaly.MALFORMED:
            self.observation = observation

    def _inspect(self, data: bytes) -> bytes:
        expected = self._expected
        position = 0
        while len(data) - position >= _MBAP + 1:
            transaction_id = int.from_bytes(data[position : position + 2], "big")
            protocol_id = int.from_bytes(data[position + 2 : position + 4], "big")
            length = int.from_bytes(data[position + 4 : position + 6], "big")
            if protocol_id != 0 or not 2 <= length <= 254:
                self._note(
                    Observation(
                        Anomaly.MALFORMED,
                        f"not a Modbus TCP header (protocol id {protocol_id}, length {length}): "
                        f"{data[position : position + 16].hex(' ')}",
                    )
                )
                self.pending_bytes = 0
                return b""  # swallow: pymodbus would wait forever or kill the transport
            end = position + 6 + length
            if end > len(data):
                break
            unit = data[position + 6]
            function_code = data[position + 7]
            position = end
            if expected is None or not self._outstanding or transaction_id != expected.transaction_id:
                self.late_answers += 1
                if not self._outstanding:
                    return b""  # nobody waits for it: keep pymodbus from matching it to a past request
                continue
            if expected.unit and unit != expected.unit:
                self._note(
                    Observation(
                        Anomaly.UNIT_MISMATCH, f"response from unit {unit}, expected {expected.unit}", unit
                    )
                )
                continue
            problem = _shape_problem(expected, function_code, length, data[end - length + 2 : end])
            if problem:
                self._note(Observation(Anomaly.MALFORMED, problem))
                self.pending_bytes = 0
                return b""
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
