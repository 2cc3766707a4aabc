"""The `northbound.mqtt` section of the site config, checked; nothing connects here.

Config (`northbound: mqtt:` in the site config; every key optional):

    brokers:                   # tried in turn (failover): the next on a lost or refused connection
      - {host: 127.0.0.1, port: 1883}
    client_id: socgw-<edge>    # the MQTT client identifier
    group_id: socgw            # Sparkplug group
    edge_node_id: <site name>  # Sparkplug edge node (default: the site name, made topic-safe)
    keepalive_s: 30
    primary_host_id: scada1    # wait for spBv1.0/STATE/scada1 online before the births
    username: gw               # optional, with `password`
    password: secret
    tls: {ca: ca.pem, cert: gateway.pem, key: gateway.key}   # MQTTS, mutual TLS (TLS 1.2 minimum)

Deadbands are those of the named quantities in the default IEC 61850 map (the same per-quantity steps
as every other protocol).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.config import ID_RULE, SPARKPLUG_ID, ConfigError, SiteConfig
from gateway.diagnostics import Checker, MarkedList, MarkedMap
from gateway.diagnostics.fields import flag, list_of, section, table, text, whole
from gateway.northbound.section import config_dir, open_section
from gateway.northbound.tls import TLS_SECTION, TlsFiles, parse_tls

__all__ = ["FIELDS", "SECTION", "Broker", "MqttSettings", "parse_settings"]

SECTION = "mqtt"
PLAIN_PORT, TLS_PORT = 1883, 8883


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


@dataclass(frozen=True)
class MqttSettings:
    brokers: tuple[Broker, ...]
    client_id: str
    group_id: str
    edge_node_id: str
    keepalive_s: int = 30
    primary_host_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS 1.2 at least (1.3 when the broker offers it), the broker checked against `ca`."""
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.tls.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls.cert, self.tls.key)
        return context


# --- The format: keys and what they hold (`socgw config schema` is made from these tables) -----------

BROKER_FIELDS = table(
    {
        "host": text("Broker host name or address."),
        "port": whole(f"Broker port ({PLAIN_PORT} plain, {TLS_PORT} with tls).", 1, 65535),
    }
)
FIELDS = table(
    {
        "enabled": flag("false keeps the section but publishes nothing."),
        "brokers": list_of(
            "Brokers tried in turn: the next one when a connection is lost or refused.",
            section("A broker.", BROKER_FIELDS, required=("host",)),
        ),
        "client_id": text("MQTT client identifier (default socgw-<edge_node_id>).", rule=ID_RULE),
        "group_id": text("Sparkplug group id.", rule=ID_RULE),
        "edge_node_id": text("Sparkplug edge node id (default: the site name).", rule=ID_RULE),
        "keepalive_s": whole("MQTT keepalive.", 5, 3600, unit="s"),
        "primary_host_id": text("Sparkplug primary host: births wait for its STATE online.", rule=ID_RULE),
        "username": text("MQTT user name (with `password`)."),
        "password": text("MQTT password (with `username`)."),
        "tls": TLS_SECTION,
    }
)


def topic_safe(name: str) -> str:
    """A Sparkplug id from free text (the site name): the characters MQTT reserves become '_'."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", name.strip()) or "socgw"


def parse_settings(site: SiteConfig) -> MqttSettings | None:
    """The `northbound.mqtt` section, or None when absent or `enabled: false`.
    Raises ConfigError listing every problem with file:line:column."""
    checker = Checker()
    raw = open_section(site, SECTION, FIELDS, checker)
    if raw is None or not checker.value(raw, "enabled", FIELDS["enabled"], True):
        return None
    tls = parse_tls(checker, raw, config_dir(site), datetime.now(UTC))
    group = _id(checker, raw, "group_id", "socgw") or "socgw"
    edge = _id(checker, raw, "edge_node_id", topic_safe(site.name)) or "socgw"
    username = checker.value(raw, "username", FIELDS["username"])
    password = checker.value(raw, "password", FIELDS["password"])
    if (username is None) != (password is None):
        checker.problem(raw.mark, "`username` and `password` go together: give both or neither")
    settings = MqttSettings(
        brokers=parse_brokers(checker, raw, TLS_PORT if tls is not None else PLAIN_PORT),
        client_id=_id(checker, raw, "client_id", None) or f"socgw-{edge}",
        group_id=group,
        edge_node_id=edge,
        keepalive_s=checker.value(raw, "keepalive_s", FIELDS["keepalive_s"], 30),
        primary_host_id=_id(checker, raw, "primary_host_id", None),
        username=username,
        password=password,
        tls=tls,
    )
    if checker.problems:
        raise ConfigError(checker.problems)
    return settings


def _id(checker: Checker, raw: MarkedMap, key: str, default: str | None) -> str | None:
    value: str | None = checker.value(raw, key, FIELDS[key], default)
    if value is not None and not SPARKPLUG_ID.match(value):
        checker.problem(raw.value_mark(key), f"`{key}` {value!r} must hold only {ID_RULE}")
        return default
    return value


def parse_brokers(checker: Checker, raw: MarkedMap, default_port: int) -> tuple[Broker, ...]:
    entries = raw.get("brokers")
    if entries is None:
        return (Broker("127.0.0.1", default_port),)
    if not isinstance(entries, MarkedList) or not entries:
        checker.problem(raw.value_mark("brokers"), "`brokers` must be a list of {host, port}, at least one")
        return ()
    brokers: list[Broker] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, MarkedMap):
            checker.problem(entries.item_mark(index), "each broker must be a mapping {host, port}")
            continue
        checker.known_keys(entry, BROKER_FIELDS, "a broker")
        host = checker.value(entry, "host", BROKER_FIELDS["host"], where="a broker")
        port = checker.value(entry, "port", BROKER_FIELDS["port"], default_port)
        if host is not None:
            brokers.append(Broker(host, port))
    return tuple(brokers)
