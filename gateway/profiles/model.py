"""Typed, validated vendor profiles: what a profile file means once it has been loaded.

Everything here is immutable and free of I/O; `loader.py` builds these objects from YAML and
`codec.py` turns register words into engineering values and back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.diagnostics import NO_MARK, Mark


class Table(enum.StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bit_table(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def is_writable(self) -> bool:
        return self in (Table.HOLDING, Table.COIL)


class DataType(enum.StrEnum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    STR = "str"
    BITS = "bits"
    ENUM = "enum"


class WordOrder(enum.StrEnum):
    """Order of 16-bit words in a multi-register value. Bytes inside a register are always big-endian."""

    BIG = "big"  # most significant word first (Modbus convention, SunSpec)
    LITTLE = "little"  # least significant word first ("word swapped")


class Access(enum.StrEnum):
    READ = "r"
    READ_WRITE = "rw"
    WRITE = "w"

    @property
    def readable(self) -> bool:
        return self is not Access.WRITE

    @property
    def writable(self) -> bool:
        return self is not Access.READ


@dataclass(frozen=True, order=True)
class Version:
    """A semantic-ish firmware or profile version: up to three integers ("2", "2.1", "2.1.7")."""

    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse "1", "1.2" or "1.2.3"; raise ValueError with the offending text otherwise."""
        parts = str(text).strip().lstrip("vV").split(".")
        if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{text!r} is not a version (expected MAJOR[.MINOR[.PATCH]], e.g. 2.1.0)")
        numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
        return cls(numbers[0], numbers[1], numbers[2])

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclass(frozen=True)
class VersionRange:
    """Half-open firmware range [minimum, below). `below=None` means no upper bound."""

    minimum: Version
    below: Version | None = None

    def contains(self, version: Version) -> bool:
        return version >= self.minimum and (self.below is None or version < self.below)

    def overlaps(self, other: VersionRange) -> bool:
        self_below_other = self.below is not None and self.below <= other.minimum
        other_below_self = other.below is not None and other.below <= self.minimum
        return not (self_below_other or other_below_self)

    def __str__(self) -> str:
        return f">={self.minimum}" + (f",<{self.below}" if self.below is not None else "")


@dataclass(frozen=True)
class Point:
    """One register entry of a profile: a semantic point and how it sits on the wire.

    `address` is always the 0-based protocol address, whatever notation the file used.
    `count` is the number of registers (or bits, for coil/discrete tables) the value occupies.
    """

    name: str
    table: Table
    address: int
    type: DataType
    count: int
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    offset: float = 0.0
    scale_register: str | None = None  # name of another point holding a SunSpec-style power-of-ten factor
    sentinel: int | None = None  # raw value meaning "not implemented" (e.g. 0x8000 for a SunSpec i16)
    unit: str = ""
    access: Access = Access.READ
    minimum: float | None = None  # write bounds, engineering units
    maximum: float | None = None
    labels: Mapping[int, str] = field(default_factory=dict)  # enum values or bit numbers -> label
    deadband: float = 0.0  # engineering units; a setpoint write is skipped when the change is smaller
    description: str = ""
    mark: Mark = NO_MARK

    @property
    def end(self) -> int:
        """First address after this point."""
        return self.address + self.count


@dataclass(frozen=True)
class Variant:
    """One register map, valid for a firmware range."""

    firmware: VersionRange
    points: Mapping[str, Point]
    name: str = ""
    mark: Mark = NO_MARK


@dataclass(frozen=True)
class Identify:
    """Registers that identify the device (read before the variant is known).

    `points` always includes a `firmware` point whose decoded value (a string such as "2.1.3", or an
    integer such as 201 read together with `firmware_format`) selects the variant.
    `markers` maps point names to the value they must have for the device to be this model
    (e.g. the SunSpec "SunS" marker, or a model id).
    """

    points: Mapping[str, Point]
    markers: Mapping[str, str | int] = field(default_factory=dict)
    # "string" ("2.1.3"), "major_minor_x100" (201 -> 2.1) or "major_minor_bytes" (0x0201 -> 2.1)
    firmware_format: str = "string"


@dataclass(frozen=True)
class Comms:
    max_registers_per_read: int = 125  # per holding/input read (Modbus allows at most 125)
    max_gap_registers: int = 0  # holes a block read may span (0: never read holes)
    min_request_gap_ms: float = 0.0
    timeout_ms: float = 80.0
    max_bits_per_read: int = 2000  # per coil/discrete read (Modbus allows at most 2000)


@dataclass(frozen=True)
class Profile:
    vendor: str
    model: str
    profile_version: Version
    address_notation: str  # "zero-based" or "modicon" (4xxxx/3xxxx/0xxxx/1xxxx, one-based)
    identify: Identify
    variants: tuple[Variant, ...]
    comms: Comms
    description: str = ""
    path: str = ""

    @property
    def key(self) -> str:
        """The name configs use to refer to the profile: "vendor/model"."""
        return f"{self.vendor}/{self.model}"

    def variant_for(self, firmware: Version) -> Variant | None:
        for variant in self.variants:
            if variant.firmware.contains(firmware):
                return variant
        return None
