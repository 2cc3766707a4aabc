"""MQTT northbound: the fleet as a Sparkplug B 3.0 edge node (aiomqtt over paho-mqtt, TLS by Python's ssl).

settings.py        the `northbound.mqtt` section of the site config, checked (nothing connects)
metrics.py         the node's and each pack's metrics: named quantities, datatypes, units, deadbands
payload.py         Sparkplug B payloads in and out (protobuf)
edge.py            the edge node: births, data by exception, deaths, seq, commands through the control table
client.py          the adapter: aiomqtt on its own thread; Will, reconnect across brokers, primary host
sparkplug_b.proto  the payload schema of the Sparkplug 3.0 specification; sparkplug_b_pb2 is protoc's
                   module from it (committed; `make sparkplug` regenerates it, a test compares)

The MQTT adapter connects out to a broker: it listens on no port (`check` returns None only when the
section is absent or disabled; the registry knows it dials out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import SiteConfig
from gateway.northbound.adapter import Listener, Submit
from gateway.northbound.mqtt.settings import SECTION, parse_settings
from gateway.northbound.section import config_dir

if TYPE_CHECKING:
    from gateway.northbound.mqtt.client import MqttAdapter

__all__ = ["DIALS_OUT", "SECTION", "check", "create"]

DIALS_OUT = True  # a client of its broker: no local port to share with the other sections


def check(site: SiteConfig) -> Listener | None:
    """Check the section; ConfigError lists every problem with file:line:column. The Listener names
    the first broker: where it connects, not a port it binds (DIALS_OUT)."""
    settings = parse_settings(site)
    return None if settings is None else Listener(settings.brokers[0].host, settings.brokers[0].port)


def create(site: SiteConfig, submit: Submit) -> MqttAdapter | None:
    """The edge node for the site's `northbound.mqtt` section (not started), or None without one."""
    settings = parse_settings(site)
    if settings is None:
        return None
    from gateway.northbound.mqtt.client import MqttAdapter  # aiomqtt and protobuf load here
    from gateway.northbound.mqtt.edge import EdgeNode, Topics
    from gateway.northbound.mqtt.metrics import metric_table, quantity_deadbands

    table = metric_table(quantity_deadbands(config_dir(site)))
    # MQTT does not name a message's publisher; under a primary host (a hierarchy's head) the broker's
    # ACL lets only that host command this node, so the log names it.
    source = f"mqtt {settings.client_id}"
    if settings.primary_host_id is not None:
        source += f" (primary host {settings.primary_host_id})"
    edge = EdgeNode(
        Topics(settings.group_id, settings.edge_node_id), table, [pack.node_id for pack in site.served_packs],
        submit, source,
    )  # fmt: skip
    return MqttAdapter(settings, edge, None)
