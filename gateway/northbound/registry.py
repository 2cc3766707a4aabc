"""The composition root of the northbound side: which package serves which `northbound:` section.

Each protocol package exposes `SECTION` (its key under `northbound:` in the site config),
`check(site)` (raises `ConfigError` with file:line:column; loads no protocol stack, so `socgw validate`
can call it) and `create(site, submit) -> NorthboundAdapter | None` (None when the section is absent or
disabled; builds the adapter without binding anything).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from gateway.config import ConfigError, SiteConfig
from gateway.northbound.adapter import NorthboundAdapter, Submit
from gateway.profiles.loader import Problem
from gateway.profiles.model import SourceMark
from gateway.yamlsource import MarkedMap

PROTOCOL_PACKAGES: tuple[str, ...] = (
    "gateway.northbound.dnp3",
    "gateway.northbound.iec61850",
    "gateway.northbound.web",
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
                mark = northbound.key_mark(key)
                problems.append(
                    Problem(
                        SourceMark(mark.file, mark.line, mark.column),
                        f"unknown northbound section `{key}`: use one of {', '.join(sorted(known))}",
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
    """Check every `northbound:` section without loading a protocol stack."""
    _each_section(site, lambda package: package.check(site))


def create_adapters(site: SiteConfig, submit: Submit) -> list[NorthboundAdapter]:
    """Build (not start) every configured adapter; `ConfigError` lists the problems of every section."""
    adapters: list[NorthboundAdapter] = []

    def create(package: ModuleType) -> None:
        adapter = package.create(site, submit)
        if adapter is not None:
            adapters.append(adapter)

    _each_section(site, create)
    return adapters
