"""Fault knobs of one simulated pack: what its Modbus server does wrong, on purpose.

A `Faults` value is immutable. The server reads the pack's current value once per request, so
replacing it (one attribute assignment, see `SimulatedFleet.set_faults`) is safe from any thread and
takes effect from the next request on.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.profiles.model import Table


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes the simulator produces."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_NO_RESPONSE = 0x0B


INJECTABLE_CODES = frozenset(
    {
        ExceptionCode.ILLEGAL_FUNCTION,
        ExceptionCode.ILLEGAL_DATA_ADDRESS,
        ExceptionCode.SERVER_DEVICE_FAILURE,
        ExceptionCode.GATEWAY_PATH_UNAVAILABLE,
        ExceptionCode.GATEWAY_TARGET_NO_RESPONSE,
    }
)


class FaultError(ValueError):
    """A fault setting that makes no sense; the message names the knob and the accepted values."""


@dataclass(frozen=True)
class ExceptionRule:
    """Answer requests touching [address, address + count) of `table` with exception `code`.

    `table=None` matches every table; `address=None` matches every request.
    """

    code: ExceptionCode
    table: Table | None = None
    address: int | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if self.code not in INJECTABLE_CODES:
            raise FaultError(
                f"exception code {int(self.code):#04x} cannot be injected "
                f"(use one of {', '.join(f'{int(c):#04x}' for c in sorted(INJECTABLE_CODES))})"
            )
        if self.address is not None and not 0 <= self.address <= 0xFFFF:
            raise FaultError(f"exception rule address {self.address} is outside 0..65535")
        if self.count < 1:
            raise FaultError(f"exception rule count {self.count} must be at least 1")

    def matches(self, table: Table, start: int, count: int) -> bool:
        if self.table is not None and self.table is not table:
            return False
        if self.address is None:
            return True
        return start < self.address + self.count and self.address < start + count


@dataclass(frozen=True)
class Faults:
    """Every knob off by default. Probabilities are per request, drawn from the pack's seeded RNG."""

    delay_ms: float = 0.0  # answer every request this late
    drop_after_requests: int | None = None  # close a connection when its request N+1 arrives
    drop_probability: float = 0.0  # close the connection instead of answering
    wrong_unit_id: int | None = None  # put this unit id in every response
    exceptions: tuple[ExceptionRule, ...] = ()  # answer matching requests with an exception
    garbage_probability: float = 0.0  # send random bytes instead of the response
    crc_error_probability: float = 0.0  # RTU: send the response with a wrong CRC
    silent: bool = False  # read requests, never answer
    max_connections: int | None = None  # further connections are accepted and reset at once
    refuse_connections: bool = False  # stop listening: connects get "connection refused"

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise FaultError(f"delay_ms {self.delay_ms} must be >= 0")
        if self.drop_after_requests is not None and self.drop_after_requests < 0:
            raise FaultError(f"drop_after_requests {self.drop_after_requests} must be >= 0")
        for name in ("drop_probability", "garbage_probability", "crc_error_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultError(f"{name} {value} must be between 0 and 1")
        if self.wrong_unit_id is not None and not 0 <= self.wrong_unit_id <= 255:
            raise FaultError(f"wrong_unit_id {self.wrong_unit_id} must be between 0 and 255")
        if self.max_connections is not None and self.max_connections < 0:
            raise FaultError(f"max_connections {self.max_connections} must be >= 0")

    def with_changes(self, **changes: object) -> Faults:
        """A copy with some knobs changed; unknown knob names raise FaultError listing the known ones."""
        unknown = sorted(set(changes) - FAULT_KNOBS)
        if unknown:
            raise FaultError(
                f"unknown fault knob(s) {', '.join(unknown)} (known: {', '.join(sorted(FAULT_KNOBS))})"
            )
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def exception_for(self, table: Table, start: int, count: int) -> ExceptionCode | None:
        for rule in self.exceptions:
            if rule.matches(table, start, count):
                return rule.code
        return None


FAULT_KNOBS = frozenset(f.name for f in dataclasses.fields(Faults))
NO_FAULTS = Faults()


def _number(knob: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{knob} must be a number, got {value!r}")
    return float(value)


def _integer(knob: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultError(f"{knob} must be an integer, got {value!r}")
    return value


def _optional_integer(knob: str, value: object) -> int | None:
    return None if value is None else _integer(knob, value)


def _flag(knob: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{knob} must be true or false, got {value!r}")
    return value


def exception_rule_from_mapping(data: Mapping[str, object]) -> ExceptionRule:
    """A rule from `{code: 2, table: holding, address: 100, count: 2}` (table, address, count optional)."""
    unknown = sorted(set(data) - {"code", "table", "address", "count"})
    if unknown:
        raise FaultError(
            f"unknown exception rule key(s) {', '.join(unknown)} (known: address, code, count, table)"
        )
    if "code" not in data:
        raise FaultError("exception rule needs a code (1, 2, 4, 10 or 11)")
    code_number = _integer("exceptions.code", data["code"])
    try:
        code = ExceptionCode(code_number)
    except ValueError:
        raise FaultError(f"exception code {code_number} is not a Modbus exception code") from None
    table_name = data.get("table")
    table: Table | None = None
    if table_name is not None:
        try:
            table = Table(str(table_name))
        except ValueError:
            raise FaultError(
                f"exception rule table {table_name!r} is not one of {', '.join(t.value for t in Table)}"
            ) from None
    address = _optional_integer("exceptions.address", data.get("address"))
    return ExceptionRule(code, table, address, _integer("exceptions.count", data.get("count", 1)))


def faults_from_mapping(data: Mapping[str, object]) -> Faults:
    """Build `Faults` from a scenario's `faults:` mapping (same names as the dataclass fields)."""
    unknown = sorted(set(data) - FAULT_KNOBS)
    if unknown:
        raise FaultError(
            f"unknown fault knob(s) {', '.join(unknown)} (known: {', '.join(sorted(FAULT_KNOBS))})"
        )
    rules_data = data.get("exceptions", [])
    if not isinstance(rules_data, list) or not all(isinstance(r, Mapping) for r in rules_data):
        raise FaultError("exceptions must be a list of mappings like {code: 2, table: holding, address: 100}")
    return Faults(
        delay_ms=_number("delay_ms", data.get("delay_ms", 0.0)),
        drop_after_requests=_optional_integer("drop_after_requests", data.get("drop_after_requests")),
        drop_probability=_number("drop_probability", data.get("drop_probability", 0.0)),
        wrong_unit_id=_optional_integer("wrong_unit_id", data.get("wrong_unit_id")),
        exceptions=tuple(exception_rule_from_mapping(r) for r in rules_data),
        garbage_probability=_number("garbage_probability", data.get("garbage_probability", 0.0)),
        crc_error_probability=_number("crc_error_probability", data.get("crc_error_probability", 0.0)),
        silent=_flag("silent", data.get("silent", False)),
        max_connections=_optional_integer("max_connections", data.get("max_connections")),
        refuse_connections=_flag("refuse_connections", data.get("refuse_connections", False)),
    )
