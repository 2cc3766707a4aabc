"""Clients of the front door tests, run as a process of their own (`ip netns exec NS python -m
tests.northbound.frontdoor.peers ...` puts them in a client namespace); each prints one JSON document.

    dnp3 HOST PORT [--hold S]   a dnp3py master: integrity poll (then polls every 0.5 s for S seconds)
    silent HOST PORT COUNT S    COUNT connections that send nothing; how many the server closed within S
    probe HOST PORT PROTOCOL    connect, send the protocol's valid first frame; the bytes answered in 2 s
    echo PORT [PORT ...]        a server on every address that echoes what it gets (until killed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from typing import Any

import uvloop
from dnp3.core.crc import append_crc

from tests.northbound.dnp3.support import connected_master

FIRST_FRAMES = {
    "dnp3": append_crc(bytes.fromhex("056405c90a000100")),  # REQUEST_LINK_STATUS, master 1 -> 10
    "iec61850": bytes.fromhex("0300001611e00000000100c0010dc2020001c1020001"),  # COTP CR
}
AI_BATTERIES = 27  # the default map's analog input: number of batteries


async def dnp3_master(host: str, port: int, hold_s: float) -> dict[str, Any]:
    polls = 0
    try:
        async with connected_master(port, host=host, timeout_s=3.0) as master:
            await master.integrity_poll()
            polls += 1
            batteries = master.handler.analog_inputs[AI_BATTERIES].value
            deadline = time.monotonic() + hold_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                await master.integrity_poll()
                polls += 1
    except Exception as error:  # the test reads what went wrong
        return {"error": f"{type(error).__name__}: {error}", "polls": polls}
    return {"batteries": batteries, "polls": polls}


def silent(host: str, port: int, count: int, seconds: float) -> dict[str, Any]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=2.0)
        sockets.append(sock)
    opened = time.monotonic()
    closed: dict[int, float] = {}
    while len(closed) < count and time.monotonic() - opened < seconds:
        for index, sock in enumerate(sockets):
            if index in closed:
                continue
            sock.settimeout(0.01)
            try:
                if sock.recv(1) == b"":
                    closed[index] = time.monotonic() - opened
            except TimeoutError:
                continue
            except OSError:
                closed[index] = time.monotonic() - opened
    for sock in sockets:
        sock.close()
    return {"opened": count, "closed": len(closed), "first_closed_s": min(closed.values(), default=None)}


def probe(host: str, port: int, protocol: str) -> dict[str, Any]:
    try:
        sock = socket.create_connection((host, port), timeout=2.0)
    except OSError as error:
        return {"connected": False, "error": str(error), "answer": 0}
    answer = b""
    with sock:
        try:
            sock.sendall(FIRST_FRAMES[protocol])
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:
            pass
    return {"connected": True, "answer": len(answer)}


async def echo(ports: list[int]) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(answer, "0.0.0.0", port) for port in ports]
    print(json.dumps({"listening": ports}), flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    dnp3 = commands.add_parser("dnp3")
    dnp3.add_argument("host")
    dnp3.add_argument("port", type=int)
    dnp3.add_argument("--hold", type=float, default=0.0)
    quiet = commands.add_parser("silent")
    quiet.add_argument("host")
    quiet.add_argument("port", type=int)
    quiet.add_argument("count", type=int)
    quiet.add_argument("seconds", type=float)
    first = commands.add_parser("probe")
    first.add_argument("host")
    first.add_argument("port", type=int)
    first.add_argument("protocol", choices=sorted(FIRST_FRAMES))
    server = commands.add_parser("echo")
    server.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args()
    if args.command == "echo":
        uvloop.run(echo(args.ports))
        return
    if args.command == "dnp3":
        result = uvloop.run(asyncio.wait_for(dnp3_master(args.host, args.port, args.hold), 60))
    elif args.command == "silent":
        result = silent(args.host, args.port, args.count, args.seconds)
    else:
        result = probe(args.host, args.port, args.protocol)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
