"""The pure parts of the southbound adapter: frame inspection, backoff, write bookkeeping, variants."""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import Access, DataType, Point, Table, Variant, Version, VersionRange
from gateway.southbound.backoff import Backoff
from gateway.southbound.errors import ErrorCode, Facts, FieldError, NodeContext, Region, Target
from gateway.southbound.frames import Anomaly, FrameInspector, expectation_of
from gateway.southbound.identify import common_points, marker_mismatches, select_variant
from gateway.southbound.session import SessionOptions
from gateway.southbound.writer import WritePolicy, WriteState, WriteStatus


def request(tid: int, unit: int, function: int, address: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, function, address, count)


def response(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


def inspected(sent: bytes, received: bytes) -> tuple[FrameInspector, bytes]:
    inspector = FrameInspector()
    inspector.begin()
    inspector(True, sent)
    return inspector, inspector(False, received)


def test_a_correct_answer_passes_unchanged() -> None:
    answer = response(7, 3, bytes([3, 4, 0, 1, 0, 2]))
    inspector, passed = inspected(request(7, 3, 3, 0, 2), answer)
    assert passed == answer
    assert inspector.observation is None


def test_an_answer_from_another_unit_is_recorded_with_its_unit_id() -> None:
    inspector, passed = inspected(request(7, 3, 3, 0, 2), response(7, 5, bytes([3, 4, 0, 1, 0, 2])))
    assert inspector.observation is not None
    assert inspector.observation.anomaly is Anomaly.UNIT_MISMATCH
    assert inspector.observation.unit == 5
    assert passed  # pymodbus drops it itself


def test_a_wrong_byte_count_is_malformed_and_swallowed() -> None:
    inspector, passed = inspected(request(1, 1, 3, 0, 2), response(1, 1, bytes([3, 2, 0, 1])))
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.MALFORMED
    assert passed == b""


def test_a_foreign_function_code_is_malformed() -> None:
    inspector, _ = inspected(request(1, 1, 3, 0, 2), response(1, 1, bytes([0x80, 1])))
    assert inspector.observation is not None and "function code 0x80" in inspector.observation.detail


def test_a_nonzero_protocol_id_is_malformed() -> None:
    inspector, passed = inspected(
        request(1, 1, 3, 0, 2), response(1, 1, bytes([3, 4, 0, 1, 0, 2]), protocol=9)
    )
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.MALFORMED
    assert passed == b""


def test_an_exception_answer_is_well_formed() -> None:
    inspector, passed = inspected(request(1, 1, 6, 0, 5), response(1, 1, bytes([0x86, 0x01])))
    assert inspector.observation is None and passed


def test_a_partial_frame_waits_and_is_counted() -> None:
    inspector, passed = inspected(request(1, 1, 3, 0, 2), response(1, 1, bytes([3, 4, 0, 1, 0, 2]))[:9])
    assert passed and inspector.observation is None
    assert inspector.pending_bytes == 9


def test_an_answer_after_the_request_ended_counts_as_late() -> None:
    inspector = FrameInspector()
    inspector.begin()
    inspector(True, request(1, 1, 3, 0, 2))
    inspector.end()
    assert inspector(False, response(1, 1, bytes([3, 4, 0, 1, 0, 2]))) == b""
    assert inspector.late_answers == 1


def test_expectations_of_reads_and_writes() -> None:
    read_bits = expectation_of(request(1, 1, 1, 0, 9))
    assert read_bits is not None and read_bits.response_length == 3 + 2
    write = expectation_of(request(1, 1, 6, 0, 5))
    assert write is not None and write.response_length == 6


@given(st.binary(max_size=300), st.integers(1, 65000), st.integers(1, 247))
def test_the_inspector_never_raises_and_returns_input_or_nothing(data: bytes, tid: int, unit: int) -> None:
    inspector, passed = inspected(request(tid, unit, 3, 0, 2), data)
    assert passed in (data, b"")
    assert inspector.pending_bytes >= 0


@given(st.integers(0, 40), st.floats(0.01, 1.0), st.floats(0.1, 10.0))
def test_backoff_stays_within_half_to_full_capped_exponential(failures: int, base: float, cap: float) -> None:
    backoff = Backoff(base, cap, random.Random(failures))
    backoff.failures = failures
    ceiling = min(cap, base * 2.0 ** min(failures, 32))
    assert ceiling / 2 <= backoff.next_delay_s() <= ceiling
    assert backoff.failures == failures + 1


def test_backoff_grows_and_resets() -> None:
    backoff = Backoff(0.1, 2.0, random.Random(1))
    delays = [backoff.next_delay_s() for _ in range(8)]
    assert delays[0] <= 0.1 and max(delays) <= 2.0 and delays[-1] >= 1.0
    backoff.reset()
    assert backoff.next_delay_s() <= 0.1


SETPOINT = Point(
    "setpoint_w",
    Table.HOLDING,
    0,
    DataType.I32,
    2,
    access=Access.READ_WRITE,
    minimum=-1000,
    maximum=1000,
    deadband=5,
)
HEARTBEAT = Point("heartbeat", Table.HOLDING, 2, DataType.U16, 1, access=Access.READ_WRITE)


def test_the_same_command_twice_sends_one_write() -> None:
    state = WriteState(WritePolicy())
    assert state.decide(SETPOINT, 300.0, [0, 300], 0.0) is None
    state.written(SETPOINT, 300.0, [0, 300], 0.0)
    assert state.decide(SETPOINT, 300.0, [0, 300], 0.1) is WriteStatus.UNCHANGED
    assert state.decide(SETPOINT, 304.0, [0, 304], 0.2) is WriteStatus.UNCHANGED  # inside the deadband
    assert state.decide(SETPOINT, 306.0, [0, 306], 0.3) is None
    assert state.writes_total == 1


def test_an_unchanged_value_is_rewritten_when_the_refresh_is_due() -> None:
    state = WriteState(WritePolicy(refresh_s=5.0))
    state.written(SETPOINT, 300.0, [0, 300], 0.0)
    assert state.decide(SETPOINT, 300.0, [0, 300], 4.9) is WriteStatus.UNCHANGED
    assert state.decide(SETPOINT, 300.0, [0, 300], 5.0) is None


def test_a_failed_write_waits_before_the_next_attempt() -> None:
    state = WriteState(WritePolicy(retry_after_s=1.0))
    state.failed(SETPOINT, 10.0)
    assert state.decide(SETPOINT, 300.0, [0, 300], 10.5) is WriteStatus.DEFERRED
    assert state.decide(SETPOINT, 300.0, [0, 300], 11.0) is None


def test_confirmed_values_are_learnt_from_the_device_and_forgotten_on_reconnect() -> None:
    state = WriteState(WritePolicy())
    points = {"setpoint_w": SETPOINT, "heartbeat": HEARTBEAT}
    state.learn(
        points, {"setpoint_w": 300.0, "heartbeat": 41.0}, {"setpoint_w": [0, 300], "heartbeat": [41]}, 0.0
    )
    assert state.decide(SETPOINT, 300.0, [0, 300], 1.0) is WriteStatus.UNCHANGED
    assert state.next_heartbeat(HEARTBEAT, 1.0) == 42
    state.forget_device()
    assert state.decide(SETPOINT, 300.0, [0, 300], 2.0) is None


def test_the_heartbeat_counts_up_wraps_and_waits_its_interval() -> None:
    state = WriteState(WritePolicy(heartbeat_interval_s=1.0))
    wrapping = dataclasses.replace(HEARTBEAT, maximum=2)
    sent = []
    for step in range(5):
        now = float(step)
        counter = state.next_heartbeat(wrapping, now)
        assert counter is not None
        state.heartbeat_sent(counter, now)
        assert state.next_heartbeat(wrapping, now + 0.5) is None
        sent.append(counter)
    assert sent == [0, 1, 2, 0, 1]
    assert state.heartbeats == 5


def test_a_connections_second_heartbeat_comes_early_by_its_stagger_and_never_late() -> None:
    state = WriteState(WritePolicy(heartbeat_interval_s=1.0), stagger=0.3)
    due = []
    for connection in range(2):
        now = 10.0 * connection
        for _ in range(3):
            while state.next_heartbeat(HEARTBEAT, now) is None:
                now = round(now + 0.1, 1)
            state.heartbeat_sent(0, now)
            due.append(now)
        state.forget_device()  # a new connection: its heartbeats start over, staggered again
    assert due == [0.0, 0.7, 1.7, 10.0, 10.7, 11.7]


def _variant(firmware: VersionRange, **points: Point) -> Variant:
    return Variant(firmware, points)


def test_common_points_are_those_every_variant_maps_identically(profile_library: ProfileLibrary) -> None:
    soc = Point("soc_pct", Table.INPUT, 0, DataType.U16, 1, scale=0.1)
    power_v1 = Point("power_w", Table.INPUT, 1, DataType.I16, 1)
    power_v2 = Point("power_w", Table.INPUT, 5, DataType.I16, 1)
    scaled = Point("voltage_v", Table.INPUT, 2, DataType.U16, 1, scale_register="v_sf")
    profile = dataclasses.replace(
        profile_library.get("microstore/mp2000"),
        variants=(
            _variant(VersionRange(Version(1), Version(2)), soc_pct=soc, power_w=power_v1, voltage_v=scaled),
            _variant(VersionRange(Version(2)), soc_pct=soc, power_w=power_v2, voltage_v=scaled),
        ),
    )
    assert set(common_points(profile)) == {"soc_pct"}  # voltage_v's scale register is not common


def test_variant_selection_from_identify_values(profile_library: ProfileLibrary) -> None:
    profile = profile_library.get("rackcell/rbms-x")
    markers: dict[str, Any] = dict(profile.identify.markers)
    assert not marker_mismatches(profile, markers)
    first, *_ = profile.variants
    raw = first.firmware.minimum.major * 100 + first.firmware.minimum.minor
    chosen = select_variant(profile, {**markers, "firmware": float(raw)})
    assert chosen.variant is first
    unknown = select_variant(profile, {**markers, "firmware": 50.0})  # 0.50: older than any variant
    assert unknown.variant is None and unknown.firmware == Version(0, 50)
    assert unknown.problem is not None and "0.50.0" in unknown.problem
    wrong = marker_mismatches(profile, dict.fromkeys(markers, 1))
    assert wrong and profile.key in wrong[0]


def test_messages_name_node_register_points_and_remedy() -> None:
    facts = Facts(
        ErrorCode.UNIT_MISMATCH,
        "the answer came from unit 5",
        Target("10.0.0.7", 502, 3),
        region=Region(Table.HOLDING, 122, 2),
        points=("setpoint_w",),
        extra={"got": "5"},
    )
    message = str(FieldError(facts, NodeContext(node_id="pack-3", address_notation="modicon")))
    assert message.startswith("node pack-3 (10.0.0.7:502 unit 3): E_MB_UNIT_MISMATCH:")
    assert "holding registers 122..123" in message and "40123..40124" in message
    assert "setpoint_w" in message
    assert "invalid slave response: expected unit 3, got 5; check `unit` of node pack-3" in message


def test_every_code_has_its_own_remedy() -> None:
    remedies = set()
    for code in ErrorCode:
        message = str(FieldError(Facts(code, "x", Target("h", 1, 1))))
        remedies.add(message.split("; ", 1)[1])
    assert len(remedies) >= len(ErrorCode) - 1  # 05 and 06 share E_MB_DEVICE_BUSY's, all others differ


def test_session_options_for_the_gateway_and_for_the_field_tools() -> None:
    assert SessionOptions.for_node() == SessionOptions()  # the profile's timeout, the 100 ms loop's pacing
    assert SessionOptions.for_node(250).timeout_s == 0.25
    tool = SessionOptions.for_tool(300)
    assert (tool.timeout_s, tool.connect_timeout_s) == (0.3, 1.0)
    assert (tool.writes.heartbeat_interval_s, tool.writes.verify_points) == (None, frozenset())
    patient = SessionOptions.for_tool(2500, verify="setpoint_w")
    assert (patient.connect_timeout_s, patient.writes.verify_points) == (2.5, frozenset({"setpoint_w"}))


def test_an_answer_with_transaction_id_0_is_wrong_and_never_reaches_pymodbus() -> None:
    inspector, passed = inspected(request(7, 1, 3, 0, 2), response(0, 1, bytes([3, 4, 0, 1, 0, 2])))
    assert inspector.observation is not None and inspector.observation.anomaly is Anomaly.WRONG_TID
    assert inspector.observation.transaction_id == 0 and passed == b""


def test_an_earlier_requests_answer_is_late_and_the_outstanding_answer_passes() -> None:
    inspector = FrameInspector()
    for tid in (1, 2):
        inspector.begin()
        inspector(True, request(tid, 1, 3, 0, 2))
        inspector.end()
    inspector.begin()
    inspector(True, request(3, 1, 3, 0, 2))
    both = response(2, 1, bytes([3, 4, 0, 1, 0, 2])) + response(3, 1, bytes([3, 4, 0, 1, 0, 2]))
    assert inspector(False, both) == both  # pymodbus skips the late one itself
    assert anomaly_of(inspector) is None and inspector.late_answers == 1
    assert inspector(False, response(999, 1, bytes([3, 4, 0, 1, 0, 2]))) == b""
    assert anomaly_of(inspector) is Anomaly.WRONG_TID


def anomaly_of(inspector: FrameInspector) -> Anomaly | None:
    return None if inspector.observation is None else inspector.observation.anomaly
