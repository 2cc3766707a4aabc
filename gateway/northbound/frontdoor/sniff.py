"""The first frame each protocol's client must send, checked before a byte reaches the stack.

A peer that connects and says nothing, or says something else, never reaches the stack: the front door
reads until the frame's header is complete and calls it valid or invalid.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class Verdict(enum.Enum):
    MORE = "more"  # not enough bytes yet
    VALID = "valid"
    INVALID = "invalid"


DNP3_START = b"\x05\x64"
DNP3_HEADER = 10  # start, length, control, destination, source, CRC
DNP3_MIN_LENGTH = 5  # the length octet counts control, destination and source at least


def dnp3_crc(data: bytes) -> int:
    """The DNP3 link-layer CRC (polynomial 0x3D65, reflected, inverted), as sent: low octet first."""
    crc = 0
    for octet in data:
        crc ^= octet
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
    return ~crc & 0xFFFF


def dnp3_link_header(data: bytes) -> Verdict:
    """A DNP3 link frame's header: 0x05 0x64, a plausible length, and its CRC right."""
    if data[: len(DNP3_START)] != DNP3_START[: len(data)]:
        return Verdict.INVALID
    if len(data) < DNP3_HEADER:
        return Verdict.MORE
    if data[2] < DNP3_MIN_LENGTH:
        return Verdict.INVALID
    return Verdict.VALID if int.from_bytes(data[8:10], "little") == dnp3_crc(data[:8]) else Verdict.INVALID


TPKT_VERSION = b"\x03\x00"
MMS_HEADER = 6  # TPKT (version, reserved, length) + COTP length indicator and PDU type
COTP_CONNECTION_REQUEST = 0xE0
COTP_MIN_CR = 6  # the length indicator of a CR without parameters


def mms_connection_request(data: bytes) -> Verdict:
    """TPKT version 3 carrying a COTP connection request (ISO 8073), as every MMS association starts."""
    if data[: len(TPKT_VERSION)] != TPKT_VERSION[: len(data)]:
        return Verdict.INVALID
    if len(data) < MMS_HEADER:
        return Verdict.MORE
    length = int.from_bytes(data[2:4], "big")
    indicator, pdu = data[4], data[5] & 0xF0
    if pdu != COTP_CONNECTION_REQUEST or indicator < COTP_MIN_CR or length != indicator + 5:
        return Verdict.INVALID
    return Verdict.VALID


SNIFFERS: dict[str, Callable[[bytes], Verdict]] = {
    "dnp3": dnp3_link_header,
    "iec61850": mms_connection_request,
}
