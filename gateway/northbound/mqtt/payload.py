"""Sparkplug B payloads: metrics in, bytes out, and a host's command metrics back out of bytes.

Only what socgw uses of the schema (sparkplug_b.proto): scalar metrics with their datatype, null for an
unknown value, properties for units, engineering ranges and quality. Decoding never raises anything but
`PayloadError`, whatever arrives on a command topic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from gateway.mapping.quality import ValueQuality
from gateway.northbound.mqtt import sparkplug_b_pb2 as pb
from gateway.northbound.mqtt.metrics import DataType, MetricSpec

MAX_COMMAND_BYTES = 65536  # a command is a few metrics: anything longer is refused unread
# The OPC quality codes hosts such as Ignition read from a metric's `Quality` property.
QUALITY_CODES = {ValueQuality.STALE: 64, ValueQuality.OFFLINE: 0, ValueQuality.MISSING: 0}

Scalar = float | int | bool | str | None


class PayloadError(Exception):
    """A payload that is not a Sparkplug B message socgw can use; the message says why."""


@dataclass(frozen=True)
class Reading:
    spec: MetricSpec
    value: float | bool | None
    quality: ValueQuality = ValueQuality.GOOD


def _set_value(metric: pb.Payload.Metric, datatype: DataType, value: float | bool | None) -> None:
    metric.datatype = datatype
    if value is None:
        metric.is_null = True
    elif datatype is DataType.BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype is DataType.DOUBLE:
        metric.double_value = float(value)
    elif datatype is DataType.INT32:
        metric.int_value = int(value) & 0xFFFFFFFF  # Sparkplug carries signed ints as two's complement
    else:
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF


def _property(properties: pb.Payload.PropertySet, key: str, value: float | int | str) -> None:
    properties.keys.append(key)
    entry = properties.values.add()
    if isinstance(value, str):
        entry.type, entry.string_value = DataType.STRING, value
    elif isinstance(value, int):
        entry.type, entry.int_value = DataType.INT32, value
    else:
        entry.type, entry.double_value = DataType.DOUBLE, value


def encode(
    readings: Iterable[Reading], timestamp_ms: int, seq: int | None, *, birth: bool = False,
    extra: Iterable[tuple[str, DataType, float | bool]] = (),
) -> bytes:  # fmt: skip
    """One payload. A birth carries each metric's unit and engineering range as properties."""
    payload = pb.Payload(timestamp=timestamp_ms)
    if seq is not None:
        payload.seq = seq
    for name, datatype, value in extra:
        metric = payload.metrics.add(name=name, timestamp=timestamp_ms)
        _set_value(metric, datatype, value)
    for reading in readings:
        spec = reading.spec
        metric = payload.metrics.add(name=spec.name, timestamp=timestamp_ms)
        _set_value(metric, spec.datatype, reading.value)
        if birth:
            if spec.unit:
                _property(metric.properties, "engUnit", spec.unit)
            if spec.low is not None and spec.high is not None:
                _property(metric.properties, "engLow", spec.low)
                _property(metric.properties, "engHigh", spec.high)
        if reading.quality is not ValueQuality.GOOD:
            _property(metric.properties, "Quality", QUALITY_CODES[reading.quality])
    data: bytes = payload.SerializeToString()
    return data


def decode_command(data: bytes) -> list[tuple[str, Scalar]]:
    """The (name, value) of each metric of an NCMD/DCMD payload; PayloadError when it is not one."""
    metrics = decode_message(data, MAX_COMMAND_BYTES, "in a command").metrics
    if not metrics:
        raise PayloadError("no metrics")
    return list(metrics)


# Which value field each Sparkplug datatype travels in (specification 6.4.16): a metric whose value is
# in another field is malformed, whatever the field holds.
_FIELD_OF_TYPE = {
    **dict.fromkeys((1, 2, 3, 5, 6, 7), "int_value"),
    **dict.fromkeys((4, 8, 13), "long_value"),
    9: "float_value",
    10: "double_value",
    11: "boolean_value",
    **dict.fromkeys((12, 14, 15), "string_value"),
}


def _value(metric: pb.Payload.Metric) -> Scalar:
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if _FIELD_OF_TYPE.get(metric.datatype) != kind:
        raise PayloadError(f"metric `{metric.name}`: datatype {metric.datatype} does not travel in {kind}")
    if kind == "boolean_value":
        return metric.boolean_value
    if kind in ("double_value", "float_value"):
        return float(getattr(metric, kind))
    if kind == "int_value":
        return _signed(metric.int_value, 32) if metric.datatype in (1, 2, 3) else metric.int_value
    if kind == "long_value":
        return _signed(metric.long_value, 64) if metric.datatype == DataType.INT64 else metric.long_value
    if kind == "string_value":
        return metric.string_value
    return None


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


@dataclass(frozen=True)
class Decoded:
    seq: int | None  # None when absent (a death)
    metrics: tuple[tuple[str, Scalar], ...]  # (name, value) of each metric, in the payload's order
    stale: frozenset[str]  # the metrics whose `Quality` property says stale (64), not good


def decode_message(data: bytes, max_bytes: int, where: str = "in a message") -> Decoded:
    """Any Sparkplug B payload (a host reads births, data and deaths with it); PayloadError when it is
    not one or is over `max_bytes`."""
    if len(data) > max_bytes:
        raise PayloadError(f"{len(data)} bytes (at most {max_bytes} {where})")
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise PayloadError(f"not a Sparkplug B payload ({error})") from None
    seq = payload.seq if payload.HasField("seq") else None
    metrics = tuple((metric.name, _value(metric)) for metric in payload.metrics)
    stale = frozenset(
        metric.name
        for metric in payload.metrics
        if metric.HasField("properties") and _quality(metric) == QUALITY_CODES[ValueQuality.STALE]
    )
    return Decoded(seq, metrics, stale)


def _quality(metric: pb.Payload.Metric) -> int | None:
    """The metric's `Quality` property (OPC code), None without one."""
    properties = metric.properties
    for key, value in zip(properties.keys, properties.values, strict=False):
        if key == "Quality" and value.WhichOneof("value") == "int_value":
            return int(value.int_value)
    return None
