"""The register codec: fixed vectors from the wire formats, and round trips for every type."""

from __future__ import annotations

import math
import struct
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.diagnostics import Mark
from gateway.profiles.codec import (
    INTEGER_RANGE,
    REGISTER_WIDTH,
    CodecError,
    PointsDecoder,
    active_labels,
    check_write,
    decode,
    decode_firmware,
    decode_points,
    encode,
    label_of,
)
from gateway.profiles.model import Access, DataType, Point, Table, Version, WordOrder

BIG, LITTLE = WordOrder.BIG, WordOrder.LITTLE


def point(
    data_type: DataType,
    count: int | None = None,
    table: Table = Table.HOLDING,
    **fields: object,
) -> Point:
    width = count if count is not None else REGISTER_WIDTH.get(data_type, 1)
    return Point(name="x_test", table=table, address=0, type=data_type, count=width, **fields)  # type: ignore[arg-type]


# --- fixed vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_type", "order", "value", "words"),
    [
        (DataType.F32, BIG, 1.0, [0x3F80, 0x0000]),
        (DataType.F32, LITTLE, 1.0, [0x0000, 0x3F80]),
        (DataType.F32, BIG, -2.5, [0xC020, 0x0000]),
        (DataType.I32, BIG, -20000, [0xFFFF, 0xB1E0]),
        (DataType.I32, LITTLE, -20000, [0xB1E0, 0xFFFF]),
        (DataType.U32, BIG, 0x12345678, [0x1234, 0x5678]),
        (DataType.U32, LITTLE, 0x12345678, [0x5678, 0x1234]),
        (DataType.I16, BIG, -1, [0xFFFF]),
        (DataType.U16, LITTLE, 513, [0x0201]),  # word order does not touch single registers
        (DataType.F64, BIG, 1.0, [0x3FF0, 0, 0, 0]),
        (DataType.F64, LITTLE, 1.0, [0, 0, 0, 0x3FF0]),
        (DataType.U64, BIG, 0x0001_0002_0003_0004, [1, 2, 3, 4]),
        (DataType.I64, LITTLE, -2, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
    ],
)
def test_known_vectors(data_type: DataType, order: WordOrder, value: float, words: list[int]) -> None:
    p = point(data_type, word_order=order)
    assert encode(p, value) == words
    assert decode(p, words) == value


def test_strings_are_two_characters_per_register_nul_padded() -> None:
    marker = point(DataType.STR, 2)
    assert encode(marker, "SunS") == [0x5375, 0x6E53]
    assert decode(marker, [0x5375, 0x6E53]) == "SunS"
    name = point(DataType.STR, 4)
    assert encode(name, "abc") == [0x6162, 0x6300, 0, 0]
    assert decode(name, [0x6162, 0x6300, 0, 0]) == "abc"
    assert decode(name, [0, 0, 0, 0]) == ""  # SunSpec "not implemented" string


def test_scale_and_offset() -> None:
    tenths = point(DataType.U16, scale=0.1)
    assert decode(tenths, [23]) == 2.3  # divides by 10: no 2.3000000000000003
    assert encode(tenths, 2.3) == [23]
    celsius = point(DataType.U16, scale=0.1, offset=-40)
    assert decode(celsius, [650]) == pytest.approx(25.0)
    assert encode(celsius, 25.0) == [650]
    flipped = point(DataType.I32, scale=-1)
    assert decode(flipped, [0xFFFF, 0xB1E0]) == 20000.0
    # SunSpec SetOp (1 connect, 2 disconnect) read as an enable flag with scale -1, offset 2.
    set_op = point(DataType.U16, scale=-1, offset=2)
    assert decode(set_op, [1]) == 1.0
    assert decode(set_op, [2]) == 0.0
    assert encode(set_op, 0) == [2]


def test_scale_factor_registers() -> None:
    soc = point(DataType.U16, scale_register="soc_sf")
    assert decode(soc, [4711], -2) == 47.11
    assert encode(soc, 47.11, -2) == [4711]
    assert decode(soc, [12], 3) == 12000.0
    with pytest.raises(CodecError, match="scale register 'soc_sf'"):
        decode(soc, [1])
    with pytest.raises(CodecError, match=r"outside -10\.\.10"):
        decode(soc, [1], 40)


def test_sentinels_read_as_none() -> None:
    assert decode(point(DataType.I16, sentinel=0x8000), [0x8000]) is None
    assert decode(point(DataType.I16, sentinel=-32768), [0x8000]) is None
    assert decode(point(DataType.I16, sentinel=0x8000), [0x7FFF]) == 32767.0
    assert decode(point(DataType.U16, sentinel=0xFFFF), [0xFFFF]) is None
    bitfield = point(DataType.BITS, 2, sentinel=0xFFFFFFFF)
    assert decode(bitfield, [0xFFFF, 0xFFFF]) is None
    assert decode(point(DataType.U32, word_order=LITTLE, sentinel=0x12345678), [0x5678, 0x1234]) is None
    assert decode(point(DataType.F32), [0x7FC0, 0]) is None  # NaN: nothing to report


def test_enum_and_bits_labels() -> None:
    state = point(DataType.ENUM, labels={0: "off", 3: "discharging"})
    assert decode(state, [3]) == 3
    assert label_of(state, 3) == "discharging"
    assert label_of(state, 9) is None
    assert encode(state, "off") == [0]
    with pytest.raises(CodecError, match="not one of its labels"):
        encode(state, "flying")
    alarms = point(DataType.BITS, 2, labels={0: "over_voltage", 17: "hot"})
    raw = decode(alarms, [0x0002, 0x0001])
    assert raw == 0x0002_0001
    assert isinstance(raw, int)
    assert active_labels(alarms, raw) == ("over_voltage", "hot")
    assert active_labels(alarms, 0b100) == ("bit2",)  # an unlabelled alarm is not hidden


def test_bit_tables_read_bits_least_significant_first() -> None:
    enable = point(DataType.U16, 1, Table.COIL)
    assert decode(enable, [True]) == 1.0
    assert encode(enable, 0) == [0]
    nibble = point(DataType.BITS, 4, Table.DISCRETE, labels={2: "door_open"})
    assert decode(nibble, [0, 0, 1, 0]) == 4
    assert encode(nibble, 5) == [1, 0, 1, 0]


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(CodecError, match=r"x_test.*outside the u16 range 0\.\.65535"):
        encode(point(DataType.U16), 70000)
    with pytest.raises(CodecError, match="outside the i16 range"):
        encode(point(DataType.I16, scale=0.1), 4000)
    with pytest.raises(CodecError, match="at most 4"):
        encode(point(DataType.STR, 2), "too long")
    with pytest.raises(CodecError, match="not a finite number"):
        encode(point(DataType.F32), math.nan)
    with pytest.raises(CodecError, match="does not fit a f32"):
        encode(point(DataType.F32), 1e39)
    with pytest.raises(CodecError, match="takes a number"):
        encode(point(DataType.U16), "12")
    with pytest.raises(CodecError, match="cannot decode"):
        decode(point(DataType.U32), [1])


def test_check_write_names_bounds_and_mark() -> None:
    mark = Mark("p.yaml", 12, 3)
    setpoint = Point(
        "setpoint_w",
        Table.HOLDING,
        0,
        DataType.I32,
        2,
        access=Access.READ_WRITE,
        minimum=-100,
        maximum=100,
        unit="W",
        mark=mark,
    )
    check_write(setpoint, 100)
    with pytest.raises(CodecError, match=r"p\.yaml:12:3.*-100\.\.100"):
        check_write(setpoint, 101)
    readonly = Point("soc_pct", Table.INPUT, 0, DataType.U16, 1, mark=mark)
    with pytest.raises(CodecError, match="read-only"):
        check_write(readonly, 1)


def test_decode_points_resolves_scale_registers() -> None:
    points = {
        "w_sf": Point("w_sf", Table.HOLDING, 5, DataType.I16, 1, sentinel=0x8000),
        "power_w": Point("power_w", Table.HOLDING, 0, DataType.I16, 1, scale_register="w_sf"),
        "soc_pct": Point("soc_pct", Table.HOLDING, 1, DataType.U16, 1, scale=0.1),
    }
    values = decode_points(points, {"w_sf": [0xFFFF], "power_w": [1234], "soc_pct": [555]})
    assert values == {"w_sf": -1.0, "power_w": 123.4, "soc_pct": 55.5}
    missing = decode_points(points, {"w_sf": [0x8000], "power_w": [1234]})
    assert missing == {"w_sf": None, "power_w": None}  # the factor is "not implemented"
    assert decode_points(points, {"power_w": [1]}) == {"power_w": None}  # the factor was not read


def test_decode_points_keeps_the_values_of_unchanged_words_and_decodes_the_rest() -> None:
    points = {
        "w_sf": Point("w_sf", Table.HOLDING, 5, DataType.I16, 1, sentinel=0x8000),
        "power_w": Point("power_w", Table.HOLDING, 0, DataType.I16, 1, scale_register="w_sf"),
        "soc_pct": Point("soc_pct", Table.HOLDING, 1, DataType.U16, 1, scale=0.1),
    }
    raw = {"w_sf": [0xFFFF], "power_w": [1234], "soc_pct": [555]}
    # Marked earlier values show which ones were kept rather than decoded again.
    before = (raw, {"w_sf": -1.0, "power_w": 1.5, "soc_pct": 2.5})
    assert decode_points(points, dict(raw), before) == {"w_sf": -1.0, "power_w": 1.5, "soc_pct": 2.5}
    moved = decode_points(points, {**raw, "soc_pct": [556]}, before)
    assert moved == {"w_sf": -1.0, "power_w": 1.5, "soc_pct": 55.6}
    rescaled = decode_points(points, {**raw, "w_sf": [0xFFFE]}, before)  # same words, new scale factor
    assert rescaled == {"w_sf": -2.0, "power_w": 12.34, "soc_pct": 2.5}
    assert decode_points(points, {"soc_pct": [555]}, ({}, {})) == {"soc_pct": 55.5}


def test_one_decoder_serves_many_calls_with_its_map_and_names_a_stranger() -> None:
    points = {
        "w_sf": Point("w_sf", Table.HOLDING, 5, DataType.I16, 1, sentinel=0x8000),
        "power_w": Point("power_w", Table.HOLDING, 0, DataType.I16, 1, scale_register="w_sf"),
    }
    decoder = PointsDecoder(points)
    first = decoder({"w_sf": [0xFFFF], "power_w": [1234]})
    assert first == {"w_sf": -1.0, "power_w": 123.4}
    assert decoder({"w_sf": [0x0001], "power_w": [1234]}, ({"w_sf": [0xFFFF], "power_w": [1234]}, first)) == {
        "w_sf": 1.0,
        "power_w": 12340.0,
    }
    with pytest.raises(CodecError, match="'soc_pct', which is not a point of this profile variant"):
        decoder({"soc_pct": [1]})


def test_firmware_formats() -> None:
    assert decode_firmware("V2.1.3-rc1", "string") == Version(2, 1, 3)
    assert decode_firmware(201.0, "major_minor_x100") == Version(2, 1)
    assert decode_firmware(0x0203, "major_minor_bytes") == Version(2, 3)
    with pytest.raises(CodecError, match="no version number"):
        decode_firmware("unknown", "string")


# --- round trips --------------------------------------------------------------------------------

_SCALES = [1.0, 0.1, 0.01, 10.0, -1.0, 0.5]
_NUMERIC = [t for t in REGISTER_WIDTH if t not in (DataType.F32, DataType.F64)]


def _words_for_raw(data_type: DataType, order: WordOrder, raw: int) -> list[int]:
    count = REGISTER_WIDTH[data_type]
    pattern = raw & ((1 << (16 * count)) - 1)
    words = [(pattern >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]
    return words[::-1] if order is LITTLE else words


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_integer_round_trip(data: st.DataObject) -> None:
    data_type = data.draw(st.sampled_from(_NUMERIC))
    order = data.draw(st.sampled_from(list(WordOrder)))
    use_factor = data.draw(st.booleans())
    scale = 1.0 if use_factor else data.draw(st.sampled_from(_SCALES))
    factor = data.draw(st.integers(-4, 4)) if use_factor else None
    offset = data.draw(st.sampled_from([0.0, -40.0, 2.0]))
    low, high = INTEGER_RANGE[data_type]
    # Values travel as floats: 64-bit raws stay exact up to 2**50 or so.
    low, high = max(low, -(2**50)), min(high, 2**50)
    raw = data.draw(st.integers(low, high))
    sentinel = data.draw(st.none() | st.integers(low, high).filter(lambda s: s != raw))
    p = point(
        data_type,
        word_order=order,
        scale=scale,
        offset=offset,
        scale_register="x_sf" if use_factor else None,
        sentinel=sentinel,
    )
    words = _words_for_raw(data_type, order, raw)
    value = decode(p, words, factor)
    assert isinstance(value, float)
    assert encode(p, value, factor) == words
    if sentinel is not None:
        assert decode(p, _words_for_raw(data_type, order, sentinel), factor) is None


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_float_round_trip(data: st.DataObject) -> None:
    data_type = data.draw(st.sampled_from([DataType.F32, DataType.F64]))
    order = data.draw(st.sampled_from(list(WordOrder)))
    scale = data.draw(st.sampled_from([1.0, 0.5, 2.0, -1.0]))  # exact in binary, so words survive
    width: Literal[32, 64] = 32 if data_type is DataType.F32 else 64
    number = data.draw(
        st.floats(
            width=width, allow_nan=False, allow_infinity=False, min_value=-(2.0**100), max_value=2.0**100
        )
    )
    p = point(data_type, word_order=order, scale=scale)
    code = "f" if data_type is DataType.F32 else "d"
    raw_words = list(struct.unpack(f">{REGISTER_WIDTH[data_type]}H", struct.pack(f">{code}", number)))
    words = raw_words[::-1] if order is LITTLE else raw_words
    value = decode(p, words)
    assert isinstance(value, float)
    assert decode(p, encode(p, value)) == value


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 4),
    order=st.sampled_from(list(WordOrder)),
    data=st.data(),
)
def test_bits_and_enum_round_trip(count: int, order: WordOrder, data: st.DataObject) -> None:
    if count == 3:
        count = 4
    for data_type in (DataType.BITS, DataType.ENUM):
        raw = data.draw(st.integers(0, (1 << (16 * count)) - 1))
        p = point(data_type, count, word_order=order, labels={0: "a"})
        words = encode(p, raw)
        assert len(words) == count
        assert decode(p, words) == raw


@given(text=st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=8))
def test_string_round_trip(text: str) -> None:
    p = point(DataType.STR, 8)
    if len(text.encode()) > 16:
        with pytest.raises(CodecError):
            encode(p, text)
        return
    words = encode(p, text)
    assert len(words) == 8
    assert decode(p, words) == text


@given(bits=st.lists(st.integers(0, 1), min_size=1, max_size=64))
def test_bit_table_round_trip(bits: list[int]) -> None:
    p = point(DataType.BITS, len(bits), Table.COIL)
    raw = decode(p, bits)
    assert isinstance(raw, int)
    assert encode(p, raw) == bits
