"""Sparkplug B payloads and the primary host's STATE, without a broker: what a command decodes to,
what is refused before it reaches the control table."""

from __future__ import annotations

import pytest

from gateway.northbound.mqtt import sparkplug_b_pb2 as pb
from gateway.northbound.mqtt.client import _Session
from gateway.northbound.mqtt.edge import death_payload
from gateway.northbound.mqtt.metrics import BD_SEQ, DataType
from gateway.northbound.mqtt.payload import MAX_COMMAND_BYTES, PayloadError, decode_command

Metric = pb.Payload.Metric


def _payload(*metrics: pb.Payload.Metric) -> bytes:
    payload = pb.Payload(timestamp=1)
    payload.metrics.extend(metrics)
    data: bytes = payload.SerializeToString()
    return data


def test_a_command_decodes_to_names_and_values() -> None:
    data = _payload(
        pb.Payload.Metric(name="request_w", datatype=DataType.DOUBLE, double_value=-1500.0),
        pb.Payload.Metric(name="balancing_enabled", datatype=DataType.BOOLEAN, boolean_value=False),
        pb.Payload.Metric(name="reserve_pct", datatype=DataType.INT32, int_value=(-5) & 0xFFFFFFFF),
    )
    assert decode_command(data) == [("request_w", -1500.0), ("balancing_enabled", False), ("reserve_pct", -5)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff" * 10, "not a Sparkplug B payload"),
        (b"x" * (MAX_COMMAND_BYTES + 1), "at most"),
        (_payload(), "no metrics"),
        (
            _payload(pb.Payload.Metric(name="request_w", datatype=DataType.STRING, long_value=5)),
            "datatype 12",
        ),
        (
            _payload(pb.Payload.Metric(name="request_w", datatype=DataType.DOUBLE, boolean_value=True)),
            "datatype",
        ),
    ],
)
def test_what_is_not_a_usable_command_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_command(data)


def test_the_death_certificate_holds_only_bdseq() -> None:
    payload = pb.Payload()
    payload.ParseFromString(death_payload(7))
    assert not payload.HasField("seq")
    [metric] = payload.metrics
    assert (metric.name, metric.datatype, metric.long_value) == (BD_SEQ, DataType.INT64, 7)


def test_the_primary_host_state_rules() -> None:
    session = _Session(host_online=False)
    seen = []
    for state in (
        b"garbage",
        b'{"online": true}',  # no timestamp: not a 3.0 STATE
        b'{"online": true, "timestamp": 10}',
        b'{"online": false, "timestamp": 5}',  # older than the online one: ignored
        b'{"online": false, "timestamp": 11}',  # after the births: the session is over
    ):
        session.state(state)
        seen.append((session.host_online, session.over))
        session.born = session.host_online
    assert seen == [(False, False), (False, False), (True, False), (True, False), (True, True)]
