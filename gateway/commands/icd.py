"""`socgw icd`: the SCL ICD file of the IEC 61850 server, for the SCADA engineer's configuration tool."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.commands.run import DEFAULT_CONFIG, config_missing, report_problems, write_output
from gateway.config import ConfigError, load_config
from gateway.northbound.iec61850.settings import load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "icd",
        help="write the SCL ICD file describing the IEC 61850 server",
        description=(
            "Write the SCL ICD file (IED, logical devices, datasets, report control blocks and "
            "DataTypeTemplates) describing exactly the model `socgw run` serves over MMS for this config."
        ),
    )
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="site config file")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if config_missing(args.config, "icd"):
        return EXIT_BAD_CONFIG
    try:
        loaded = load_settings(load_config(args.config))
    except ConfigError as error:
        report_problems(error, "icd", args.config)
        return EXIT_BAD_CONFIG
    if loaded is None:
        print(
            f"socgw icd: {args.config} has no enabled `northbound.iec61850` section: there is no IEC 61850 "
            "server to describe",
            file=sys.stderr,
        )
        return EXIT_FAILED
    settings, plan = loaded
    # libiec61850 loads only for this command (and when the server starts).
    from gateway.northbound.iec61850.model import BuiltModel
    from gateway.northbound.iec61850.scl import icd_text

    built = BuiltModel(plan)
    try:
        text = icd_text(built, tls=settings.tls is not None)
    finally:
        built.destroy()
    if not write_output(text, args.output, "icd"):
        return EXIT_FAILED
    if args.output is None:
        return EXIT_OK
    devices = len(plan.devices)
    print(
        f"socgw icd: wrote {args.output} (IED {plan.ied_name}, {devices} logical "
        f"device{'' if devices == 1 else 's'}, "
        f"map {settings.map_path} {plan.iec_map.map_version})",
        file=sys.stderr,
    )
    return EXIT_OK
