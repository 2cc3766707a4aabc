"""The independent MMS client (PyPI `iec61850`, a Rust implementation), run by the tests in its own process.

    python tests/northbound/iec61850/rust_client.py --port 10102 browse
    python tests/northbound/iec61850/rust_client.py --port 10102 read SOCGWFLEET/ZBAT1.Soc.mag.f MX ...

Prints one JSON document on stdout. The first request of a fresh connection is retried (bounded), as
with the libiec61850 client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import iec61850
from iec61850 import AcsiClass

FIRST_REQUEST_ATTEMPTS = 5
TIMEOUT_MS = 5000


async def connect(host: str, port: int) -> tuple[Any, list[str]]:
    connection = await iec61850.IedConnection.connect(f"{host}:{port}", timeout_ms=TIMEOUT_MS)
    for attempt in range(FIRST_REQUEST_ATTEMPTS):
        try:
            devices = await connection.get_server_directory()
        except iec61850.IedError:
            if attempt == FIRST_REQUEST_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.1)
        else:
            return connection, list(devices)
    raise AssertionError("unreachable")


async def browse(connection: Any, devices: Sequence[str]) -> dict[str, Any]:
    """Logical nodes and their data objects per device; datasets and report blocks of each LLN0."""
    model: dict[str, dict[str, list[str]]] = {}
    blocks: dict[str, dict[str, list[str]]] = {}
    for device in devices:
        nodes = await connection.get_logical_device_directory(device)
        model[device] = {}
        for node in nodes:
            objects = await connection.get_logical_node_directory(f"{device}/{node}", AcsiClass.DATA_OBJECT)
            model[device][node] = list(objects)
        blocks[device] = {
            kind.value: list(await connection.get_logical_node_directory(f"{device}/LLN0", kind))
            for kind in (AcsiClass.DATASET, AcsiClass.BUFFERED_REPORT, AcsiClass.REPORT)
        }
    return {"devices": model, "blocks": blocks}


async def read(connection: Any, targets: Sequence[str]) -> dict[str, Any]:
    values = []
    for reference, fc in zip(targets[::2], targets[1::2], strict=True):
        values.append(await connection.read(reference, iec61850.FC(fc)))
    return {"values": values}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    connection, devices = await connect(args.host, args.port)
    try:
        if args.command == "browse":
            return await browse(connection, devices)
        return await read(connection, args.targets)
    finally:
        await connection.disconnect()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("browse")
    read_parser = commands.add_parser("read")
    read_parser.add_argument("targets", nargs="+", help="REFERENCE FC pairs")
    args = parser.parse_args(argv)
    try:
        document = asyncio.run(run(args))
    except iec61850.IedError as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        return 1
    print(json.dumps(document, default=_bytes_as_hex), flush=True)
    return 0


def _bytes_as_hex(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON")


if __name__ == "__main__":
    sys.exit(main())
