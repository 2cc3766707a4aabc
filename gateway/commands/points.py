"""`socgw points --dnp3|--mqtt [--format md|csv] -c CONFIG`: the device profile a SCADA engineer imports.

DNP3: one row per point the outstation serves for this site's map and fleet: index, type, name,
description, scale, unit, class, deadband (and what a write may be, for outputs), exactly as the running
gateway publishes them. MQTT: one row per Sparkplug B metric, with its topic (the node's, or each pack's
device topic), datatype, unit, engineering range, deadband and the command that writes it.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.commands.run import DEFAULT_CONFIG, config_missing, report_problems
from gateway.config import ConfigError, load_config
from gateway.mapping.controls import Target
from gateway.mapping.dnp3 import Dnp3Map, PointType, ResolvedPoint
from gateway.mapping.sources import FLEET_SOURCES, NODE_SOURCES
from gateway.northbound.dnp3.settings import Dnp3Settings, parse_settings
from gateway.northbound.mqtt import settings as mqtt_settings
from gateway.northbound.mqtt.metrics import BD_SEQ, REBIRTH, MetricSpec, metric_table, quantity_deadbands
from gateway.northbound.section import config_dir

EXIT_OK = 0
EXIT_BAD_CONFIG = 2
COLUMNS = ("index", "type", "name", "description", "scale", "unit", "class", "deadband", "write")
MQTT_COLUMNS = ("topic", "metric", "datatype", "unit", "range", "deadband", "write", "description")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "points",
        help="print the point list (device profile) a SCADA master imports",
        description="Print every point the northbound protocol serves for this site: index, type, name, "
        "description, scale, unit, event class and deadband.",
    )
    protocol = parser.add_mutually_exclusive_group(required=True)
    protocol.add_argument("--dnp3", action="store_true", help="the DNP3 outstation's points")
    protocol.add_argument(
        "--mqtt", action="store_true", help="the Sparkplug B edge node's topics and metrics"
    )
    parser.add_argument("--format", choices=("md", "csv"), default="md", help="Markdown (default) or CSV")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="site config file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if config_missing(args.config, "points"):
        return EXIT_BAD_CONFIG
    if args.mqtt:
        return _run_mqtt(args)
    try:
        site = load_config(args.config)
        parsed = parse_settings(site)
    except ConfigError as error:
        report_problems(error, "points", args.config)
        return EXIT_BAD_CONFIG
    if parsed is None:
        print(
            f"socgw points: {args.config} serves no DNP3: add `northbound: {{dnp3: {{}}}}` "
            "(see docs/dnp3.md)",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    settings, dnp3_map = parsed
    points = dnp3_map.expand([pack.node_id for pack in site.served_packs])
    rows = [_row(point) for point in points]
    if args.format == "csv":
        sys.stdout.write(_csv(COLUMNS, rows))
    else:
        sys.stdout.write(_markdown(site.name, settings, dnp3_map, len(site.served_packs), rows))
    return EXIT_OK


def _run_mqtt(args: argparse.Namespace) -> int:
    try:
        site = load_config(args.config)
        settings = mqtt_settings.parse_settings(site)
    except ConfigError as error:
        report_problems(error, "points", args.config)
        return EXIT_BAD_CONFIG
    if settings is None:
        print(
            f"socgw points: {args.config} publishes no MQTT: add `northbound: {{mqtt: {{}}}}` "
            "(see docs/mqtt.md)",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    table = metric_table(quantity_deadbands(config_dir(site)))
    base = f"spBv1.0/{settings.group_id}/{{}}/{settings.edge_node_id}"
    birth = base.format("NBIRTH")
    rows: list[tuple[str, ...]] = [
        (birth, BD_SEQ, "Int64", "", "0..255", "", "", "this connection's Will (NDEATH) bdSeq"),
        (birth, REBIRTH, "Boolean", "", "", "", "NCMD true", "publish every birth again"),
    ]
    rows += [_mqtt_row(base.format("NBIRTH|NDATA"), spec, "NCMD") for spec in table.node]
    devices = base.format("DBIRTH|DDATA|DDEATH") + "/<pack id>"
    rows += [_mqtt_row(devices, spec, "DCMD") for spec in table.device]
    if args.format == "csv":
        sys.stdout.write(_csv(MQTT_COLUMNS, rows))
        return EXIT_OK
    link = "MQTTS (mutual TLS, TLS 1.2 minimum)" if settings.tls is not None else "MQTT (plain TCP)"
    brokers = ", ".join(f"{broker.host}:{broker.port}" for broker in settings.brokers)
    lines = [
        f"# Sparkplug B 3.0 edge node: {site.name}",
        "",
        f"- Group `{settings.group_id}`, edge node `{settings.edge_node_id}`, client id "
        f"`{settings.client_id}`; {link} to {brokers} (in turn).",
        f"- Devices: one per pack ({', '.join(p.node_id for p in site.served_packs) or 'none configured'}).",
        f"- Primary host: {settings.primary_host_id or 'none (births at once)'}.",
        "- NBIRTH/DBIRTH carry every metric with `engUnit`, `engLow`, `engHigh` properties; NDATA/DDATA only "
        "what moved beyond its deadband (or changed quality: a `Quality` property, 64 stale, 0 bad).",
        "",
        *_table(MQTT_COLUMNS, rows),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _mqtt_row(topic: str, spec: MetricSpec, command: str) -> tuple[str, ...]:
    sources = FLEET_SOURCES if spec.source.startswith("fleet.") else NODE_SOURCES
    description = sources[spec.source].description if spec.source in sources else "this cycle's work"
    span = f"{spec.low:g}..{spec.high:g}" if spec.low is not None and spec.high is not None else ""
    return (
        topic, spec.name, spec.datatype.name.title(), spec.unit, span,
        f"{spec.deadband:g}" if spec.deadband else "", command if spec.control is not None else "",
        description,
    )  # fmt: skip


def _write_text(point: ResolvedPoint) -> str:
    spec = point.spec
    if not point.type.output:
        return ""
    if spec.command is None:
        return "read-only (NOT_SUPPORTED)"
    if spec.command is Target.REQUEST_W:
        low = "" if spec.minimum is None else str(spec.minimum)
        high = "" if spec.maximum is None else str(spec.maximum)
        bounds = f"{low}..{high}, " if low or high else ""
        return f"{bounds}within ± rated power"
    if spec.command in (Target.RESERVE_PCT, Target.CEILING_PCT):
        return f"{spec.minimum}..{spec.maximum}, reserve + hysteresis < ceiling"
    return "latch on / latch off (or close / trip)"


def _row(point: ResolvedPoint) -> tuple[str, ...]:
    spec = point.spec
    analog = point.type.analog
    return (
        str(point.index),
        point.type.short,
        point.name,
        point.description,
        spec.scale_text() if analog else "",
        spec.unit,
        str(spec.event_class),
        str(spec.deadband) if analog else "",
        _write_text(point),
    )


def _csv(columns: Sequence[str], rows: Sequence[tuple[str, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(columns: Sequence[str], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """A Markdown table: the header, its rule and one line per row."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
        *("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows),
    ]


def _markdown(
    site_name: str, settings: Dnp3Settings, dnp3_map: Dnp3Map, nodes: int, rows: Sequence[tuple[str, ...]]
) -> str:
    link = "mutual TLS" if settings.tls is not None else "TCP"
    rated = (
        f"{settings.rated_power_w:.0f} W (configured)"
        if settings.rated_power_w is not None
        else "learned at run time: the sum of each pack's highest reported discharge limit (AI32)"
    )
    buffers = settings.event_buffer
    counts = {point_type: sum(1 for row in rows if row[1] == point_type.short) for point_type in PointType}
    lines = [
        f"# DNP3 device profile: {site_name}",
        "",
        f"- Outstation link address {settings.outstation_address}, master {settings.master_address}; "
        f"{link} on {settings.host}:{settings.port}; unsolicited responses "
        f"{'allowed' if settings.unsolicited else 'off'}.",
        f"- Map `{dnp3_map.path}` version {dnp3_map.version}: {dnp3_map.description}",
        f"- {nodes} node(s), node n = n-th entry of `nodes:` (room for {dnp3_map.max_nodes}); "
        + ", ".join(f"{count} {point_type.short}" for point_type, count in counts.items()),
        f"- Rated power behind `0.1 % of rated power`: {rated}.",
        "- Analogs are 32-bit integer counts: engineering value = count × scale. Deadbands are in counts; "
        "an event when a count moved by more than its deadband since its last event, or its flags changed.",
        "- Static variations g30v1, g1v2, g40v1, g10v2; events g32v1, g2v1, g42v1, g11v1, all in Class 1 "
        "(class 0: no events). Read g32v3 / g2v2 explicitly for time-tagged events.",
        f"- Event buffers: {buffers.binary} binary, {buffers.analog} analog, {buffers.binary_output_status} "
        f"binary output status, {buffers.analog_output_status} analog output status events.",
        "- Indices below the highest one that are not listed exist (the stack allocates them) and always "
        "report value 0 with the RESTART flag only.",
        "",
        *_table(COLUMNS, rows),
    ]
    return "\n".join(lines) + "\n"
