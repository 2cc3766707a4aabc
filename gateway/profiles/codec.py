"""Register words ⇄ engineering values, per profile point. Pure: no I/O, no clocks.

This runs per point per poll for hundreds of units, so everything that depends only on the point
(struct formats, scale split into multiplier and divisor, the typed sentinel, bit labels) is worked
out once per `Point` and cached beside it; a call is then two C-level struct operations and a little
arithmetic.

We use `struct` rather than pymodbus's `convert_from_registers`/`convert_to_registers`: those rebuild
format strings and byte arrays on every call, and their STRING handling reverses registers for
word order "little" and does not pad to the point's length.
"""

from __future__ import annotations

import math
import re
import struct
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from gateway.profiles.model import DataType, Point, Version, WordOrder

__all__ = [
    "FIRMWARE_FORMATS",
    "INTEGER_RANGE",
    "REGISTER_WIDTH",
    "CodecError",
    "PointsDecoder",
    "Value",
    "active_labels",
    "check_write",
    "decode",
    "decode_firmware",
    "decode_points",
    "decode_scale_factor",
    "encode",
    "label_of",
    "raw_range",
]

Value = float | int | str


class CodecError(ValueError):
    """A value does not fit its point (or words do not fit the point's type); the message names the point."""


# Registers a fixed-width type occupies. str, bits and enum take their width from the point's count.
REGISTER_WIDTH: Mapping[DataType, int] = MappingProxyType(
    {
        DataType.U16: 1,
        DataType.I16: 1,
        DataType.U32: 2,
        DataType.I32: 2,
        DataType.F32: 2,
        DataType.U64: 4,
        DataType.I64: 4,
        DataType.F64: 4,
    }
)

# Raw integer range of each integer type.
INTEGER_RANGE: Mapping[DataType, tuple[int, int]] = MappingProxyType(
    {
        DataType.U16: (0, 0xFFFF),
        DataType.I16: (-0x8000, 0x7FFF),
        DataType.U32: (0, 0xFFFF_FFFF),
        DataType.I32: (-0x8000_0000, 0x7FFF_FFFF),
        DataType.U64: (0, 0xFFFF_FFFF_FFFF_FFFF),
        DataType.I64: (-0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF),
    }
)

FIRMWARE_FORMATS: tuple[str, ...] = ("string", "major_minor_x100", "major_minor_bytes")

_FLOAT_TYPES = (DataType.F32, DataType.F64)
_LABELLED_TYPES = (DataType.ENUM, DataType.BITS)
_STRUCT_CODE = {
    DataType.U16: "H",
    DataType.I16: "h",
    DataType.U32: "I",
    DataType.I32: "i",
    DataType.U64: "Q",
    DataType.I64: "q",
    DataType.F32: "f",
    DataType.F64: "d",
}
_UNSIGNED_CODE = {1: "H", 2: "I", 4: "Q"}  # bits/enum by register count
_SCALE_FACTOR_LIMIT = 10  # SunSpec scale factors are powers of ten in -10..10

_NUMBER, _LABELLED, _TEXT = 0, 1, 2  # what decode() returns: scaled float, raw int, text


def raw_range(point: Point) -> tuple[int, int] | None:
    """The raw integer range of an integer-valued point (None for floats and strings)."""
    if point.table.is_bit_table:
        return (0, (1 << point.count) - 1)
    if point.type in INTEGER_RANGE:
        return INTEGER_RANGE[point.type]
    if point.type in _LABELLED_TYPES:
        return (0, (1 << (16 * point.count)) - 1)
    return None


def _where(point: Point) -> str:
    return f"point {point.name!r} ({point.mark})"


@dataclass(frozen=True, slots=True)
class _Compiled:
    """Everything about a point that does not change between calls."""

    kind: int
    unpack: Callable[[Sequence[int]], int | float | str]
    pack: Callable[[int | float], list[int]]
    sentinel: int | float | None  # typed raw value that means "not implemented"
    multiplier: float  # engineering = raw * multiplier / divisor + offset
    divisor: float
    offset: float
    raw_limits: tuple[int, int] | None  # integer raw range, None for floats/strings
    is_float: bool
    bit_labels: tuple[tuple[int, str], ...]  # (bit, label) for bits points
    label_values: Mapping[str, int]  # label -> value for enum points
    pack_text: Callable[[str], list[int]] | None = None  # str points only


def _split_scale(scale: float) -> tuple[float, float]:
    """Scale as multiplier/divisor, so 0.1 divides by 10 (23 -> 2.3, not 2.3000000000000003)."""
    if scale != 0 and abs(scale) < 1:
        inverse = round(1 / abs(scale))
        if inverse and math.isclose(1 / inverse, abs(scale), rel_tol=1e-12):
            return (math.copysign(1.0, scale), float(inverse))
    return (float(scale), 1.0)


def _register_packers(
    point: Point,
) -> tuple[Callable[[Sequence[int]], int | float], Callable[[int | float], list[int]]]:
    """Unpack/pack closures for numeric, enum and bits points in register tables."""
    count = point.count
    code = _STRUCT_CODE.get(point.type) or _UNSIGNED_CODE.get(count)
    if code is None or struct.calcsize(code) != 2 * count:
        raise CodecError(f"{_where(point)}: type {point.type} cannot occupy {count} register(s)")
    # Little word order = least significant word first: packing the words little-endian gives the
    # value's little-endian bytes, so one pair of Structs per byte order covers both orders.
    order = "<" if point.word_order is WordOrder.LITTLE and count > 1 else ">"
    words_struct = struct.Struct(f"{order}{count}H")
    value_struct = struct.Struct(f"{order}{code}")
    words_pack, words_unpack = words_struct.pack, words_struct.unpack
    value_pack, value_unpack = value_struct.pack, value_struct.unpack

    def unpack(words: Sequence[int]) -> int | float:
        result: int | float = value_unpack(words_pack(*words))[0]
        return result

    def pack(raw: int | float) -> list[int]:
        return list(words_unpack(value_pack(raw)))

    return unpack, pack


def _bit_packers(
    point: Point,
) -> tuple[Callable[[Sequence[int]], int], Callable[[int | float], list[int]]]:
    """Coil/discrete points: `count` bits, the first address is the least significant bit."""
    count = point.count

    def unpack(bits: Sequence[int]) -> int:
        if len(bits) != count:
            raise CodecError(f"{_where(point)}: expected {count} bit(s), got {len(bits)}")
        raw = 0
        for index, bit in enumerate(bits):
            if bit:
                raw |= 1 << index
        return raw

    def pack(raw: int | float) -> list[int]:
        value = int(raw)
        return [(value >> index) & 1 for index in range(count)]

    return unpack, pack


def _text_packers(point: Point) -> tuple[Callable[[Sequence[int]], str], Callable[[str], list[int]]]:
    """Strings: two characters per register, big-endian bytes, NUL padded (SunSpec style)."""
    count = point.count
    words_struct = struct.Struct(f">{count}H")
    words_pack, words_unpack = words_struct.pack, words_struct.unpack

    def unpack(words: Sequence[int]) -> str:
        data = words_pack(*words)
        end = data.find(b"\x00")
        return (data if end < 0 else data[:end]).decode("utf-8", errors="replace")

    def pack(text: str) -> list[int]:
        data = text.encode("utf-8")
        if b"\x00" in data:
            raise CodecError(f"{_where(point)}: text {text!r} contains a NUL character")
        if len(data) > 2 * count:
            raise CodecError(
                f"{_where(point)}: text {text!r} is {len(data)} bytes; "
                f"{count} register(s) hold at most {2 * count}"
            )
        return list(words_unpack(data.ljust(2 * count, b"\x00")))

    return unpack, pack


def _typed_sentinel(point: Point, unpack: Callable[[Sequence[int]], int | float | str]) -> int | float | None:
    """The sentinel as the value `unpack` yields: 0x8000 on an i16 becomes -32768, floats by bit pattern."""
    if point.sentinel is None or point.type is DataType.STR:
        return None
    if point.table.is_bit_table or point.type not in (*INTEGER_RANGE, *_FLOAT_TYPES):
        return point.sentinel
    width = 16 * point.count
    bit_pattern = point.sentinel & ((1 << width) - 1)  # accept the signed value or its bit pattern
    words = [(bit_pattern >> (16 * (point.count - 1 - i))) & 0xFFFF for i in range(point.count)]
    if point.word_order is WordOrder.LITTLE:
        words.reverse()
    typed = unpack(words)
    assert not isinstance(typed, str)
    return typed


def _compile(point: Point) -> _Compiled:
    if point.count < 1:
        raise CodecError(f"{_where(point)}: count must be at least 1, not {point.count}")
    unpack: Callable[[Sequence[int]], int | float | str]
    pack: Callable[[int | float], list[int]]
    if point.type is DataType.STR:
        text_unpack, text_pack = _text_packers(point)

        def pack_number(raw: int | float) -> list[int]:
            raise CodecError(f"{_where(point)}: a str point takes text, not {raw!r}")

        return _Compiled(_TEXT, text_unpack, pack_number, None, 1.0, 1.0, 0.0, None, False, (), {}, text_pack)
    if point.table.is_bit_table:
        unpack, pack = _bit_packers(point)
    else:
        unpack, pack = _register_packers(point)
    multiplier, divisor = _split_scale(point.scale)
    bit_labels = tuple(sorted(point.labels.items())) if point.type is DataType.BITS else ()
    label_values = (
        MappingProxyType({label: value for value, label in point.labels.items()})
        if point.type is DataType.ENUM
        else MappingProxyType({})
    )
    return _Compiled(
        kind=_LABELLED if point.type in _LABELLED_TYPES else _NUMBER,
        unpack=unpack,
        pack=pack,
        sentinel=_typed_sentinel(point, unpack),
        multiplier=multiplier,
        divisor=divisor,
        offset=point.offset,
        raw_limits=raw_range(point),
        is_float=point.type in _FLOAT_TYPES and not point.table.is_bit_table,
        bit_labels=bit_labels,
        label_values=label_values,
    )


# Compiled forms live beside their Point, keyed by id(); the weak reference drops the entry when the
# Point goes away, before its id can be reused. (Point is frozen and holds a dict, so it is not hashable.)
_CACHE: dict[int, tuple[weakref.ref[Point], _Compiled]] = {}


def _compiled(point: Point) -> _Compiled:
    key = id(point)
    entry = _CACHE.get(key)
    if entry is not None and entry[0]() is point:
        return entry[1]
    compiled = _compile(point)

    # The cache is bound as a default: at interpreter exit module globals may already be gone.
    def forget(
        _ref: weakref.ref[Point],
        key: int = key,
        cache: dict[int, tuple[weakref.ref[Point], _Compiled]] = _CACHE,
    ) -> None:
        cache.pop(key, None)

    _CACHE[key] = (weakref.ref(point, forget), compiled)
    return compiled


def _power_of_ten(point: Point, scale_factor: int) -> tuple[float, float]:
    """(multiplier, divisor) for 10**scale_factor, kept exact for negative factors."""
    if not -_SCALE_FACTOR_LIMIT <= scale_factor <= _SCALE_FACTOR_LIMIT:
        raise CodecError(
            f"{_where(point)}: scale factor {scale_factor} from {point.scale_register!r} is outside "
            f"-{_SCALE_FACTOR_LIMIT}..{_SCALE_FACTOR_LIMIT}; check the scale register's address"
        )
    return (10.0**scale_factor, 1.0) if scale_factor >= 0 else (1.0, 10.0**-scale_factor)


def decode(point: Point, words: Sequence[int], scale_factor: int | None = None) -> Value | None:
    """Engineering value of `point` from its raw words (or bits); None when the raw value is the sentinel.

    Numeric types give `raw * scale * 10**scale_factor + offset` as a float (NaN reads as None),
    enum and bits give the raw integer, str gives the text up to the first NUL.
    """
    return _decode(point, _compiled(point), words, scale_factor)


def _decode(
    point: Point, compiled: _Compiled, words: Sequence[int], scale_factor: int | None
) -> Value | None:
    try:
        raw = compiled.unpack(words)
    except (struct.error, TypeError) as exc:
        raise CodecError(
            f"{_where(point)}: cannot decode {list(words)!r} as {point.type} "
            f"({point.count} word(s) of 0..65535 expected): {exc}"
        ) from None
    if raw == compiled.sentinel:
        return None
    if compiled.kind != _NUMBER:
        return raw
    assert not isinstance(raw, str)
    if compiled.is_float and math.isnan(raw):  # a float register with nothing to report
        return None
    if point.scale_register is None:
        return raw * compiled.multiplier / compiled.divisor + compiled.offset
    if scale_factor is None:
        raise CodecError(f"{_where(point)}: needs the value of its scale register {point.scale_register!r}")
    up, down = _power_of_ten(point, scale_factor)
    return raw * compiled.multiplier * up / (compiled.divisor * down) + compiled.offset


def _raw_from_label(point: Point, compiled: _Compiled, value: str) -> int:
    raw = compiled.label_values.get(value)
    if raw is None:
        known = ", ".join(compiled.label_values) or "none"
        raise CodecError(f"{_where(point)}: {value!r} is not one of its labels ({known})")
    return raw


def encode(point: Point, value: Value, scale_factor: int | None = None) -> list[int]:
    """Raw words (or bits) for an engineering value: the inverse of `decode`, rounding to the nearest raw.

    Enum points also take a label. Raises `CodecError` naming the point when the value does not fit.
    """
    compiled = _compiled(point)
    if compiled.kind == _TEXT:
        if not isinstance(value, str):
            raise CodecError(f"{_where(point)}: a str point takes text, not {value!r}")
        assert compiled.pack_text is not None
        return compiled.pack_text(value)
    if isinstance(value, str):
        if point.type is not DataType.ENUM:
            raise CodecError(f"{_where(point)}: a {point.type} point takes a number, not {value!r}")
        return compiled.pack(_raw_from_label(point, compiled, value))
    if not math.isfinite(value):
        raise CodecError(f"{_where(point)}: {value!r} is not a finite number")
    raw: int | float
    if compiled.kind == _LABELLED:
        raw = int(value)
        if raw != value:
            raise CodecError(f"{_where(point)}: {point.type} values are whole numbers, not {value!r}")
    else:
        multiplier, divisor = compiled.multiplier, compiled.divisor
        if point.scale_register is not None:
            if scale_factor is None:
                raise CodecError(
                    f"{_where(point)}: needs the value of its scale register {point.scale_register!r}"
                )
            up, down = _power_of_ten(point, scale_factor)
            multiplier, divisor = multiplier * up, divisor * down
        exact = (value - compiled.offset) * divisor / multiplier
        raw = exact if compiled.is_float else round(exact)
    limits = compiled.raw_limits
    if limits is not None and not limits[0] <= raw <= limits[1]:
        raise CodecError(
            f"{_where(point)}: {value!r} needs raw value {raw}, outside the {point.type} range "
            f"{limits[0]}..{limits[1]} (scale {point.scale}, offset {point.offset})"
        )
    try:
        return compiled.pack(raw)
    except (struct.error, OverflowError) as exc:
        raise CodecError(f"{_where(point)}: {value!r} does not fit a {point.type}: {exc}") from None


def check_write(point: Point, value: float) -> None:
    """Raise `CodecError` unless `value` may be written to `point` (writable, within its write bounds)."""
    if not point.access.writable or not point.table.is_writable:
        raise CodecError(
            f"{_where(point)} is read-only (table {point.table}, access {point.access}); "
            "to write it, map it to a holding register or coil with access: rw"
        )
    low, high = point.minimum, point.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{'-inf' if low is None else low}..{'+inf' if high is None else high}"
        raise CodecError(f"{_where(point)}: {value!r} is outside its write bounds {bounds} {point.unit}")


def decode_scale_factor(point: Point, words: Sequence[int]) -> int | None:
    """The power of ten a scale-factor register (SunSpec `*_sf`) holds; None when it reads as its sentinel."""
    value = decode(point, words)
    return None if value is None or isinstance(value, str) else int(value)


def decode_points(
    points: Mapping[str, Point],
    raw: Mapping[str, Sequence[int]],
    before: tuple[Mapping[str, Sequence[int]], Mapping[str, Value | None]] | None = None,
) -> dict[str, Value | None]:
    """Decode every point in `raw`, resolving scale registers from the raw words of the `_sf` points.

    A point whose scale factor was not read (or reads as its sentinel) decodes to None. With `before`
    (the raw words and values of an earlier call), a point whose words and scale words are unchanged
    keeps its earlier value without being decoded again: most registers of a pack do not move each poll.
    For many calls with one map, `PointsDecoder` compiles it once.
    """
    return PointsDecoder(points)(raw, before)


class PointsDecoder:
    """`decode_points` for one map of points (a session's map in use), with each point's compiled form
    looked up once rather than on every call."""

    def __init__(self, points: Mapping[str, Point]) -> None:
        self.points = points
        self._compiled: dict[str, tuple[Point, _Compiled]] = {}

    def _entry(self, name: str) -> tuple[Point, _Compiled]:
        entry = self._compiled.get(name)
        if entry is None:
            point = self.points.get(name)
            if point is None:
                raise CodecError(f"raw words for {name!r}, which is not a point of this profile variant")
            entry = self._compiled[name] = (point, _compiled(point))
        return entry

    def __call__(
        self,
        raw: Mapping[str, Sequence[int]],
        before: tuple[Mapping[str, Sequence[int]], Mapping[str, Value | None]] | None = None,
    ) -> dict[str, Value | None]:
        """The values of the points in `raw`, as `decode_points` gives them."""
        before_raw, before_values = before if before is not None else ({}, {})
        result: dict[str, Value | None] = {}
        known = self._compiled
        for name, words in raw.items():
            point, compiled = known.get(name) or self._entry(name)
            register = point.scale_register
            if (
                name in before_values
                and ((earlier := before_raw.get(name)) is words or earlier == words)
                and (register is None or before_raw.get(register) == raw.get(register))
            ):
                result[name] = before_values[name]
                continue
            if register is None:
                result[name] = _decode(point, compiled, words, None)
                continue
            sf_point, sf_words = self.points.get(register), raw.get(register)
            scale_factor = (
                None if sf_point is None or sf_words is None else decode_scale_factor(sf_point, sf_words)
            )
            result[name] = None if scale_factor is None else _decode(point, compiled, words, scale_factor)
        return result


def label_of(point: Point, raw: int) -> str | None:
    """The label of an enum value (None when the profile gives it none)."""
    return point.labels.get(raw)


def active_labels(point: Point, raw: int) -> tuple[str, ...]:
    """Labels of the set bits of a bits point, by bit number; an unlabelled set bit reads as `bit<n>`."""
    labelled_mask = 0
    active: list[str] = []
    for bit, label in _compiled(point).bit_labels:
        labelled_mask |= 1 << bit
        if raw >> bit & 1:
            active.append(label)
    rest = raw & ~labelled_mask
    while rest:
        bit = (rest & -rest).bit_length() - 1
        active.append(f"bit{bit}")
        rest &= rest - 1
    return tuple(active)


_VERSION_IN_TEXT = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def decode_firmware(value: Value | None, firmware_format: str) -> Version:
    """The firmware `Version` from the decoded identify `firmware` point.

    "string": the first MAJOR[.MINOR[.PATCH]] in the text ("V2.1.3-rc" -> 2.1.3);
    "major_minor_x100": 201 -> 2.1; "major_minor_bytes": 0x0201 -> 2.1 (high byte major).
    """
    if value is None:
        raise CodecError("the firmware register reads as not implemented; cannot choose a profile variant")
    if firmware_format == "string":
        match = _VERSION_IN_TEXT.search(str(value))
        if match is None:
            raise CodecError(f"firmware {value!r} contains no version number (expected e.g. 2.1.3)")
        return Version(*(int(part) for part in match.groups() if part is not None))
    if isinstance(value, str):
        raise CodecError(f"firmware {value!r} is text; firmware_format {firmware_format!r} needs a number")
    number = int(value)
    if firmware_format == "major_minor_x100":
        return Version(number // 100, number % 100)
    if firmware_format == "major_minor_bytes":
        return Version(number >> 8 & 0xFF, number & 0xFF)
    raise CodecError(f"unknown firmware_format {firmware_format!r}; use one of {', '.join(FIRMWARE_FORMATS)}")
