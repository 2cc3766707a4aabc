"""An adapter's child process: `python -m gateway.northbound.process.child` (started by the supervisor).

It loads the site config from its file, builds the one adapter of its `northbound:` section with the
package's `create`, starts it, says `ready` (or `failed`, with the reason) and then publishes every
frame the core sends (each node update as it comes, then the cycle's snapshot), until the core closes
the channel. SIGINT and SIGTERM are ignored: a
Ctrl-C or systemd's stop reaches the whole process group, and the core must decide when its adapters
stop (after the last cycle). If the core dies, the channel closes and the child stops too.

Commands from the protocol stack's threads go to the core and wait at most `ANSWER_TIMEOUT_S` for the
answer: a core that does not answer in time means a refusal, never a stack thread that hangs. Every log
record goes to the core, which writes it with its own (one journal stream for the service).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import socket
import sys
import threading
from typing import Any

import uvloop

from gateway import logbook
from gateway.config import ConfigError, load_config
from gateway.northbound.adapter import NodeUpdate, NorthboundAdapter, NorthboundError
from gateway.northbound.frontdoor.door import FrontDoor, build
from gateway.northbound.process.channel import (
    FRAME_HEADER,
    MAX_MESSAGE_BYTES,
    SNAPSHOT,
    ChannelError,
    decode_frame,
    update_to_json,
)
from gateway.northbound.registry import create_adapter, door_plan
from gateway.site_command import CommandUpdate
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
ANSWER_TIMEOUT_S = 0.1  # the core answers from a thread of its own, in microseconds when healthy

log = logging.getLogger(__name__)


class _Answer:
    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.refusal: str | None = None


class CoreLink:
    """The child's end of the message socket: commands to the core and their answers, log records."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Answer] = {}
        self._suppressed = SuppressedReport()
        self._reader = threading.Thread(target=self._read_answers, name="core-answers", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def send(self, message: dict[str, Any]) -> bool:
        """Send without waiting: False when the socket is full or closed (the caller reports it)."""
        packet = encode_message(message)
        with self._send_lock:
            try:
                self._sock.send(packet, socket.MSG_DONTWAIT)
            except OSError:
                return False
        return True

    def submit(self, update: CommandUpdate, *, apply: bool = True) -> str | None:
        """The engine's `submit`, across the channel (called from a protocol stack's thread)."""
        answer = _Answer()
        ident = next(self._ids)
        self._waiting[ident] = answer
        try:
            message = {"kind": "submit", "id": ident, "apply": apply, "update": update_to_json(update)}
            if not self.send(message):
                return "the gateway core cannot take commands now (its channel is closed or full)"
            if not answer.arrived.wait(ANSWER_TIMEOUT_S):
                return f"the gateway core did not answer within {ANSWER_TIMEOUT_S * 1000:.0f} ms"
            return answer.refusal
        finally:
            self._waiting.pop(ident, None)

    def report_suppressed(self) -> None:
        """Send the log lines this process suppressed since the last report (the core counts them)."""
        self._suppressed.send(self.send)

    def _read_answers(self) -> None:
        while True:
            try:
                packet = self._sock.recv(MAX_MESSAGE_BYTES)
            except OSError:
                return
            if not packet:
                return  # the core closed the channel
            try:
                message = decode_message(packet)
                ident, refusal = message["id"], message["refusal"]
                if not isinstance(ident, int) or not (refusal is None or isinstance(refusal, str)):
                    raise ChannelError(f"malformed answer {message!r}")
            except (MessageError, KeyError) as error:
                log.error("unexpected message from the gateway core: %s", error)
                continue
            answer = self._waiting.get(ident)
            if answer is not None:  # else it came after the timeout: the stack already had its reply
                answer.refusal = refusal
                answer.arrived.set()


async def publish_until_closed(
    adapter: NorthboundAdapter, snapshots: socket.socket, link: CoreLink, door: FrontDoor | None = None
) -> int:
    """Start the adapter (and its front door), then publish every frame until the core closes the
    channel; stop them."""
    try:
        adapter.start()
        if door is not None:
            await door.open()
    except Exception as error:
        if isinstance(error, NorthboundError):  # a port in use, a bad TLS file: the message says which
            reason = str(error)
        else:  # a bug: said once, with its trace in the log, never a silent exit
            log.exception("northbound %s could not start", adapter.name)
            reason = f"could not start ({type(error).__name__}: {error})"
        link.send({"kind": "failed", "message": reason})
        adapter.stop()
        return EXIT_FAILED
    # Its stack and point tables live as long as the process; each frame's objects die young.
    settle_collector()
    try:
        link.send({"kind": "ready"})
        reader, writer = await asyncio.open_unix_connection(sock=snapshots)
        while True:
            try:
                length, kind = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
                body = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                break  # the core closed the channel: stop
            try:
                content = decode_frame(kind, body)
                if isinstance(content, NodeUpdate):
                    adapter.publish_nodes(content)
                else:
                    adapter.publish(content)
            except Exception:  # one bad frame must not end the adapter: the next snapshot supersedes it
                log.exception("northbound %s: publish failed", adapter.name)
            if kind == SNAPSHOT:  # once a cycle, what the core's engine does for its own rate-limited logs
                logbook.sweep()
                link.report_suppressed()
            if door is not None and (counts := door.new_counts()):
                link.send({"kind": "door", "counts": counts})
        writer.close()
    finally:
        if door is not None:
            await door.close()
        adapter.stop()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one northbound adapter, fed by the socgw core")
    parser.add_argument("--config", required=True, help="the site config file")
    parser.add_argument("--section", required=True, help="the northbound section this process serves")
    parser.add_argument("--snapshots-fd", type=int, required=True)
    parser.add_argument("--messages-fd", type=int, required=True)
    args = parser.parse_args(argv)
    snapshots = socket.socket(fileno=args.snapshots_fd)
    link = CoreLink(socket.socket(fileno=args.messages_fd))
    link.start()
    start_as_child(link.send)
    try:
        site = load_config(args.config)
        plan = door_plan(site, args.section)
    except (ConfigError, OSError) as error:
        link.send({"kind": "failed", "message": f"the site config does not load now: {error}"})
        return EXIT_FAILED
    try:  # the public port is bound first: the stack behind the door listens on a private one
        door = None if plan is None else build(plan)
        adapter = create_adapter(site, args.section, link.submit, None if door is None else door.private)
        if door is not None:  # an adapter that names each session's peer learns it from the door
            door.on_session = getattr(adapter, "door_peer", None)
            door_names = getattr(adapter, "door_names", None)
            if door_names is not None:
                door_names(door.client_behind)
    except NorthboundError as error:
        link.send({"kind": "failed", "message": str(error)})
        return EXIT_FAILED
    if adapter is None:
        link.send({"kind": "failed", "message": f"northbound.{args.section} is no longer configured"})
        return EXIT_FAILED
    logging.getLogger().setLevel(site.logging.level.upper())
    return uvloop.run(publish_until_closed(adapter, snapshots, link, door))


if __name__ == "__main__":
    sys.exit(main())
