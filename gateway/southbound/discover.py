"""Find Modbus TCP units on a network and identify them: the engine of `socgw discover`.

1. Connect scan: which hosts accept TCP on the port (bounded concurrency, short timeout).
2. Per host, one connection; per unit id, a presence probe (the SunSpec "SunS" marker at 40000, 0 and
   50000). A gateway's 0A/0B or no answer means nobody is there; any other answer means a unit is
   (04 only if a profile then recognises it: pymodbus-based servers answer 04 for unknown unit ids).
3. Each present unit is matched against every known profile's identify block (its markers must all
   match); the firmware then picks the variant.
Units that answer Modbus but match no profile are reported too, so the operator knows a profile is
missing. Devices that ignore the unit id answer on every id with the same serial: reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.profiles.codec import CodecError, Value, decode_points
from gateway.profiles.model import Profile, Table
from gateway.profiles.plan import plan_reads, split_block
from gateway.southbound.errors import ErrorCode, FieldError, Target
from gateway.southbound.identify import marker_mismatches, select_variant
from gateway.southbound.link import ModbusLink
from gateway.southbound.transport import TCP, Transport

SUNSPEC_MARKER = [0x5375, 0x6E53]  # "SunS"
SUNSPEC_BASES = (40000, 0, 50000)
_NOBODY_THERE = frozenset({ErrorCode.GATEWAY_PATH, ErrorCode.GATEWAY_TARGET, ErrorCode.TIMEOUT})


@dataclass(frozen=True)
class Discovered:
    host: str
    port: int
    unit: int
    profile: Profile | None = None
    firmware: str | None = None  # the version that selected the variant (or the raw value, if unreadable)
    serial: str | None = None
    sunspec_base: int | None = None
    note: str = ""

    @property
    def node_id(self) -> str:
        """A node id the site config accepts (a letter, then up to 31 of A-Za-z0-9_-), unique per address."""
        model = self.profile.model if self.profile is not None else "unit"
        tail = re.sub(r"[^A-Za-z0-9]+", "-", self.host).strip("-") + (
            "" if self.unit == 1 else f"-u{self.unit}"
        )
        head = re.sub(r"[^A-Za-z0-9_-]+", "-", model)
        if not head[:1].isalpha():
            head = "n" + head
        room = 32 - len(tail) - 1
        return f"{head[:room]}-{tail}" if room >= 1 else "n" + tail[-31:]


def scan_addresses(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """Addresses worth a connect: the usable hosts (every address of a /31, /32, /127 or /128)."""
    hosts = list(network.hosts())
    return [str(address) for address in (hosts or network)]


async def open_hosts(addresses: Iterable[str], port: int, *, concurrency: int, timeout_s: float) -> list[str]:
    """The addresses that accept a TCP connection on `port`, in the order given."""
    limit = asyncio.Semaphore(concurrency)

    async def accepts(address: str) -> bool:
        async with limit:
            try:
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout_s)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True

    addresses = list(addresses)
    results = await asyncio.gather(*(accepts(address) for address in addresses))
    return [address for address, ok in zip(addresses, results, strict=True) if ok]


async def _read(link: ModbusLink, profile: Profile, unit: int) -> dict[str, Value | None]:
    points = profile.identify.points
    raw: dict[str, list[int]] = {}
    for block in plan_reads(points.values(), profile.comms):
        raw.update(split_block(block, await link.read(block.table, block.start, block.count, unit)))
    return decode_points(points, raw)


async def _sunspec_base(link: ModbusLink, unit: int) -> tuple[bool, bool, int | None]:
    """(may a unit be there, does it surely answer, where its SunSpec marker is)."""
    maybe = sure = False
    for base in SUNSPEC_BASES:
        try:
            words = await link.read(Table.HOLDING, base, 2, unit)
        except FieldError as error:
            if error.code in _NOBODY_THERE or error.code.is_connection_fault:
                return maybe, sure, None
            maybe = True
            # Servers built on pymodbus answer 04 for a unit id they do not serve: not proof of a unit.
            sure = sure or error.code is not ErrorCode.DEVICE_FAILURE
            continue
        maybe = sure = True
        if words == SUNSPEC_MARKER:
            return True, True, base
    return maybe, sure, None


async def identify_unit(link: ModbusLink, unit: int, profiles: Sequence[Profile]) -> Discovered | None:
    """What answers as `unit` behind `link`, or None when nobody does."""
    host, port = link.target.host, link.target.port
    maybe, sure, base = await _sunspec_base(link, unit)
    if not link.connected:
        await link.open()
    if not maybe:
        return None
    for profile in profiles:
        if not profile.identify.markers:
            continue  # without markers a profile cannot recognise its device
        try:
            values = await _read(link, profile, unit)
        except (FieldError, CodecError):
            if not link.connected:
                await link.open()
            continue
        if marker_mismatches(profile, values):
            continue
        selection = select_variant(profile, values)
        serial = values.get("serial")
        note = "" if selection.variant is not None else f"E_FW_UNKNOWN: {selection.problem}"
        return Discovered(
            host,
            port,
            unit,
            profile,
            str(selection.firmware) if selection.firmware is not None else selection.firmware_text,
            None if serial is None else str(serial).strip(),
            base,
            note,
        )
    if not sure:
        return None
    where = f"SunSpec marker at {base}" if base is not None else "no SunSpec marker"
    return Discovered(
        host, port, unit, sunspec_base=base, note=f"answers Modbus ({where}) but matches no profile"
    )


async def probe_host(
    host: str,
    port: int,
    units: Sequence[int],
    profiles: Sequence[Profile],
    *,
    timeout_s: float,
    transport: Transport = TCP,
) -> list[Discovered]:
    """Every unit found on one host (or one RTU line: a serial device, or a converter at host:port),
    probed one after the other over one connection."""
    link = ModbusLink(
        Target(host, port, units[0] if units else 1, transport),
        timeout_s=timeout_s,
        connect_timeout_s=timeout_s,
    )
    found: list[Discovered] = []
    try:
        await link.open()
        for unit in units:
            result = await identify_unit(link, unit, profiles)
            if result is not None:
                found.append(result)
    except FieldError:
        pass  # the host stopped answering: report what was found so far
    finally:
        link.close()
    return _once_per_device(found)


def _once_per_device(found: list[Discovered]) -> list[Discovered]:
    """A device that ignores the unit id answers on every id with the same identity: keep its first."""
    seen: dict[tuple[str | None, str | None], Discovered] = {}
    kept = []
    for item in found:
        key = (item.profile.key if item.profile else None, item.serial)
        if item.serial and key in seen:
            continue
        seen[key] = item
        kept.append(item)
    return kept


async def discover(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    port: int,
    units: Sequence[int],
    profiles: Sequence[Profile],
    *,
    concurrency: int = 256,
    timeout_s: float = 0.2,
    transport: Transport = TCP,
) -> list[Discovered]:
    hosts = await open_hosts(scan_addresses(network), port, concurrency=concurrency, timeout_s=timeout_s)
    limit = asyncio.Semaphore(concurrency)

    async def one(host: str) -> list[Discovered]:
        async with limit:
            return await probe_host(host, port, units, profiles, timeout_s=timeout_s, transport=transport)

    per_host = await asyncio.gather(*(one(host) for host in hosts))
    return [item for items in per_host for item in items]
