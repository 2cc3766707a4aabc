"""What a poller sends the core: every NodeState field survives, and nothing malformed gets through."""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest

from gateway.fleet import NodeState, Quality
from gateway.southbound.errors import ErrorCode
from gateway.southbound.pollers.wire import (
    OPTIONAL_NUMBERS,
    STATE,
    STATES_CHUNK_BYTES,
    WireError,
    decode_done,
    decode_states,
    encode_done,
    encode_state,
    encode_states,
)

IDS = ("pack-01", "pack-02", "pack-03")
FULL = NodeState(
    "pack-02",
    Quality.STALE,
    str(ErrorCode.TIMEOUT),
    0.3,
    soc_pct=55.5,
    soh_pct=97.0,
    capacity_wh=10240.0,
    voltage_v=51.2,
    current_a=-12.5,
    power_w=-640.0,
    temp_c=24.0,
    temp_max_c=27.5,
    temp_min_c=21.0,
    cell_voltage_min_v=3.2,
    cell_voltage_max_v=3.35,
    charge_limit_w=3000.0,
    discharge_limit_w=5000.0,
    setpoint_w=-650.0,
    enabled=False,
    state="charging",
    alarms=("over_temp", "cell_imbalance ünicode"),
)


def test_every_field_of_a_node_state_is_on_the_wire() -> None:
    carried = {"node_id", "quality", "error_code", "age_s", "enabled", "state", "alarms", *OPTIONAL_NUMBERS}
    names = [field.name for field in dataclasses.fields(NodeState)]
    assert set(names) == carried
    # decoded positionally: the numbers sit between the age and `enabled`, in the wire's order
    assert names[names.index("age_s") + 1 : names.index("enabled")] == list(OPTIONAL_NUMBERS)


@pytest.mark.parametrize(
    "state",
    [
        FULL,
        NodeState("pack-03"),  # every number unknown, no fault
        NodeState("pack-01", Quality.FAILED, str(ErrorCode.POLLER_DOWN), math.inf, enabled=True),
    ],
)
def test_a_state_comes_back_as_it_went(state: NodeState) -> None:
    index = IDS.index(state.node_id)
    (packet,) = encode_states(7, [encode_state(index, state)])
    assert decode_states(packet, IDS) == (7, [(index, state)])


def test_states_beyond_a_chunk_go_in_several_packets_in_order() -> None:
    states = [encode_state(index % 3, FULL) for index in range(600)]
    packets = encode_states(3, states)
    assert len(packets) > 1 and all(len(packet) <= STATES_CHUNK_BYTES + 5 for packet in packets)
    decoded = [item for packet in packets for item in decode_states(packet, IDS)[1]]
    assert [index for index, _ in decoded] == [index % 3 for index in range(600)]


def test_the_node_is_named_by_the_core_not_by_the_poller() -> None:
    (packet,) = encode_states(1, [encode_state(0, FULL)])
    assert decode_states(packet, IDS)[1][0][1].node_id == "pack-01"


def corrupt(offset: int, value: bytes) -> bytes:
    (packet,) = encode_states(1, [encode_state(1, FULL)])
    return packet[:offset] + value + packet[offset + len(value) :]


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (corrupt(5, struct.pack("<H", 3)), "malformed"),  # a node index outside the share
        (corrupt(7, b"\x09"), "malformed"),  # no such quality
        (corrupt(8, b"\xff"), "malformed"),  # no such fault code
        (corrupt(10, b"\xee"), "malformed"),  # no such state label
        (corrupt(13, struct.pack("<d", math.nan)), "not a duration"),
        (corrupt(13, struct.pack("<d", -1.0)), "not a duration"),
        (corrupt(5 + STATE.size + 2, b"\xff\xfe"), "malformed"),  # an alarm label that is not UTF-8
        (corrupt(5 + STATE.size, struct.pack("<H", 4000)), "overruns"),
        (encode_states(1, [encode_state(0, FULL)])[0][:-3], "overruns"),  # cut in its alarms
        (encode_states(1, [encode_state(0, FULL)])[0][:40], "malformed"),  # cut in its numbers
    ],
)
def test_a_malformed_states_packet_is_refused(packet: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        decode_states(packet, IDS)


def test_non_finite_numbers_are_unknown_as_the_fleet_model_says() -> None:
    (packet,) = encode_states(1, [encode_state(0, dataclasses.replace(FULL, node_id="pack-01"))])
    soc = 5 + STATE.size - 8 * len(OPTIONAL_NUMBERS)
    for value in (math.inf, -math.inf, math.nan):
        bad = packet[:soc] + struct.pack("<d", value) + packet[soc + 8 :]
        assert decode_states(bad, IDS)[1][0][1].soc_pct is None


def test_done_carries_each_nodes_writes_and_must_match_the_share() -> None:
    packet = encode_done(9, [4, 0, 70000])
    assert decode_done(packet, 3) == (9, (4, 0, 70000))
    with pytest.raises(WireError, match="3 nodes"):
        decode_done(packet + b"\0", 3)
