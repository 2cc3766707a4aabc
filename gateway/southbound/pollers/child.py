"""A polling process: `python -m gateway.southbound.pollers.child` (started by `PollerFieldbus`).

It loads the site config from its file, takes the nodes the core names in `connect`, runs their
sessions (`LocalFieldbus`) on its own uvloop and answers the core's messages in order: `poll` sends
each node's state as it arrives (states that arrive together share a packet) and then `done`;
`write` writes the setpoints; `close`, or the end of the channel (the core died), closes the sessions
and ends the process. A `poll` or `write` overtaken by a newer one of its kind while the poller was
busy is skipped: a late poller catches up rather than falling further behind. SIGINT and SIGTERM are
ignored (they reach the whole process group; the core decides when its pollers stop).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import socket
import sys
from typing import Any

import uvloop

from gateway.config import ConfigError, load_config
from gateway.fleet import NodeState
from gateway.logbook import sweep
from gateway.southbound.fieldbus import LocalFieldbus
from gateway.southbound.pollers.wire import (
    MAX_PACKET_BYTES,
    encode_done,
    encode_state,
    encode_states,
)
from gateway.supervision import (
    MessageError,
    SuppressedReport,
    decode_message,
    encode_message,
    start_as_child,
)
from gateway.timing import settle_collector

EXIT_OK = 0
EXIT_FAILED = 1
SUPERSEDED = frozenset({"poll", "write"})  # a newer message of these kinds makes an older one moot

log = logging.getLogger(__name__)


class CoreChannel:
    """The poller's end of its socket: messages from the core in order, packets to it in order (a
    packet the socket cannot take now waits for it, behind the ones before it)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        self._arrived = asyncio.Event()
        self._outbox: collections.deque[bytes] = collections.deque()
        self._loop.add_reader(sock, self._readable)

    def _readable(self) -> None:
        while True:
            try:
                packet = self.sock.recv(MAX_PACKET_BYTES)
            except BlockingIOError:
                break
            except OSError:
                packet = b""
            if not packet:  # the core closed the channel (or died): stop
                self._loop.remove_reader(self.sock)
                self._inbox.append({"kind": "close"})
                break
            try:
                self._inbox.append(decode_message(packet))
            except MessageError as error:
                log.error("unexpected message from the gateway core: %s", error)
        self._arrived.set()

    async def next_message(self) -> dict[str, Any]:
        """The next message still worth doing: a poll or write with a newer one behind it is skipped."""
        while True:
            while not self._inbox:
                self._arrived.clear()
                await self._arrived.wait()
            message = self._inbox.popleft()
            kind = message["kind"]
            if kind not in SUPERSEDED or not any(later["kind"] == kind for later in self._inbox):
                return message

    def send(self, packet: bytes) -> None:
        if not self._outbox:
            try:
                self.sock.send(packet)
                return
            except BlockingIOError:
                self._loop.add_writer(self.sock, self._writable)
            except OSError:
                return  # the core is gone: `next_message` says close
        self._outbox.append(packet)

    def send_json(self, message: dict[str, Any]) -> bool:
        self.send(encode_message(message))
        return True  # queued behind the packets before it when the socket is full

    def _writable(self) -> None:
        while self._outbox:
            try:
                self.sock.send(self._outbox[0])
            except BlockingIOError:
                return
            except OSError:
                self._outbox.clear()
                break
            self._outbox.popleft()
        self._loop.remove_writer(self.sock)


async def poll_once(fieldbus: LocalFieldbus, channel: CoreChannel, cycle: int, now: float) -> None:
    """Each node's state to the core as it arrives, then `done` with the writes so far."""
    index_of = {node_id: index for index, node_id in enumerate(fieldbus.node_ids)}
    loop = asyncio.get_running_loop()
    batch: list[bytes] = []

    def flush() -> None:
        for packet in encode_states(cycle, batch):
            channel.send(packet)
        batch.clear()

    def arrived(state: NodeState) -> None:
        if not batch:  # the states that arrive in this turn of the loop go in one packet
            loop.call_soon(flush)
        batch.append(encode_state(index_of[state.node_id], state))

    await fieldbus.poll(now, arrived)
    flush()
    writes = fieldbus.writes_total()
    channel.send(encode_done(cycle, [writes[node_id] for node_id in fieldbus.node_ids]))


async def serve(config_path: str, sock: socket.socket) -> int:
    channel = CoreChannel(sock)
    first = await channel.next_message()
    if first["kind"] != "connect":
        return EXIT_OK  # closed before it started
    node_ids = first.get("nodes")
    try:
        site = load_config(config_path)
    except (ConfigError, OSError) as error:
        channel.send_json({"kind": "failed", "message": f"the site config does not load now: {error}"})
        return EXIT_FAILED
    logging.getLogger().setLevel(site.logging.level.upper())
    nodes = {node.node_id: node for node in site.nodes}
    missing = [node_id for node_id in node_ids or [] if node_id not in nodes]
    if not isinstance(node_ids, list) or missing:
        channel.send_json({"kind": "failed", "message": f"node(s) no longer in the config: {missing}"})
        return EXIT_FAILED
    fieldbus = LocalFieldbus.from_config(site, [nodes[node_id] for node_id in node_ids])
    failures = await fieldbus.connect(float(first["now"]))
    settle_collector()
    channel.send_json({"kind": "connected", "failures": dict(failures)})
    suppressed = SuppressedReport()
    try:
        while True:
            message = await channel.next_message()
            kind = message["kind"]
            if kind == "poll":
                await poll_once(fieldbus, channel, int(message["cycle"]), float(message["now"]))
                sweep()  # what the engine does each cycle for its own rate-limited lines
                suppressed.send(channel.send_json)
            elif kind == "write":
                await fieldbus.write(message["setpoints"], float(message["now"]))
            elif kind == "close":
                break
    finally:
        await fieldbus.close()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one share of the site's nodes, polled for the socgw core")
    parser.add_argument("--config", required=True, help="the site config file")
    parser.add_argument("--channel-fd", type=int, required=True)
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.channel_fd)

    def forward(message: dict[str, Any]) -> None:
        try:
            sock.send(encode_message(message), socket.MSG_DONTWAIT)
        except OSError:  # full or closed: a log line is never worth blocking the poll
            return

    start_as_child(forward)
    return uvloop.run(serve(args.config, sock))


if __name__ == "__main__":
    sys.exit(main())
