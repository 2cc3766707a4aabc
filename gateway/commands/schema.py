"""`socgw config schema` and `socgw map schema dnp3|iec61850`: the JSON Schemas of the site config and
the point maps, for editors (`socgw profile schema` does the same for profiles).

Each schema is made from the field tables the loader checks with (gateway/config.py, the northbound
settings, gateway/mapping/*.py), so the two cannot drift; the loaders stay the authority and also check
what a schema cannot say (profiles that exist, overlapping indices, files on disk).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from gateway.config import CONFIG_FIELDS
from gateway.diagnostics.fields import section
from gateway.diagnostics.schema import document_schema, schema_json
from gateway.mapping import dnp3 as dnp3_map
from gateway.mapping import iec61850 as iec61850_map
from gateway.northbound.dnp3 import settings as dnp3_settings
from gateway.northbound.iec61850 import settings as iec61850_settings
from gateway.northbound.mqtt import settings as mqtt_settings
from gateway.northbound.web import settings as web_settings


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a site config (`gateway.yaml`), northbound sections included."""
    northbound = section(
        CONFIG_FIELDS["northbound"].description,
        {
            dnp3_settings.SECTION: section("The DNP3 outstation (docs/dnp3.md).", dnp3_settings.FIELDS),
            iec61850_settings.SECTION: section(
                "The IEC 61850 MMS server (docs/iec61850.md).", iec61850_settings.FIELDS
            ),
            web_settings.SECTION: section("The web view and /metrics (docs/web.md).", web_settings.FIELDS),
            mqtt_settings.SECTION: section(
                "The Sparkplug B edge node over MQTT (docs/mqtt.md).", mqtt_settings.FIELDS
            ),
        },
    )
    return document_schema(
        "socgw site config",
        "The site config of socgw (gateway.yaml): nodes, balancer, command, logging, northbound.",
        {**CONFIG_FIELDS, "northbound": northbound},
        required=("nodes",),
    )


def dnp3_map_schema() -> dict[str, Any]:
    """The JSON Schema of a DNP3 point map (`mappings/dnp3/*.yaml`)."""
    return document_schema(
        "socgw DNP3 point map",
        "Which fleet quantity each DNP3 point publishes (see docs/dnp3.md).",
        dnp3_map.TOP_LEVEL_FIELDS,
        required=("map_version", "max_nodes"),
    )


def iec61850_map_schema() -> dict[str, Any]:
    """The JSON Schema of an IEC 61850 map (`mappings/iec61850/*.yaml`)."""
    return document_schema(
        "socgw IEC 61850 map",
        "The logical nodes, datasets and reports the MMS server exposes (see docs/iec61850.md).",
        iec61850_map.TOP_FIELDS,
        required=("map_version", "enums", "attribute_enums", "si_units", "fleet", "pack"),
    )


MAP_SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "dnp3": dnp3_map_schema,
    "iec61850": iec61850_map_schema,
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _schema_action(subparsers, "config", "the site config").set_defaults(
        handler=lambda args: _print(config_schema())
    )
    maps = _schema_action(subparsers, "map", "DNP3 or IEC 61850 maps")
    maps.add_argument("protocol", choices=sorted(MAP_SCHEMAS), help="which maps")
    maps.set_defaults(handler=lambda args: _print(MAP_SCHEMAS[args.protocol]()))


def _schema_action(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], command: str, what: str
) -> argparse.ArgumentParser:
    """`socgw COMMAND schema`: the parser of the `schema` action."""
    parser = subparsers.add_parser(command, help=f"print the JSON Schema of {what} (for editors)")
    actions = parser.add_subparsers(dest=f"{command}_command", metavar="ACTION", required=True)
    return actions.add_parser(
        "schema",
        help=f"print the JSON Schema of {what}",
        description=f"Print the JSON Schema (draft 2020-12) of {what} on standard output.",
    )


def _print(schema: dict[str, Any]) -> int:
    sys.stdout.write(schema_json(schema))
    return 0
