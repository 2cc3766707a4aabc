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
        allow: [10.1.2.0/24]  # who may connect (default: this machine only); the front door's limits:
        first_frame_s: 5      # no TPKT/COTP connection request by then: closed
        idle_s: 0             # nothing from a client for this long closes it (0: never; TCP keep-alive)
        max_sessions: 4       # clients at once (libiec61850 takes 5)
        connects_per_min: 120 # per source address
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Checker
from gateway.diagnostics.fields import flag, table, text, whole
from gateway.mapping.iec61850 import MappingError, find_map, load_map
from gateway.northbound.iec61850.plan import ModelPlan, plan_model
from gateway.northbound.section import (
    Admission,
    admission_fields,
    config_dir,
    listen_host,
    open_section,
    parse_admission,
)
from gateway.northbound.tls import TLS_SECTION, TlsFiles, parse_tls

__all__ = [
    "BUFFERED_REPORT_PACKS",
    "DEFAULT_PORT",
    "FIELDS",
    "SECTION",
    "Settings",
    "TlsFiles",
    "load_settings",
]

SECTION = "iec61850"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 102
DEFAULT_IED_NAME = "SOCGW"
DEFAULT_MAP = "default"
# Where socgw advises the large maps (the DNP3 default map's room, too): with a buffered report per pack an
# update with every pack moving takes 159 ms at 200 packs and 1.16 s at 500 (docs/iec61850.md).
BUFFERED_REPORT_PACKS = 256
MAX_SESSIONS = 5  # libiec61850's own limit
DEFAULT_ADMISSION = Admission(max_sessions=MAX_SESSIONS - 1)

log = logging.getLogger(__name__)

# The format: keys and what they hold (`socgw config schema` is made from this table).
FIELDS = table(
    {
        "host": text(
            "IP address to listen on (0.0.0.0: every interface).", rule="an IP address to listen on"
        ),
        "port": whole("MMS port; 102 needs root or CAP_NET_BIND_SERVICE.", 1, 65535),
        "ied_name": text("MMS domains are <ied_name><LD>, e.g. SOCGWFLEET."),
        "map": text(
            "mappings/iec61850/<name>.yaml (`large` above 256 packs), or a path relative to this file."
        ),
        "tls": TLS_SECTION,
        "enabled": flag("false keeps the section but serves nothing."),
        **admission_fields(
            "Nothing from a client for this long closes it (0: never; dead peers end by TCP keep-alive).",
            max_sessions=MAX_SESSIONS,
        ),
    }
)


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    ied_name: str
    map_path: Path
    tls: TlsFiles | None
    admission: Admission = DEFAULT_ADMISSION


def load_settings(site: SiteConfig) -> tuple[Settings, ModelPlan] | None:
    """The server's settings and model plan for `site`, or None when the section is absent or disabled.
    Raises `ConfigError` (file:line:column) for a bad section, map or node name."""
    checker = Checker()
    section = open_section(site, SECTION, FIELDS, checker)
    if section is None:
        return None
    enabled = checker.value(section, "enabled", FIELDS["enabled"], True)
    host = listen_host(checker, section, FIELDS["host"], DEFAULT_HOST)
    port = checker.value(section, "port", FIELDS["port"], DEFAULT_PORT)
    ied_name = checker.value(section, "ied_name", FIELDS["ied_name"], DEFAULT_IED_NAME)
    directory = config_dir(site)
    tls = parse_tls(checker, section, directory, datetime.now(UTC))
    admission = parse_admission(checker, section, FIELDS, DEFAULT_ADMISSION)
    map_name = checker.value(section, "map", FIELDS["map"])
    map_path: Path | None = None
    try:
        map_path = find_map(map_name or DEFAULT_MAP, directory)
    except FileNotFoundError as error:
        checker.problem(section.value_mark("map"), str(error))
    if checker.problems:
        raise ConfigError(checker.problems)
    if enabled is False:
        return None
    assert map_path is not None
    try:
        iec_map = load_map(map_path)
    except MappingError as error:
        raise ConfigError(error.problems) from None
    plan = plan_model(iec_map, site, ied_name, section.value_mark("ied_name"))
    return Settings(host, port, ied_name, map_path, tls, admission), plan
