"""A head's `hierarchy` section of the site config, checked; nothing connects here.

site: {name: plant, role: head}
nodes: []
hierarchy:
  brokers:                  # the head connects to every one (Sparkplug 3.0 chapter 8), STATE on each
    - {host: 10.0.0.2, port: 8883}
    - {host: 10.0.0.3, port: 8883}
  group_id: plant           # the workers' Sparkplug group
  host_id: head             # its STATE topic spBv1.0/STATE/head; each worker's primary_host_id
  client_id: socgw-head     # default socgw-<host_id>
  keepalive_s: 5            # MQTT keepalive: a cut-off worker's NDEATH comes 1.5 × its own keepalive late
  workers:                  # the workers' edge node ids: the head's clusters, in this order
    - {id: north, packs: [north-01, north-02]}   # its packs, served upstream from its DDATA
    - south                                      # a cluster whose packs are not served upstream
  tls: {ca: ca.pem, cert: head.pem, key: head.key}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.config import CLUSTER_FIELDS, ID_RULE, SPARKPLUG_ID, ClusterConfig, ConfigError, SiteConfig
from gateway.diagnostics import Checker, MarkedMap
from gateway.diagnostics.fields import anything, list_of, section, table, text, whole
from gateway.diagnostics.schema import field_schema
from gateway.northbound.mqtt.settings import (
    BROKER_FIELDS,
    PLAIN_PORT,
    TLS_PORT,
    Broker,
    MqttSettings,
    parse_brokers,
)
from gateway.northbound.section import config_dir
from gateway.northbound.tls import TLS_SECTION, parse_tls

__all__ = ["FIELDS", "HeadSettings", "parse_head"]

FIELDS = table(
    {
        "brokers": list_of(
            "Every broker of the site: the head is connected to all of them at once.",
            section("A broker.", BROKER_FIELDS, required=("host",)),
        ),
        "group_id": text("The workers' Sparkplug group id.", rule=ID_RULE),
        "host_id": text("This head's Sparkplug host id (the workers' primary_host_id).", rule=ID_RULE),
        "client_id": text("MQTT client identifier (default socgw-<host_id>).", rule=ID_RULE),
        "keepalive_s": whole("MQTT keepalive.", 1, 3600, unit="s"),
        "workers": list_of(
            "The workers, one cluster each: an edge node id, or {id, packs} to serve its packs upstream.",
            anything(
                "",
                oneOf=[
                    {"type": "string", "pattern": SPARKPLUG_ID.pattern},
                    field_schema(section("", CLUSTER_FIELDS, required=("id",))),
                ],
            ),
        ),
        "tls": TLS_SECTION,
    }
)


@dataclass(frozen=True)
class HeadSettings:
    mqtt: MqttSettings  # brokers, client id, group, keepalive and TLS, as an edge node's
    host_id: str
    clusters: tuple[ClusterConfig, ...]  # the workers, in the configured order, with the packs listed

    @property
    def workers(self) -> tuple[str, ...]:
        return tuple(cluster.worker_id for cluster in self.clusters)

    @property
    def group_id(self) -> str:
        return self.mqtt.group_id

    @property
    def brokers(self) -> tuple[Broker, ...]:
        return self.mqtt.brokers


def parse_head(site: SiteConfig) -> HeadSettings:
    """The head's section; ConfigError listing every problem with file:line:column."""
    checker = Checker()
    raw = site.hierarchy
    if not isinstance(raw, MarkedMap):
        raise ConfigError([])  # config.py reported it already
    checker.known_keys(raw, FIELDS, "`hierarchy`")
    tls = parse_tls(checker, raw, config_dir(site), datetime.now(UTC))
    host_id = _id(checker, raw, "host_id", "head")
    settings = HeadSettings(
        mqtt=MqttSettings(
            brokers=parse_brokers(checker, raw, TLS_PORT if tls is not None else PLAIN_PORT),
            client_id=_id(checker, raw, "client_id", f"socgw-{host_id}"),
            group_id=_id(checker, raw, "group_id", "socgw"),
            edge_node_id=host_id,
            keepalive_s=checker.value(raw, "keepalive_s", FIELDS["keepalive_s"], 5),
            tls=tls,
        ),
        host_id=host_id,
        clusters=site.clusters,
    )
    if checker.problems:
        raise ConfigError(checker.problems)
    return settings


def _id(checker: Checker, raw: MarkedMap, key: str, default: str) -> str:
    value: str = checker.value(raw, key, FIELDS[key], default)
    if not SPARKPLUG_ID.match(value):
        checker.problem(raw.value_mark(key), f"`{key}` {value!r} must hold only {ID_RULE}")
        return default
    return value
