"""The composition root of the northbound side: which package serves which `northbound:` section.

Each protocol package exposes `SECTION` (its key under `northbound:` in the site config),
`check(site) -> Listener | None` (where it will listen; raises `ConfigError` with file:line:column;
loads no protocol stack, so `socgw validate` can call it) and
`create(site, submit) -> NorthboundAdapter | None` (None when the section is absent or disabled; builds
the adapter without binding anything). A listening package behind the front door also exposes
`door(site) -> DoorPlan | None` and takes `create(site, submit, private)`: the stack then listens on the
private loopback address in plain TCP. A package that connects out instead of listening (MQTT) sets
`DIALS_OUT = True`: its Listener names where it connects, and shares no local port with the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Mark, MarkedMap, Problem, did_you_mean
from gateway.northbound.adapter import Listener, NorthboundAdapter, Submit
from gateway.northbound.section import DoorPlan

PROTOCOL_PACKAGES: tuple[str, ...] = (
    "gateway.northbound.dnp3",
    "gateway.northbound.iec61850",
    "gateway.northbound.web",
    "gateway.northbound.mqtt",
)


def _packages() -> list[ModuleType]:
    return [importlib.import_module(name) for name in PROTOCOL_PACKAGES]


def known_sections() -> frozenset[str]:
    return frozenset(package.SECTION for package in _packages())


def _each_section(site: SiteConfig, action: Callable[[ModuleType], None]) -> None:
    """Run `action` on every protocol package; ConfigError lists the problems of every section."""
    known = known_sections()
    problems: list[Problem] = []
    northbound = site.northbound
    if isinstance(northbound, MarkedMap):
        for key in northbound:
            if key not in known:
                problems.append(
                    Problem(
                        northbound.key_mark(key),
                        f"unknown northbound section `{key}`{did_you_mean(str(key), sorted(known))}: "
                        f"use one of {', '.join(sorted(known))}",
                    )
                )
    for package in _packages():
        try:
            action(package)
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)


def check_sections(site: SiteConfig) -> None:
    """Check every `northbound:` section, and that no two listen on one port, without loading a stack."""
    listeners: dict[str, Listener] = {}

    def check(package: ModuleType) -> None:
        listener = package.check(site)
        if listener is not None and not getattr(package, "DIALS_OUT", False):
            listeners[package.SECTION] = listener

    _each_section(site, check)
    problems = _shared_ports(site, listeners)
    if problems:
        raise ConfigError(problems)


def _shared_ports(site: SiteConfig, listeners: dict[str, Listener]) -> list[Problem]:
    """Two sections on one TCP port (same address, or either on every address) cannot both bind."""
    problems: list[Problem] = []
    seen: list[tuple[str, Listener]] = []
    for section, listener in listeners.items():
        for other_section, other in seen:
            if listener.port == other.port and (
                listener.host == other.host or listener.every_address or other.every_address
            ):
                problems.append(
                    Problem(
                        _port_mark(site, section),
                        f"northbound.{section} would listen on port {listener.port}, which "
                        f"northbound.{other_section} already uses ({_port_mark(site, other_section)}): "
                        "give each protocol its own port",
                    )
                )
        seen.append((section, listener))
    return problems


def _port_mark(site: SiteConfig, section: str) -> Mark:
    northbound = site.northbound
    if not isinstance(northbound, MarkedMap):
        return Mark(str(site.path), 1, 1)
    raw = northbound.get(section)
    if isinstance(raw, MarkedMap) and "port" in raw:
        return raw.value_mark("port")
    return northbound.key_mark(section)


def create_adapters(site: SiteConfig, submit: Submit) -> list[NorthboundAdapter]:
    """Build (not start) every configured adapter; `ConfigError` lists the problems of every section."""
    check_sections(site)
    adapters: list[NorthboundAdapter] = []

    def create(package: ModuleType) -> None:
        adapter = package.create(site, submit)
        if adapter is not None:
            adapters.append(adapter)

    _each_section(site, create)
    return adapters


def configured_sections(site: SiteConfig) -> list[str]:
    """The `northbound:` sections that will serve (present and enabled), checked, without loading a stack."""
    check_sections(site)
    return [package.SECTION for package in _packages() if package.check(site) is not None]


def _package(section: str) -> ModuleType:
    for package in _packages():
        if section == package.SECTION:
            return package
    raise ValueError(f"no northbound package serves `{section}`: known {', '.join(sorted(known_sections()))}")


def door_plan(site: SiteConfig, section: str) -> DoorPlan | None:
    """What the front door serves for one section; None when its stack listens by itself (or is off)."""
    door = getattr(_package(section), "door", None)
    plan: DoorPlan | None = None if door is None else door(site)
    return plan


def create_adapter(
    site: SiteConfig, section: str, submit: Submit, private: Listener | None = None
) -> NorthboundAdapter | None:
    """Build (not start) the adapter of one section; None when that section is absent or disabled.
    With `private` (a section with a `door`), the stack listens there behind the front door."""
    package = _package(section)
    adapter: NorthboundAdapter | None = (
        package.create(site, submit) if private is None else package.create(site, submit, private)
    )
    return adapter
