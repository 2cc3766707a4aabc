"""Field errors: one stable code per failure class, and a message that names the node, the register, the
point and the remedy.

A `FieldError` carries facts (what failed, where on the wire); the text is rendered from those facts and
the node's `NodeContext` (node id, profile, firmware), which the session attaches once it knows them.
Codes are part of the interface (logs, status, northbound alarms): never rename one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.profiles.model import Table
from gateway.southbound.transport import TCP, Transport, TransportKind


class ErrorCode(enum.StrEnum):
    # Modbus exception responses (the device answered, but with an exception code)
    ILLEGAL_FUNCTION = "E_MB_ILLEGAL_FUNCTION"  # 01
    ILLEGAL_ADDRESS = "E_MB_ILLEGAL_ADDRESS"  # 02
    ILLEGAL_VALUE = "E_MB_ILLEGAL_VALUE"  # 03
    DEVICE_FAILURE = "E_MB_DEVICE_FAILURE"  # 04
    DEVICE_BUSY = "E_MB_DEVICE_BUSY"  # 05 acknowledge, 06 busy
    GATEWAY_PATH = "E_MB_GATEWAY_PATH"  # 0A
    GATEWAY_TARGET = "E_MB_GATEWAY_TARGET"  # 0B
    EXCEPTION = "E_MB_EXCEPTION"  # any other exception code
    # The answer itself is wrong, or missing
    UNIT_MISMATCH = "E_MB_UNIT_MISMATCH"
    WRONG_TID = "E_MB_WRONG_TID"  # an answer to no request of ours (transaction id 0 included)
    MALFORMED = "E_MB_MALFORMED"
    CRC = "E_MB_CRC"  # RTU: a whole frame whose CRC is wrong (noise on the line)
    FRAMING = "E_MB_FRAMING"  # RTU: bytes that never formed the answer's frame (length, function, garbage)
    TIMEOUT = "E_MB_TIMEOUT"
    # The TCP connection
    CONNECT_TIMEOUT = "E_MB_CONNECT_TIMEOUT"
    CONN_REFUSED = "E_MB_CONN_REFUSED"
    UNREACHABLE = "E_MB_UNREACHABLE"
    CONN_RESET = "E_MB_CONN_RESET"
    NOT_CONNECTED = "E_MB_NOT_CONNECTED"
    # Profile and firmware
    FW_UNKNOWN = "E_FW_UNKNOWN"
    PROFILE_MISMATCH = "E_PROFILE_MISMATCH"
    POINT_UNKNOWN = "E_POINT_UNKNOWN"
    DECODE = "E_DECODE"  # the registers were read but the profile cannot decode them
    # Writes
    WRITE_REJECTED = "E_WRITE_REJECTED"  # refused before sending (bounds, not writable, does not encode)
    WRITE_DISABLED = "E_WRITE_DISABLED"  # the device refused this point before (exception 01)
    WRITE_NOT_APPLIED = "E_WRITE_NOT_APPLIED"  # read-back differs from what was written
    # The polling process that owns the node (site.pollers > 1) did not answer in the cycle
    POLLER_DOWN = "E_POLLER_DOWN"
    # Anything unforeseen while handling one node (a bug): contained to that node
    INTERNAL = "E_SB_INTERNAL"

    @property
    def is_connection_fault(self) -> bool:
        """Failures after which the connection cannot be trusted and is re-opened (with backoff)."""
        return self in _CONNECTION_FAULTS


_CONNECTION_FAULTS = frozenset(
    {
        ErrorCode.UNIT_MISMATCH,
        ErrorCode.WRONG_TID,
        ErrorCode.MALFORMED,
        ErrorCode.CRC,
        ErrorCode.FRAMING,
        ErrorCode.TIMEOUT,
        ErrorCode.CONNECT_TIMEOUT,
        ErrorCode.CONN_REFUSED,
        ErrorCode.UNREACHABLE,
        ErrorCode.CONN_RESET,
        ErrorCode.NOT_CONNECTED,
    }
)

EXCEPTION_CODES: dict[int, ErrorCode] = {
    0x01: ErrorCode.ILLEGAL_FUNCTION,
    0x02: ErrorCode.ILLEGAL_ADDRESS,
    0x03: ErrorCode.ILLEGAL_VALUE,
    0x04: ErrorCode.DEVICE_FAILURE,
    0x05: ErrorCode.DEVICE_BUSY,
    0x06: ErrorCode.DEVICE_BUSY,
    0x0A: ErrorCode.GATEWAY_PATH,
    0x0B: ErrorCode.GATEWAY_TARGET,
}

EXCEPTION_NAMES: dict[int, str] = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge (still processing)",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}

FUNCTION_NAMES: dict[int, str] = {
    0x01: "read coils",
    0x02: "read discrete inputs",
    0x03: "read holding registers",
    0x04: "read input registers",
    0x05: "write single coil",
    0x06: "write single register",
    0x0F: "write multiple coils",
    0x10: "write multiple registers",
}

# Modicon (one-based, table-prefixed) numbering, for messages when the profile was written that way.
_MODICON_BASE = {Table.COIL: 1, Table.DISCRETE: 10001, Table.INPUT: 30001, Table.HOLDING: 40001}


@dataclass(frozen=True)
class Target:
    """Where a device sits: `host:port` (a serial port: `host` is its device path), unit id `unit`."""

    host: str
    port: int
    unit: int
    transport: Transport = TCP

    @property
    def endpoint(self) -> str:
        """The connection: a serial device, or host:port (with its framing when it is RTU over TCP)."""
        if self.transport.kind is TransportKind.SERIAL:
            return f"{self.host} ({self.transport.serial})"
        if self.transport.kind is TransportKind.RTU_OVER_TCP:
            return f"{self.host}:{self.port} (RTU over TCP)"
        return f"{self.host}:{self.port}"

    @property
    def line(self) -> str | None:
        """The RS-485 line the unit shares with others (a serial device, a converter's host:port); None on
        Modbus TCP, where every unit is its own."""
        if self.transport.kind is TransportKind.SERIAL:
            return self.host
        if self.transport.kind is TransportKind.RTU_OVER_TCP:
            return f"{self.host}:{self.port}"
        return None

    def __str__(self) -> str:
        return f"{self.endpoint} unit {self.unit}"


@dataclass(frozen=True)
class Region:
    """A run of registers (or bits) in one table, as the wire sees it (0-based addresses)."""

    table: Table
    address: int
    count: int

    def describe(self, notation: str = "zero-based") -> str:
        noun = {Table.HOLDING: "holding register", Table.INPUT: "input register"}.get(
            self.table, f"{self.table.value} bit"
        )
        last = self.address + self.count - 1
        span = f"{noun} {self.address}" if self.count == 1 else f"{noun}s {self.address}..{last}"
        if notation == "modicon":
            base = _MODICON_BASE[self.table]
            modicon = f"{base + self.address}" + ("" if self.count == 1 else f"..{base + last}")
            return f"{span} (0-based; {modicon} in the profile's Modicon numbering)"
        return f"{span} (0-based)"


@dataclass(frozen=True)
class NodeContext:
    """What the session knows about the node: used to name things and to give the right remedy."""

    node_id: str | None = None
    profile_key: str | None = None
    firmware: str | None = None  # as read from the device
    variant: str | None = None  # firmware range of the selected variant
    variants: tuple[str, ...] = ()  # firmware ranges the profile knows
    address_notation: str = "zero-based"


@dataclass(frozen=True)
class Facts:
    """What happened, independent of how it is explained."""

    code: ErrorCode
    detail: str  # the observation, e.g. "illegal data address (Modbus exception 02)"
    target: Target
    region: Region | None = None
    points: tuple[str, ...] = ()
    function_code: int | None = None
    exception_code: int | None = None
    writing: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # code-specific facts the remedy quotes


class FieldError(Exception):
    """A classified southbound failure; `str()` is the full operator message."""

    def __init__(self, facts: Facts, context: NodeContext | None = None) -> None:
        self.facts = facts
        self.context = context or NodeContext()
        super().__init__(render(facts, self.context))

    @property
    def code(self) -> ErrorCode:
        return self.facts.code

    @property
    def state_key(self) -> tuple[ErrorCode, Region | None, tuple[str, ...], bool]:
        """Identity for "log once per change of state": same code at the same place is the same state
        (a timeout that turns out to be a slow device, not a dead one, is a new state: its remedy differs)."""
        return (self.facts.code, self.facts.region, self.facts.points, "late" in self.facts.extra)

    def in_context(self, context: NodeContext, points: tuple[str, ...] | None = None) -> FieldError:
        """The same facts explained for a known node (and, for a block read, the points it carried)."""
        facts = self.facts
        if points is not None and not facts.points:
            facts = Facts(
                facts.code,
                facts.detail,
                facts.target,
                facts.region,
                points,
                facts.function_code,
                facts.exception_code,
                facts.writing,
                facts.extra,
            )
        return FieldError(facts, context)


def render(facts: Facts, context: NodeContext) -> str:
    where = f"node {context.node_id} ({facts.target})" if context.node_id else str(facts.target)
    what = facts.detail
    if facts.region is not None:
        what += f" at {facts.region.describe(context.address_notation)}"
    if facts.points:
        what += f" (point{'s' if len(facts.points) > 1 else ''} {', '.join(facts.points)})"
    return f"{where}: {facts.code}: {what}; {_remedy(facts, context)}"


def describe_fault(code: ErrorCode, detail: str, where: str) -> str:
    """A fault of no one device (a polling process that owns several): `where: code: detail; remedy`."""
    return f"{where}: {code}: {detail}; {_remedy(Facts(code, detail, Target('', 0, 0)), NodeContext())}"


def _node_field(context: NodeContext, name: str) -> str:
    return f"`{name}` of node {context.node_id}" if context.node_id else f"the {name}"


def _profile(context: NodeContext) -> str:
    return f"profile {context.profile_key}" if context.profile_key else "the profile"


def _firmware(context: NodeContext) -> str:
    return f"firmware {context.firmware}" if context.firmware else "the device's firmware"


def _remedy(facts: Facts, context: NodeContext) -> str:
    code = facts.code
    target = facts.target
    function = FUNCTION_NAMES.get(facts.function_code or 0, f"function {facts.function_code}")
    if code is ErrorCode.ILLEGAL_FUNCTION:
        if facts.writing:
            return (
                f"the device refuses {function} here, so writes to this point are stopped until the config "
                f"or the profile changes (the node stays monitored); {_profile(context)} declares the point "
                f"writable for {_firmware(context)}: check that the device is in remote/EMS control mode, "
                "or correct the point's access or firmware range in the profile"
            )
        return (
            f"the device does not support {function}: {_profile(context)} probably puts this point in the "
            f"wrong table for {_firmware(context)}; check the register map"
        )
    if code is ErrorCode.ILLEGAL_ADDRESS:
        return (
            f"these registers do not exist on this device: {_profile(context)}"
            + (f" (variant for firmware {context.variant})" if context.variant else "")
            + f" does not match {_firmware(context)}; run `socgw profile check --host {target.host} "
            f"--port {target.port} --unit {target.unit} {context.profile_key or 'PROFILE'}` and correct the "
            "addresses or the firmware ranges"
        )
    if code is ErrorCode.ILLEGAL_VALUE:
        if facts.writing:
            return (
                f"the device refused the value: check the point's minimum/maximum in {_profile(context)} "
                "against the device's manual"
            )
        return (
            f"the device refused the read length: lower comms.max_registers_per_read in {_profile(context)}"
        )
    if code is ErrorCode.DEVICE_FAILURE:
        return (
            "the device reported an internal failure (check its alarm log); some Modbus TCP servers also "
            f"answer 04 for a unit id they do not serve: check {_node_field(context, 'unit')}"
        )
    if code is ErrorCode.DEVICE_BUSY:
        return (
            "the device is busy and will be asked again next cycle; if this persists, raise "
            f"comms.min_request_gap_ms in {_profile(context)}"
        )
    if code is ErrorCode.GATEWAY_PATH:
        return (
            f"the Modbus gateway at {target.host}:{target.port} has no path to unit {target.unit}: check its "
            f"serial port and routing settings and {_node_field(context, 'unit')}"
        )
    if code is ErrorCode.GATEWAY_TARGET:
        return (
            f"the Modbus gateway at {target.host}:{target.port} got no answer from unit {target.unit} on its "
            'serial line (the Modbus "504"): check RS-485 wiring, termination and bias, baud rate and '
            f"parity, that the device is powered, and {_node_field(context, 'unit')}"
        )
    if code is ErrorCode.EXCEPTION:
        return f"see the device's manual for exception {facts.exception_code}"
    if code is ErrorCode.UNIT_MISMATCH:
        return (
            f"invalid slave response: expected unit {target.unit}, got {facts.extra.get('got', '?')}; check "
            f"{_node_field(context, 'unit')} (or another device on the same gateway answers for it)"
        )
    if code is ErrorCode.WRONG_TID:
        return (
            "an answer to no request of ours, not taken as the answer: another client's answer on a shared "
            "connection, a Modbus gateway that mixes up its clients' transactions, or firmware that does not "
            "echo the transaction id (many answer 0); make sure only socgw talks to this device through "
            "that gateway, or update its firmware; reconnecting"
        )
    if code is ErrorCode.MALFORMED:
        return (
            f"check that {target.host}:{target.port} speaks Modbus TCP (not RTU-over-TCP or another "
            "protocol) and that a single device answers there; reconnecting"
        )
    if code is ErrorCode.CRC:
        return (
            "noise on the RS-485 line: check the termination (120 ohm at both ends only), the bias "
            "resistors, the shield and ground, a cable run beside power wiring, and that every unit on the "
            "line uses the same baud rate and parity; the other units keep being polled"
        )
    if code is ErrorCode.FRAMING:
        return (
            f"the answer did not form a Modbus RTU frame: check that every unit on {target.endpoint} uses "
            "the same baud rate, parity and stop bits, that no two units share unit id "
            f"{target.unit}, and that the converter passes RTU frames through unchanged"
        )
    if code is ErrorCode.TIMEOUT:
        if facts.extra.get("late"):
            return (
                "a late answer arrived after the timeout: the device is slow; raise comms.timeout_ms in "
                f"{_profile(context)} (the 100 ms cycle allows about 80 ms) or raise comms.min_request_gap_ms"
            )
        return (
            "check that the device is powered and reachable and that host, port and "
            f"{_node_field(context, 'unit')} are right; reconnecting with backoff"
        )
    if code is ErrorCode.CONNECT_TIMEOUT:
        return (
            f"the host did not answer the TCP connect: check that {target.host} is the device's address, "
            f"that it is powered, and that no firewall drops port {target.port}; retrying with backoff"
        )
    if code is ErrorCode.CONN_REFUSED:
        return (
            f"nothing accepts connections on {target.host}:{target.port}: the device's Modbus TCP server is "
            "off or on another port, or the BMS has run out of connections because some client (a vendor "
            "tool, a second gateway, a crashed process) left its sockets open: close those clients or "
            "power-cycle the BMS; retrying with backoff"
        )
    if code is ErrorCode.UNREACHABLE and target.transport.kind is TransportKind.SERIAL:
        return (
            f"check the serial device {target.host} (docs/rs485.md: stable /dev/serial/by-id names, the "
            "dialout group); retrying with backoff"
        )
    if code is ErrorCode.UNREACHABLE:
        return (
            f"no route to {target.host}: check the address, subnet, VLAN and cabling; retrying with backoff"
        )
    if code is ErrorCode.CONN_RESET:
        return (
            "the device closed the connection: it may accept only a few clients (close other tools) or "
            "drop requests it dislikes; reconnecting with backoff"
        )
    if code is ErrorCode.NOT_CONNECTED:
        return "the node is not connected (see its previous error); nothing was sent"
    if code is ErrorCode.FW_UNKNOWN:
        known = ", ".join(context.variants) or "none"
        return (
            f"{_firmware(context)} is not covered by {_profile(context)} (variants known: {known}); the node "
            f"is monitored read-only with the {facts.extra.get('common', '?')} points common to every "
            "variant and receives no writes: add a variant for this firmware to the profile"
        )
    if code is ErrorCode.PROFILE_MISMATCH:
        return (
            f"this device is not what {_profile(context)} describes: check "
            f"{_node_field(context, 'profile')}, or run `socgw discover` to identify it"
        )
    if code is ErrorCode.POINT_UNKNOWN:
        return f"use one of: {facts.extra.get('known', '')}"
    if code is ErrorCode.DECODE:
        return (
            f"check the type, scale register and sentinel of these points in {_profile(context)}, or run "
            f"`socgw profile check --host {target.host} --port {target.port} --unit {target.unit} "
            f"{context.profile_key or 'PROFILE'}`"
        )
    if code is ErrorCode.WRITE_REJECTED:
        return "nothing was sent"
    if code is ErrorCode.WRITE_DISABLED:
        return (
            "writes to this point stopped after the device refused one (exception 01); they resume when the "
            "config or the profile changes"
        )
    if code is ErrorCode.WRITE_NOT_APPLIED:
        return (
            "the device acknowledged the write but kept another value: check that it is in remote/EMS "
            "control mode and that the point is the right one for this firmware"
        )
    if code is ErrorCode.POLLER_DOWN:
        return (
            "its nodes keep their last values (stale) for 2 s, then fail, and the balancer plans without "
            "them; the core restarts a polling process that exits, and kills and restarts one that stays "
            "silent: if this repeats, read the process's exit status in the log and keep site.pollers at "
            "or below the CPU cores the gateway may use (another process hogging the CPU delays it too)"
        )
    return "this is a bug in socgw: please report it with the log lines around this message"
