"""The `northbound.iec61850` section of the site config, checked, and the model planned from its map;
no stack is loaded here.

Config (`northbound.iec61850` in the site config):

    northbound:
      iec61850:
        host: 127.0.0.1       # address to listen on (0.0.0.0: every interface)
        port: 102             # MMS; 102 needs root or CAP_NET_BIND_SERVICE
        ied_name: SOCGW       # MMS domains are <ied_name><LD>, e.g. SOCGWFLEET
        map: default          # mappings/iec61850/<name>.yaml (`large` above 256 packs), or a path
        tls:                  # optional: mutual TLS (clients need a certificate signed by `ca`)
          ca: /etc/socgw/tls/ca.pem
          cert: /etc/socgw/tls/gateway.pem
          key: /etc/socgw/tls/gateway.key
        enabled: true         # false keeps the section but serves nothing
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import ConfigError, SiteConfig
from gateway.mapping.iec61850 import MappingError, find_map, load_map
from gateway.northbound.iec61850.plan import ModelPlan, plan_model
from gateway.profiles.loader import Problem
from gateway.profiles.model import SourceMark
from gateway.yamlsource import Mark, MarkedMap

if TYPE_CHECKING:
    pass

SECTION = "iec61850"
KEYS = ("host", "port", "ied_name", "map", "tls", "enabled")
TLS_KEYS = ("ca", "cert", "key")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 102
DEFAULT_IED_NAME = "SOCGW"
DEFAULT_MAP = "default"
# Where socgw advises the large maps (the DNP3 default map's room, too): with a buffered report per pack an
# update with every pack moving takes 159 ms at 200 packs and 1.16 s at 500 (docs/iec61850.md).
BUFFERED_REPORT_PACKS = 256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    ied_name: str
    map_path: Path
    tls: TlsFiles | None


def _mark(mark: Mark) -> SourceMark:
    return SourceMark(mark.file, mark.line, mark.column)


def load_settings(site: SiteConfig) -> tuple[Settings, ModelPlan] | None:
    """The server's settings and model plan for `site`, or None when the section is absent or disabled.
    Raises `ConfigError` (file:line:column) for a bad section, map or node name."""
    northbound = site.northbound
    if not isinstance(northbound, MarkedMap) or SECTION not in northbound:
        return None
    section = northbound[SECTION]
    problems: list[Problem] = []
    if section is None:
        section = MarkedMap(northbound.value_mark(SECTION))
    if not isinstance(section, MarkedMap):
        where = _mark(northbound.value_mark(SECTION))
        raise ConfigError([Problem(where, f"`northbound.{SECTION}` must be a mapping of settings")])
    for key in section:
        if key not in KEYS:
            problems.append(
                Problem(
                    _mark(section.key_mark(key)), f"unknown key `{key}` in `{SECTION}`: use {', '.join(KEYS)}"
                )
            )
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(Problem(_mark(section.value_mark("enabled")), "`enabled` must be true or false"))
    host = section.get("host", DEFAULT_HOST)
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        problems.append(
            Problem(
                _mark(section.value_mark("host")), f"`host` must be an IP address to listen on, not {host!r}"
            )
        )
    port = section.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(Problem(_mark(section.value_mark("port")), f"`port` must be 1..65535, not {port!r}"))
    ied_name = section.get("ied_name", DEFAULT_IED_NAME)
    if not isinstance(ied_name, str):
        problems.append(Problem(_mark(section.value_mark("ied_name")), "`ied_name` must be a text"))
        ied_name = DEFAULT_IED_NAME
    config_dir = Path(site.path).resolve().parent if site.path else Path.cwd()
    tls = _tls_files(section, config_dir, problems)
    map_name = section.get("map", DEFAULT_MAP)
    map_path: Path | None = None
    if not isinstance(map_name, str) or not map_name:
        problems.append(Problem(_mark(section.value_mark("map")), "`map` must be a map name or a file path"))
    else:
        try:
            map_path = find_map(map_name, config_dir)
        except FileNotFoundError as error:
            problems.append(Problem(_mark(section.value_mark("map")), str(error)))
    if problems:
        raise ConfigError(problems)
    if enabled is False:
        return None
    assert map_path is not None
    try:
        iec_map = load_map(map_path)
    except MappingError as error:
        raise ConfigError(error.problems) from None
    plan = plan_model(iec_map, site, ied_name, _mark(section.value_mark("ied_name")))
    return Settings(str(host), int(port), ied_name, map_path, tls), plan


def _tls_files(section: MarkedMap, config_dir: Path, problems: list[Problem]) -> TlsFiles | None:
    tls = section.get("tls")
    if tls is None:
        return None
    if not isinstance(tls, MarkedMap) or set(tls) != set(TLS_KEYS):
        problems.append(
            Problem(
                _mark(section.value_mark("tls")),
                "`tls` needs exactly `ca` (the CA that signs client certificates), `cert` and `key` "
                "(the gateway's own certificate and private key, PEM)",
            )
        )
        return None
    paths: dict[str, Path] = {}
    for key in TLS_KEYS:
        value = tls[key]
        path = Path(str(value))
        path = path if path.is_absolute() else config_dir / path
        if not isinstance(value, str) or not path.is_file():
            problems.append(Problem(_mark(tls.value_mark(key)), f"TLS `{key}` file {path} does not exist"))
        paths[key] = path
    return TlsFiles(paths["ca"], paths["cert"], paths["key"])
