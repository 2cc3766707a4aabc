"""What every protocol's settings loader does first: open its `northbound.<name>` section of the site
config, and read the address it listens on. One place, so the three protocols say it the same way."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Checker, Mark, MarkedMap
from gateway.diagnostics.fields import Field


def open_section(
    site: SiteConfig, name: str, fields: Mapping[str, Field], checker: Checker
) -> MarkedMap | None:
    """`northbound.<name>` (empty when written without a value) with its unknown keys reported; None
    when the site has no such section. Raises ConfigError when it is not a mapping."""
    northbound = site.northbound
    if name not in northbound:
        return None
    mark = northbound.value_mark(name) if isinstance(northbound, MarkedMap) else Mark(str(site.path), 1, 1)
    raw = northbound[name]
    section = MarkedMap(mark) if raw is None else checker.mapping(raw, mark, f"`northbound.{name}`")
    if section is None:
        raise ConfigError(checker.problems)
    checker.known_keys(section, fields, f"`northbound.{name}`")
    return section


def listen_host(checker: Checker, section: MarkedMap, field: Field, default: str) -> str:
    """The IP address an adapter listens on; a name or garbage is reported and the default used."""
    host: str = checker.value(section, "host", field, default)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        checker.problem(
            section.value_mark("host"), f"`host` must be an IP address to listen on, not {host!r}"
        )
        return default
    return host


def config_dir(site: SiteConfig) -> Path:
    """The site config's directory: relative paths in a section (TLS files, maps) start there."""
    return Path(site.path).resolve().parent if site.path else Path.cwd()
