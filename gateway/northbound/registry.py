"""The composition root of the northbound side: which adapter serves which `northbound:` section.

Each adapter module exposes `SECTION` (its key under `northbound:` in the site config) and
`from_site(site, submit) -> NorthboundAdapter | None`: it checks its section (raising `ConfigError` with
file:line:column), returns None when the section is absent or disabled, and builds the adapter without
binding anything (so `socgw validate` can call it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gateway.config import ConfigError, SiteConfig
from gateway.northbound.adapter import NorthboundAdapter, Submit
from gateway.profiles.loader import Problem
from gateway.profiles.model import SourceMark
from gateway.yamlsource import MarkedMap

ADAPTER_MODULES: tuple[str, ...] = ("gateway.northbound.dnp3", "gateway.northbound.iec61850")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in ADAPTER_MODULES]


def known_sections() -> frozenset[str]:
    return frozenset(module.SECTION for module in _modules())


def create_adapters(site: SiteConfig, submit: Submit) -> list[NorthboundAdapter]:
    """Build (not start) every configured adapter; `ConfigError` lists the problems of every section."""
    modules = _modules()
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
    adapters: list[NorthboundAdapter] = []
    for module in modules:
        try:
            adapter = module.from_site(site, submit)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        if adapter is not None:
            adapters.append(adapter)
    if problems:
        raise ConfigError(problems)
    return adapters
