"""One simulated pack as a Modbus device: physics plus a register bank kept THROUGH the profile codec.

Every readable value is produced by `codec.encode` of the point the profile variant (selected by the
pack's firmware) defines, and every write is decoded with `codec.decode` and checked with
`codec.check_write` before it acts on the physics. The device has no clock: callers pass the simulated
time, and the physics advances lazily to it, so a pack nobody polls costs nothing.
Used from one event loop only (not thread-safe).
"""

from __future__ import annotations

import logging
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.profiles import codec
from gateway.profiles.model import DataType, Point, Profile, Table, Variant, Version, WordOrder
from gateway.sim import physics, values
from gateway.sim.faults import ExceptionCode
from gateway.sim.physics import Operating, PackParams, PackState

log = logging.getLogger(__name__)

# Like a real BMS, a pack refreshes its register image periodically (here 4 times per simulated
# second), not on every request; writes take effect at once. See PackDevice.advance_to.
REFRESH_PERIOD_S = 0.25
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"


def pack_bits(bits: Sequence[int]) -> bytes:
    """Coil/discrete values packed LSB-first, as Modbus sends them."""
    packed = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            packed[i >> 3] |= 1 << (i & 7)
    return bytes(packed)


_TYPE_MAX: Mapping[DataType, int] = {
    DataType.U16: 0xFFFF,
    DataType.I16: 0x7FFF,
    DataType.U32: 0xFFFF_FFFF,
    DataType.I32: 0x7FFF_FFFF,
    DataType.U64: 0xFFFF_FFFF_FFFF_FFFF,
    DataType.I64: 0x7FFF_FFFF_FFFF_FFFF,
}


class DeviceError(ValueError):
    """A pack that cannot be built from its profile (e.g. no variant for its firmware)."""


@dataclass(frozen=True)
class Identity:
    pack_id: str
    serial: str
    model_name: str
    firmware: Version


def firmware_value(point: Point, firmware: Version, firmware_format: str) -> codec.Value:
    """The firmware point's engineering value in the profile's `firmware_format`."""
    if point.type is DataType.STR or firmware_format == "string":
        return str(firmware)
    if firmware_format == "major_minor_x100":
        return firmware.major * 100 + firmware.minor
    if firmware_format == "major_minor_bytes":
        return (firmware.major << 8) | firmware.minor
    raise DeviceError(f"{point.mark}: unknown firmware_format {firmware_format!r} for point {point.name}")


def _magnitude(name: str, params: PackParams) -> float:
    """The largest engineering value a point of this name takes on this pack (for choosing scale factors)."""
    max_power = max(params.max_charge_w, params.max_discharge_w, 1.0)
    max_volts = params.series_cells * 4.5
    if name.endswith("_pct"):
        return 100.0
    if name.endswith("_wh"):
        return params.capacity_wh * 1.5
    if name.endswith("_w"):
        return max_power * 1.5
    if name.startswith("cell_voltage"):
        return 5.0
    if name.endswith("_v"):
        return max_volts
    if name.endswith("_a"):
        return 2.0 * max_power / (params.series_cells * 2.5)
    if name.endswith("_c"):
        return 150.0
    return 1000.0


def choose_scale_exponent(users: Iterable[Point], params: PackParams) -> int:
    """Smallest power of ten (from -3) that lets every point using a scale-factor register hold its value."""
    exponent = -3
    for point in users:
        limit = _TYPE_MAX.get(point.type)
        if limit is None:
            continue
        raw_needed = _magnitude(point.name, params) / max(abs(point.scale), 1e-12)
        while raw_needed / 10.0**exponent > limit and exponent < 9:
            exponent += 1
    return exponent


def sentinel_words(point: Point) -> list[int] | None:
    """The raw "not implemented" value as register words in the point's word order."""
    if point.sentinel is None or point.table.is_bit_table:
        return None
    raw = point.sentinel & ((1 << (16 * point.count)) - 1)
    words = [(raw >> (16 * (point.count - 1 - i))) & 0xFFFF for i in range(point.count)]
    return words if point.word_order is WordOrder.BIG else words[::-1]


class _Bank:
    """The words (or bits) of one table, covering [base, end) of the addresses the profile uses.

    Holes of up to `gap_tolerance` addresses between points read as 0; wider holes and addresses
    outside every point answer "illegal data address".
    """

    def __init__(self, table: Table, points: Sequence[Point], gap_tolerance: int) -> None:
        self.table = table
        self.is_bits = table.is_bit_table
        self.base = min(p.address for p in points)
        self.end = max(p.end for p in points)
        size = self.end - self.base
        self.words = array("H", bytes(2 * size)) if not table.is_bit_table else array("H")
        self.bits = bytearray(size) if table.is_bit_table else bytearray()
        self.owner: list[Point | None] = [None] * size
        self.readable = bytearray(size)
        ordered = sorted(points, key=lambda p: p.address)
        previous_end: int | None = None
        for point in ordered:
            for address in range(point.address, point.end):
                self.owner[address - self.base] = point
            start = point.address
            if previous_end is not None and 0 < point.address - previous_end <= gap_tolerance:
                start = previous_end
            for address in range(start, point.end):
                self.readable[address - self.base] = 1
            previous_end = max(point.end, previous_end or 0)

    def covers(self, start: int, count: int) -> bool:
        lo, hi = start - self.base, start + count - self.base
        return lo >= 0 and hi <= len(self.readable) and self.readable.find(0, lo, hi) == -1

    def store(self, point: Point, words: Sequence[int]) -> None:
        at = point.address - self.base
        target: bytearray | array[int] = self.bits if self.is_bits else self.words
        for offset, word in enumerate(words):
            target[at + offset] = (1 if word else 0) if self.is_bits else word


class PackDevice:
    """A pack's physics and register bank. All methods take the current simulated time in seconds."""

    def __init__(
        self,
        identity: Identity,
        profile: Profile,
        params: PackParams,
        state: PackState,
        *,
        sim_time_s: float = 0.0,
    ) -> None:
        variant = profile.variant_for(identity.firmware)
        if variant is None:
            ranges = ", ".join(str(v.firmware) for v in profile.variants)
            raise DeviceError(
                f"pack {identity.pack_id}: profile {profile.key} has no variant for firmware "
                f"{identity.firmware} (variants cover {ranges}); pick a firmware in one of those ranges"
            )
        self.identity = identity
        self.profile = profile
        self.variant: Variant = variant
        self.params = params
        self._time_s = sim_time_s
        self._state = state
        self._operating = physics.operating_point(params, state)
        self._version = 0  # bumped whenever the state changes
        self._encoded_version: dict[Table, int] = {}  # state version each table's dynamic points show
        # The raw value of the state label, and the bits of each set of alarms, found once: matching the
        # profile's labels is most of a refresh's cost otherwise.
        self._state_raw: dict[str, int | None] = {}
        self._alarm_bits: dict[tuple[str, ...], int] = {}

        points: dict[tuple[Table, int, str], Point] = {}
        for point in (*profile.identify.points.values(), *variant.points.values()):
            points.setdefault((point.table, point.address, point.name), point)
        self.points: tuple[Point, ...] = tuple(points.values())
        by_table: dict[Table, list[Point]] = {}
        for point in self.points:
            by_table.setdefault(point.table, []).append(point)
        # The device tolerates the holes the profile lets a poller span (comms.max_gap_registers).
        gap = profile.comms.max_gap_registers
        self._banks = {table: _Bank(table, pts, gap) for table, pts in by_table.items()}
        by_name = {p.name: p for p in self.points}
        self._scale_exponents: dict[str, int] = {}
        for point in self.points:
            if point.scale_register is not None and point.scale_register not in self._scale_exponents:
                users = [p for p in self.points if p.scale_register == point.scale_register]
                self._scale_exponents[point.scale_register] = choose_scale_exponent(users, params)
                if point.scale_register not in by_name:
                    raise DeviceError(
                        f"{point.mark}: point {point.name} names scale register {point.scale_register!r}, "
                        f"which profile {profile.key} does not define"
                    )
        self._dynamic: dict[Table, list[Point]] = {
            table: [p for p in pts if p.name in values.DYNAMIC_POINTS] for table, pts in by_table.items()
        }
        for point in self.points:
            if point.name not in values.DYNAMIC_POINTS:
                self._encode_static(point)
        for table in self._dynamic:
            self._refresh(table)

    # ---- state ---------------------------------------------------------------------------------------

    @property
    def state(self) -> PackState:
        return self._state

    @property
    def operating(self) -> Operating:
        return self._operating

    @property
    def time_s(self) -> float:
        return self._time_s

    def _set_state(self, state: PackState) -> None:
        self._state = state
        self._operating = physics.operating_point(self.params, state)
        self._version += 1

    def advance_to(self, sim_time_s: float, *, exact: bool = False) -> None:
        """Integrate the physics up to `sim_time_s`, if at least REFRESH_PERIOD_S has passed (or `exact`)."""
        dt_s = sim_time_s - self._time_s
        if dt_s <= 0.0 or (dt_s < REFRESH_PERIOD_S and not exact):
            return
        self._set_state(self._advanced(sim_time_s))

    def _advanced(self, sim_time_s: float) -> PackState:
        """The state integrated exactly up to `sim_time_s`, now its time (not set: the caller changes it)."""
        dt_s = sim_time_s - self._time_s
        if dt_s <= 0.0:
            return self._state
        self._time_s = sim_time_s
        return physics.advance(self.params, self._state, dt_s)

    def replace_state(self, state: PackState, sim_time_s: float) -> None:
        """Set the physics state (tests and scenario changes); the registers follow on the next read."""
        self._advanced(sim_time_s)  # the clock moves on; the state given replaces the integrated one
        self._set_state(state)

    def scale_exponent(self, scale_register: str | None) -> int | None:
        return None if scale_register is None else self._scale_exponents[scale_register]

    # ---- encoding ------------------------------------------------------------------------------------

    def _static_value(self, point: Point) -> codec.Value | None:
        markers = self.profile.identify.markers
        if point.name in markers:
            return markers[point.name]
        if point.name in self._scale_exponents:
            return self._scale_exponents[point.name]
        if point.name == "firmware":
            return firmware_value(point, self.identity.firmware, self.profile.identify.firmware_format)
        return values.static_values(self.params, self.identity.serial, self.identity.model_name).get(
            point.name
        )

    def _encode_static(self, point: Point) -> None:
        value = self._static_value(point)
        bank = self._banks[point.table]
        if value is None:
            words = sentinel_words(point)
            if words is not None:
                bank.store(point, words)
            return
        try:
            bank.store(point, codec.encode(point, value, self.scale_exponent(point.scale_register)))
        except codec.CodecError as error:
            raise DeviceError(f"pack {self.identity.pack_id}: cannot encode {point.name}: {error}") from error

    def _refresh(self, table: Table) -> None:
        """Encode the dynamic points of `table` from the current state, unless they already show it."""
        if self._encoded_version.get(table) == self._version:
            return
        self._encoded_version[table] = self._version
        engineering = values.dynamic_values(self.params, self._state, self._operating)
        for point in self._dynamic[table]:
            value: codec.Value | None = engineering.get(point.name)
            if point.name == "state":
                label = str(value)
                if label not in self._state_raw:
                    self._state_raw[label] = values.raw_for_label(point, label)
                value = self._state_raw[label]
            elif point.name == "alarms":
                alarms = self._operating.alarms
                if alarms not in self._alarm_bits:
                    self._alarm_bits[alarms] = values.alarm_bits(point, alarms)
                value = self._alarm_bits[alarms]
            if value is None:
                continue
            try:
                words = codec.encode(point, value, self.scale_exponent(point.scale_register))
            except codec.CodecError as error:
                # A value beyond what the register can carry (e.g. a negative temperature in a u16):
                # keep the previous words, as a device with a saturated register would.
                log.debug("pack %s: %s", self.identity.pack_id, error)
                continue
            self._banks[point.table].store(point, words)

    # ---- Modbus operations ---------------------------------------------------------------------------

    def read(self, table: Table, start: int, count: int, sim_time_s: float) -> bytes | ExceptionCode:
        """The data of a read response for [start, start + count) (registers big-endian, bits packed
        LSB first), or the exception a device would answer."""
        bank = self._banks.get(table)
        if bank is None or not bank.covers(start, count):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        self.advance_to(sim_time_s)
        self._refresh(table)
        lo, hi = start - bank.base, start + count - bank.base
        if bank.is_bits:
            return pack_bits(bank.bits[lo:hi])
        chunk = bank.words[lo:hi]
        if _LITTLE_ENDIAN_HOST:
            chunk.byteswap()
        return chunk.tobytes()

    def write(
        self, table: Table, start: int, words: Sequence[int], sim_time_s: float
    ) -> ExceptionCode | None:
        """Apply a write of `words` (or bits) at `start`; return the exception to answer, or None."""
        bank = self._banks.get(table)
        end = start + len(words)
        if bank is None or start < bank.base or end > bank.end:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        touched: list[Point] = []
        for address in range(start, end):
            owner = bank.owner[address - bank.base]
            if owner is None:
                return ExceptionCode.ILLEGAL_DATA_ADDRESS
            if not touched or touched[-1] is not owner:
                touched.append(owner)
        if any(not p.access.writable for p in touched):
            return ExceptionCode.ILLEGAL_FUNCTION
        if any(p.address < start or p.end > end for p in touched):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS  # a write must cover whole points
        decoded: list[tuple[Point, codec.Value, list[int]]] = []
        for point in touched:
            point_words = list(words[point.address - start : point.end - start])
            try:
                value = codec.decode(point, point_words, self.scale_exponent(point.scale_register))
                if value is None:
                    return ExceptionCode.ILLEGAL_DATA_VALUE
                if not isinstance(value, str):
                    codec.check_write(point, float(value))
            except codec.CodecError:
                return ExceptionCode.ILLEGAL_DATA_VALUE
            decoded.append((point, value, point_words))
        state = self._advanced(sim_time_s)
        for point, value, point_words in decoded:
            state = values.apply_write(state, point.name, value)
            bank.store(point, point_words)
        self._set_state(state)
        return None
