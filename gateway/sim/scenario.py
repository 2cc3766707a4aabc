"""Scenario files: which packs a simulated fleet has, their physics and their faults.

```yaml
speed: 1              # simulated seconds per wall-clock second
ambient_c: 25
host: 127.0.0.1
base_port: 15020      # pack i listens on base_port + i unless it sets `port`; 0: ephemeral ports
unit_id: 1
packs:
  - id: pack-01
    profile: microstore/mp2000
    firmware: 1.4.0          # selects the profile variant; default: the product's usual firmware
    capacity_wh: 2048        # nameplate
    soh_pct: 97
    soc_pct: 80
    temp_c: 27
    chemistry: lfp           # lfp | nmc
    max_power_w: 1200        # charge and discharge nameplate power (default: the product's)
    main: true               # a "main" unit draws 6 W standby instead of 2 W
    standby_w: 4             # or set the standby consumption directly
    backup_reserve_pct: 10   # the pack refuses to discharge below it
    enabled: true
    heartbeat_timeout_s: 10  # standby without a new heartbeat for 10 s (default: no watchdog)
    host: 127.0.0.2          # default: the scenario's host
    port: 15100              # default: base_port + index
    unit_id: 1               # default: the scenario's unit_id
    serial: MS-0001          # default: SIM<index>
    fault_flags: [dcdc_fault]  # alarm labels of the profile: the pack is faulted (no power)
    faults: {delay_ms: 30}   # Modbus misbehaviour, see gateway/sim/faults.py
```

Unset values come from the product a profile describes (PRODUCT_DEFAULTS) and `physics.default_params`.

Every error names the file, line and column of the offending entry.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.diagnostics import (
    Checker,
    Field,
    Mark,
    MarkedList,
    MarkedMap,
    YamlError,
    describe,
    load_yaml_file,
)
from gateway.diagnostics.fields import anything, flag, number, table, whole
from gateway.profiles.loader import ProfileError
from gateway.profiles.model import Profile, Version
from gateway.sim.faults import NO_FAULTS, FaultError, Faults, faults_from_mapping
from gateway.sim.physics import Chemistry, PackParams, PackState, default_params

DEFAULT_PROFILE = "microstore/mp2000"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 15020
STANDBY_W = 2.0
MAIN_UNIT_STANDBY_W = 6.0


@dataclass(frozen=True)
class ProductDefaults:
    """Nameplate of the product a profile describes, used when a scenario does not say."""

    capacity_wh: float
    max_power_w: float
    chemistry: Chemistry
    series_cells: int
    firmware: Version | None = None  # None: the profile's newest variant


PRODUCT_DEFAULTS: Mapping[str, ProductDefaults] = {
    "microstore/mp2000": ProductDefaults(2048.0, 1200.0, Chemistry.LFP, 16, Version(1, 4, 0)),
    "rackcell/rbms-x": ProductDefaults(50_000.0, 25_000.0, Chemistry.NMC, 196, Version(2, 1, 0)),
    "sunspec/battery-802": ProductDefaults(10_000.0, 5_000.0, Chemistry.LFP, 128, Version(1, 0, 0)),
}
GENERIC_PRODUCT = ProductDefaults(5_000.0, 2_500.0, Chemistry.LFP, 16)


class ScenarioError(Exception):
    """A scenario that cannot run; the message starts with file:line:column."""


@dataclass(frozen=True)
class PackSpec:
    """One simulated pack, fully resolved."""

    pack_id: str
    profile: Profile
    firmware: Version
    params: PackParams
    initial: PackState
    host: str
    port: int  # 0: an ephemeral port chosen when the fleet starts
    unit_id: int = 1
    serial: str = ""
    faults: Faults = NO_FAULTS
    seed: int = 0  # for the probabilistic faults


@dataclass(frozen=True)
class Scenario:
    packs: tuple[PackSpec, ...]
    speed: float = 1.0  # simulated seconds per second; 0 freezes the physics (exact-value tests)
    ambient_c: float = 25.0
    source: str = "<built-in>"
    packs_by_id: Mapping[str, PackSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError(f"speed {self.speed} must not be negative")
        object.__setattr__(self, "packs_by_id", {p.pack_id: p for p in self.packs})


ProfileSource = Callable[[str], Profile]


def default_firmware(profile: Profile) -> Version:
    """The product's usual firmware if the profile covers it, else the lowest of the newest variant."""
    usual = PRODUCT_DEFAULTS.get(profile.key, GENERIC_PRODUCT).firmware
    if usual is not None and profile.variant_for(usual) is not None:
        return usual
    return max(v.firmware.minimum for v in profile.variants)


def _check_ip(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host {host!r} is not an IP address (e.g. 127.0.0.1)") from None
    return host


def make_pack(
    pack_id: str,
    profile: Profile,
    *,
    index: int,
    firmware: Version | None = None,
    capacity_wh: float | None = None,
    soh_pct: float = 100.0,
    soc_pct: float = 50.0,
    temp_c: float = 25.0,
    chemistry: Chemistry | None = None,
    max_power_w: float | None = None,
    main: bool = False,
    standby_w: float | None = None,
    backup_reserve_pct: float = 0.0,
    enabled: bool = True,
    heartbeat_timeout_s: float | None = None,
    ambient_c: float = 25.0,
    host: str = DEFAULT_HOST,
    port: int = 0,
    unit_id: int = 1,
    serial: str | None = None,
    faults: Faults = NO_FAULTS,
    fault_flags: frozenset[str] = frozenset(),
) -> PackSpec:
    """A pack with the product defaults of `profile` for whatever is not given. Raises ValueError."""
    product = PRODUCT_DEFAULTS.get(profile.key, GENERIC_PRODUCT)
    firmware = firmware if firmware is not None else default_firmware(profile)
    if profile.variant_for(firmware) is None:
        ranges = ", ".join(str(v.firmware) for v in profile.variants)
        raise ValueError(f"profile {profile.key} has no variant for firmware {firmware} (variants: {ranges})")
    if not 0.0 <= soc_pct <= 100.0:
        raise ValueError(f"soc_pct {soc_pct} must be between 0 and 100")
    if not 0 < port + 1 <= 65536:
        raise ValueError(f"port {port} must be between 0 and 65535")
    if not 0 <= unit_id <= 255:
        raise ValueError(f"unit_id {unit_id} must be between 0 and 255")
    params = default_params(
        capacity_wh if capacity_wh is not None else product.capacity_wh,
        soh_pct=soh_pct,
        chemistry=chemistry if chemistry is not None else product.chemistry,
        max_power_w=max_power_w if max_power_w is not None else product.max_power_w,
        standby_w=standby_w if standby_w is not None else (MAIN_UNIT_STANDBY_W if main else STANDBY_W),
        ambient_c=ambient_c,
        series_cells=product.series_cells,
    )
    initial = PackState(
        soc_pct=soc_pct,
        temp_c=temp_c,
        enabled=enabled,
        backup_reserve_pct=backup_reserve_pct,
        heartbeat_timeout_s=heartbeat_timeout_s,
        fault_flags=fault_flags,
    )
    return PackSpec(
        pack_id=pack_id,
        profile=profile,
        firmware=firmware,
        params=params,
        initial=initial,
        host=_check_ip(host),
        port=port,
        unit_id=unit_id,
        serial=serial if serial is not None else f"SIM{index + 1:05d}",
        faults=faults,
        seed=index,
    )


def uniform_fleet(
    count: int,
    profile: Profile,
    *,
    host: str = DEFAULT_HOST,
    base_port: int = DEFAULT_BASE_PORT,
    speed: float = 1.0,
    firmware: Version | None = None,
) -> Scenario:
    """`count` packs of one profile on base_port + i (0: ephemeral), SOCs spread from 85 % down to 25 %
    and temperatures from 24 to 30 °C, so a balancer has work to do."""
    if count < 1:
        raise ValueError(f"a fleet needs at least one pack (got {count})")
    if base_port and base_port + count - 1 > 65535:
        raise ValueError(f"base port {base_port} + {count} packs runs past port 65535")
    packs = tuple(
        make_pack(
            f"pack-{i + 1:02d}",
            profile,
            index=i,
            firmware=firmware,
            soc_pct=round(85.0 - 60.0 * i / max(1, count - 1), 1),
            temp_c=24.0 + (i * 7 % 13) / 2.0,
            main=i == 0,
            host=host,
            port=base_port + i if base_port else 0,
        )
        for i in range(count)
    )
    return Scenario(packs=packs, speed=speed, source=f"{count} x {profile.key}")


def relocate(scenario: Scenario, *, host: str | None = None, base_port: int | None = None) -> Scenario:
    """The scenario with every pack on `host` and/or on port base_port + i (0: ephemeral ports)."""
    if base_port is not None and base_port and base_port + len(scenario.packs) - 1 > 65535:
        raise ValueError(f"base port {base_port} + {len(scenario.packs)} packs runs past port 65535")
    packs = tuple(
        dataclasses.replace(
            pack,
            host=_check_ip(host) if host is not None else pack.host,
            port=pack.port if base_port is None else (base_port + i if base_port else 0),
        )
        for i, pack in enumerate(scenario.packs)
    )
    return Scenario(packs, scenario.speed, scenario.ambient_c, scenario.source)


# ---- scenario files -------------------------------------------------------------------------------

_SCALAR = anything("", type=["string", "number"])  # read as text: `firmware: 1.4` is "1.4"
_TOP_FIELDS = table(
    {
        "speed": number("Simulated seconds per wall-clock second.", above=0),
        "ambient_c": number("Ambient temperature."),
        "host": _SCALAR,
        "base_port": whole(
            "Pack i listens on base_port + i unless it sets `port`; 0: ephemeral ports.", 0, 65535
        ),
        "unit_id": whole("Modbus unit id.", 0, 255),
        "packs": anything("The packs."),
    }
)
_PACK_FIELDS = table(
    {
        "id": _SCALAR,
        "profile": _SCALAR,
        "firmware": _SCALAR,
        "capacity_wh": number("Nameplate capacity."),
        "soh_pct": number("State of health."),
        "soc_pct": number("State of charge."),
        "temp_c": number("Temperature."),
        "chemistry": _SCALAR,
        "max_power_w": number("Charge and discharge nameplate power."),
        "main": flag("A main unit draws 6 W standby instead of 2 W."),
        "standby_w": number("Standby consumption."),
        "backup_reserve_pct": number("The pack refuses to discharge below it."),
        "enabled": flag("Whether the pack follows setpoints."),
        "heartbeat_timeout_s": number("Standby without a new heartbeat for this long."),
        "host": _SCALAR,
        "port": whole("TCP port.", 0, 65535),
        "unit_id": whole("Modbus unit id.", 0, 255),
        "serial": _SCALAR,
        "faults": anything("Modbus misbehaviour, see gateway/sim/faults.py."),
        "fault_flags": anything("Alarm labels of the profile: the pack is faulted."),
    }
)


def _fail(mark: Mark, message: str) -> ScenarioError:
    return ScenarioError(f"{mark}: {message}")


def _first_problem(checker: Checker) -> None:
    """A scenario stops at its first problem."""
    if checker.problems:
        raise ScenarioError(str(checker.problems[0]))


def _known_keys(data: MarkedMap, fields: Mapping[str, Field], where: str) -> None:
    checker = Checker()
    checker.known_keys(data, fields, where)
    _first_problem(checker)


def _read(data: MarkedMap, key: str, fields: Mapping[str, Field], default: Any) -> Any:
    checker = Checker()
    value = checker.value(data, key, fields[key], default)
    _first_problem(checker)
    return value


def _number(data: MarkedMap, key: str, default: float) -> float:
    value: float = _read(data, key, _PACK_FIELDS, default)
    return value


def _integer(data: MarkedMap, key: str, default: int, fields: Mapping[str, Field] = _PACK_FIELDS) -> int:
    value: int = _read(data, key, fields, default)
    return value


def _flag(data: MarkedMap, key: str, default: bool) -> bool:
    value: bool = _read(data, key, _PACK_FIELDS, default)
    return value


def _text(data: MarkedMap, key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _fail(data.value_mark(key), f"`{key}` must be text, not {describe(value)}")
    return str(value)


def _pack_from(
    data: Any, mark: Mark, index: int, top: MarkedMap, *, profiles: ProfileSource, ambient_c: float
) -> PackSpec:
    if not isinstance(data, MarkedMap):
        raise _fail(mark, "each pack must be a mapping with at least an id")
    _known_keys(data, _PACK_FIELDS, "a pack")
    if "id" not in data:
        raise _fail(data.mark, "pack without an id (e.g. id: pack-01)")
    pack_id = _text(data, "id", "")
    key = _text(data, "profile", DEFAULT_PROFILE)
    try:
        profile = profiles(key)
    except ProfileError as error:  # names the known keys, or the problems of a broken profile
        details = "; ".join(problem.message for problem in error.problems)
        raise _fail(data.value_mark("profile"), f"pack {pack_id}: {details}") from None
    firmware: Version | None = None
    if "firmware" in data:
        try:
            firmware = Version.parse(_text(data, "firmware", ""))
        except ValueError as error:
            raise _fail(data.value_mark("firmware"), str(error)) from None
    chemistry: Chemistry | None = None
    if "chemistry" in data:
        try:
            chemistry = Chemistry(_text(data, "chemistry", "").lower())
        except ValueError:
            raise _fail(
                data.value_mark("chemistry"),
                f"`chemistry` must be one of {', '.join(c.value for c in Chemistry)}, "
                f"not {data['chemistry']!r}",
            ) from None
    faults = NO_FAULTS
    if "faults" in data:
        faults_data = data["faults"]
        if not isinstance(faults_data, MarkedMap):
            raise _fail(data.value_mark("faults"), "faults must be a mapping, e.g. {delay_ms: 30}")
        try:
            faults = faults_from_mapping(faults_data)
        except FaultError as error:
            raise _fail(data.value_mark("faults"), f"pack {pack_id}: {error}") from None
    flags = data.get("fault_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise _fail(data.value_mark("fault_flags"), "fault_flags must be a list of names, e.g. [contactor]")
    base_port = _integer(top, "base_port", DEFAULT_BASE_PORT, _TOP_FIELDS)
    try:
        return make_pack(
            pack_id,
            profile,
            index=index,
            firmware=firmware,
            capacity_wh=_number(data, "capacity_wh", 0.0) if "capacity_wh" in data else None,
            soh_pct=_number(data, "soh_pct", 100.0),
            soc_pct=_number(data, "soc_pct", 50.0),
            temp_c=_number(data, "temp_c", ambient_c),
            chemistry=chemistry,
            max_power_w=_number(data, "max_power_w", 0.0) if "max_power_w" in data else None,
            main=_flag(data, "main", False),
            standby_w=_number(data, "standby_w", -1.0) if "standby_w" in data else None,
            backup_reserve_pct=_number(data, "backup_reserve_pct", 0.0),
            enabled=_flag(data, "enabled", True),
            heartbeat_timeout_s=_number(data, "heartbeat_timeout_s", 0.0) or None,
            ambient_c=ambient_c,
            host=_text(data, "host", _text(top, "host", DEFAULT_HOST)),
            port=_integer(data, "port", base_port + index if base_port else 0),
            unit_id=_integer(data, "unit_id", _integer(top, "unit_id", 1, _TOP_FIELDS)),
            serial=_text(data, "serial", "") or None,
            faults=faults,
            fault_flags=frozenset(flags),
        )
    except ValueError as error:
        raise _fail(data.mark, f"pack {pack_id}: {error}") from None


def scenario_from_data(data: Any, source: str, profiles: ProfileSource) -> Scenario:
    """Validate parsed (marked) YAML into a Scenario."""
    if not isinstance(data, MarkedMap):
        raise ScenarioError(f"{source}:1:1: a scenario is a mapping with a `packs:` list")
    _known_keys(data, _TOP_FIELDS, "the scenario")
    packs_data = data.get("packs")
    if not isinstance(packs_data, MarkedList) or not packs_data:
        raise _fail(data.value_mark("packs"), "`packs:` must be a non-empty list of packs")
    speed: float = _read(data, "speed", _TOP_FIELDS, 1.0)
    ambient_c: float = _read(data, "ambient_c", _TOP_FIELDS, 25.0)
    packs = tuple(
        _pack_from(item, packs_data.item_mark(i), i, data, profiles=profiles, ambient_c=ambient_c)
        for i, item in enumerate(packs_data)
    )
    seen: dict[str, int] = {}
    endpoints: dict[tuple[str, int], str] = {}
    for i, pack in enumerate(packs):
        mark = packs_data.item_mark(i)
        if pack.pack_id in seen:
            raise _fail(
                mark, f"pack id {pack.pack_id!r} is used twice (first by pack #{seen[pack.pack_id] + 1})"
            )
        seen[pack.pack_id] = i
        if pack.port and (pack.host, pack.port) in endpoints:
            raise _fail(
                mark,
                f"pack {pack.pack_id}: {pack.host}:{pack.port} is already taken by "
                f"{endpoints[pack.host, pack.port]}",
            )
        endpoints[pack.host, pack.port] = pack.pack_id
    return Scenario(packs=packs, speed=speed, ambient_c=ambient_c, source=source)


def load_scenario(path: str | Path, profiles: ProfileSource) -> Scenario:
    """Load and validate a scenario file; `profiles(key)` resolves profile keys. Raises ScenarioError."""
    try:
        data = load_yaml_file(path)
    except YamlError as error:
        raise ScenarioError(str(error)) from None
    return scenario_from_data(data, str(path), profiles)
