"""What travels between the control core and a polling process, and how it is encoded.

One SOCK_SEQPACKET socket pair per poller, one message per packet (each arrives whole):

- core -> poller, JSON (`supervision.encode_message`): `connect` (the poller's node ids, in its
  order), `poll` (cycle, now), `write` (now, setpoints by node id), `close`. The core starts the
  poller: what it sends is trusted.
- poller -> core: `states` (binary: the cycle, then node states field by field with `struct`), `done`
  (binary: the cycle and each node's setpoint writes so far), and JSON `connected` (why each node that
  is not ready is not), `failed` and `log`. A poller is not trusted: nothing it sends is unpickled;
  each field is unpacked with a fixed layout and checked (quality, fault code and state label from
  their closed sets, text as UTF-8, indexes in range), and the node's id is the core's own, so a
  compromised poller can lie about its nodes' values but cannot run code in the core or name others.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Sequence
from typing import Final

from gateway.fleet import STATE_LABELS, NodeState, Quality
from gateway.southbound.errors import ErrorCode
from gateway.supervision import MessageError

MAX_PACKET_BYTES: Final = 1 << 18  # a read buffer larger than any packet either side sends
STATES_CHUNK_BYTES: Final = 32768  # a poller splits a batch of states beyond this into several packets

STATES_KIND: Final = b"S"
DONE_KIND: Final = b"D"
JSON_KIND: Final = b"{"

# NodeState's numbers that may be unknown, in its field order (None travels as NaN: the fleet model
# never holds a NaN).
OPTIONAL_NUMBERS: Final = (
    "soc_pct",
    "soh_pct",
    "capacity_wh",
    "voltage_v",
    "current_a",
    "power_w",
    "temp_c",
    "temp_max_c",
    "temp_min_c",
    "cell_voltage_min_v",
    "cell_voltage_max_v",
    "charge_limit_w",
    "discharge_limit_w",
    "setpoint_w",
)
QUALITIES: Final = tuple(Quality)
FAULT_CODES: Final = (None, *(str(code) for code in ErrorCode))
STATES: Final = (None, *sorted(STATE_LABELS))
ENABLED: Final = (None, False, True)
_QUALITY_INDEX: Final = {quality: index for index, quality in enumerate(QUALITIES)}
_FAULT_INDEX: Final = {code: index for index, code in enumerate(FAULT_CODES)}
_STATE_INDEX: Final = {label: index for index, label in enumerate(STATES)}
_ENABLED_INDEX: Final = {None: 0, False: 1, True: 2}

# node index in the poller's share, quality, fault code, enabled, state label, alarm count, age, numbers
STATE: Final = struct.Struct(f"<HBBBBHd{len(OPTIONAL_NUMBERS)}d")
BATCH: Final = struct.Struct("<cI")  # kind, cycle
ALARM_LENGTH: Final = struct.Struct("<H")
MAX_ALARM_BYTES: Final = 255
_numbers_of = operator.attrgetter(*OPTIONAL_NUMBERS)
_NAN: Final = math.nan


class WireError(MessageError):
    """A packet that is not what the channel carries (a bug, or a poller that misbehaves)."""


# --- poller -> core: node states ----------------------------------------------------------------------


def encode_state(index: int, state: NodeState) -> bytes:
    """One node's state (`index`: its place in the poller's share)."""
    alarms = [alarm.encode()[:MAX_ALARM_BYTES] for alarm in state.alarms]
    head = STATE.pack(
        index,
        _QUALITY_INDEX[state.quality],
        _FAULT_INDEX.get(state.error_code, _FAULT_INDEX[str(ErrorCode.INTERNAL)]),
        _ENABLED_INDEX[state.enabled],
        _STATE_INDEX[state.state],
        len(alarms),
        state.age_s,
        *(_NAN if number is None else number for number in _numbers_of(state)),
    )
    if not alarms:
        return head
    return head + b"".join(ALARM_LENGTH.pack(len(alarm)) + alarm for alarm in alarms)


def encode_states(cycle: int, states: Sequence[bytes]) -> list[bytes]:
    """Packets of encoded states for `cycle`, each under STATES_CHUNK_BYTES (but for one huge state)."""
    header = BATCH.pack(STATES_KIND, cycle)
    packets: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for state in states:
        if chunk and size + len(state) > STATES_CHUNK_BYTES:
            packets.append(header + b"".join(chunk))
            chunk, size = [], 0
        chunk.append(state)
        size += len(state)
    if chunk:
        packets.append(header + b"".join(chunk))
    return packets


def decode_states(packet: bytes, node_ids: Sequence[str]) -> tuple[int, list[tuple[int, NodeState]]]:
    """The cycle and each (index in the share, state) of a `states` packet; WireError if malformed."""
    try:
        _kind, cycle = BATCH.unpack_from(packet)
        offset = BATCH.size
        decoded: list[tuple[int, NodeState]] = []
        while offset < len(packet):
            index, quality, fault, enabled, label, alarm_count, age, *numbers = STATE.unpack_from(
                packet, offset
            )
            offset += STATE.size
            alarms: list[str] = []
            for _ in range(alarm_count):
                (length,) = ALARM_LENGTH.unpack_from(packet, offset)
                offset += ALARM_LENGTH.size
                if length > MAX_ALARM_BYTES or offset + length > len(packet):
                    raise WireError(f"an alarm label of {length} bytes overruns the packet")
                alarms.append(packet[offset : offset + length].decode())
                offset += length
            if math.isnan(age) or age < 0.0:
                raise WireError(f"age {age} of node {index} is not a duration")
            # x - x is 0 for a finite number only (NaN and the infinities give NaN)
            n = [number if number - number == 0.0 else None for number in numbers]
            state = NodeState(  # positional, in the dataclass's order (a test holds them together)
                node_ids[index],
                QUALITIES[quality],
                FAULT_CODES[fault],
                age,
                n[0],
                n[1],
                n[2],
                n[3],
                n[4],
                n[5],
                n[6],
                n[7],
                n[8],
                n[9],
                n[10],
                n[11],
                n[12],
                n[13],
                ENABLED[enabled],
                STATES[label],
                tuple(alarms),
            )
            decoded.append((index, state))
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise WireError(f"malformed states packet: {error}") from None
    return cycle, decoded


# --- poller -> core: the end of a poll -----------------------------------------------------------------


def encode_done(cycle: int, writes_total: Sequence[int]) -> bytes:
    """The poll of `cycle` is over; each node's setpoint writes since the poller started."""
    return BATCH.pack(DONE_KIND, cycle) + struct.pack(f"<{len(writes_total)}I", *writes_total)


def decode_done(packet: bytes, nodes: int) -> tuple[int, tuple[int, ...]]:
    if len(packet) != BATCH.size + 4 * nodes:
        raise WireError(f"a done packet for {nodes} nodes has {len(packet)} bytes")
    _kind, cycle = BATCH.unpack_from(packet)
    return cycle, struct.unpack_from(f"<{nodes}I", packet, BATCH.size)
