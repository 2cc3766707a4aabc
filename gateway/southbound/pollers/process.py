"""The core's side of one polling process: start it, talk to it, restart it whenever it ends.

The process gets one end of a SOCK_SEQPACKET socket pair and its share of the nodes in `connect`; it
is `running` once it says `connected`. Its packets are read on the core's loop as they come: states
and `done` go to the fieldbus (`on_packet`), log records are written with the core's handlers. An
exit is seen at once (a pidfd), logged once with its status or signal, and the process is started
again after a capped exponential backoff (`gateway.supervision`); its nodes are failed meanwhile by
the fieldbus, which polls the other processes as before.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, Final

from gateway.logbook import RateLimitedLog, emit_to
from gateway.southbound.pollers.wire import (
    JSON_KIND,
    MAX_PACKET_BYTES,
    WireError,
)
from gateway.supervision import (
    MessageError,
    count_forwarded_suppressed,
    decode_message,
    encode_message,
    start_child,
    stop_within,
    supervise,
    supervised_status,
    write_forwarded_log,
)

log = logging.getLogger(__name__)

CHILD_MODULE: Final = "gateway.southbound.pollers.child"
STOP_TIMEOUT_S: Final = 5.0  # after `close`, then SIGKILL


class PollerProcess:
    """Poller `number` (from 1), polling `node_ids`; `on_packet` gets its binary packets (states, done)."""

    def __init__(
        self,
        number: int,
        node_ids: tuple[str, ...],
        config_path: str,
        on_packet: Callable[[PollerProcess, bytes], None],
    ) -> None:
        self.number = number
        self.node_ids = node_ids
        self.config_path = config_path
        self._on_packet = on_packet
        self.state = "stopped"  # starting, running, restarting, stopped
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.missed = 0  # cycles whose poll it did not finish in time
        self.connected: asyncio.Future[dict[str, str]] | None = None  # why nodes are not ready yet
        self._sock: socket.socket | None = None
        self._supervising: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._down_since: float | None = None
        self._bad_packets = RateLimitedLog(emit_to(log))

    @property
    def name(self) -> str:
        return f"poller {self.number}"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        """Start the process (`connected` says when its nodes are connected) and watch it."""
        self._supervising = asyncio.get_running_loop().create_task(self._supervise(self._spawn()))

    def send(self, message: dict[str, Any]) -> bool:
        """Send without waiting: False when the channel is full (a hung poller) or closed."""
        if self._sock is None:
            return False
        try:
            self._sock.send(encode_message(message))
        except OSError:
            return False
        return True

    async def stop(self) -> None:
        """Ask the process to close its sessions and end (after the writes sent before); SIGKILL it after
        STOP_TIMEOUT_S."""
        self._stopping.set()
        self.send({"kind": "close"})
        task = self._supervising
        if task is None:
            return
        await stop_within(self, task, STOP_TIMEOUT_S, self.name)

    def status(self) -> dict[str, Any]:
        return {
            "poller": self.number,
            **supervised_status(self),
            "nodes": len(self.node_ids),
            "missed_cycles": self.missed,
        }

    # --- supervision --------------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        core_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        arguments = ["--config", self.config_path, "--channel-fd", str(child_end.fileno())]
        try:
            process = start_child(CHILD_MODULE, arguments, [child_end])
        except BaseException:
            core_end.close()
            raise
        self.pid = process.pid
        self.state = "starting"
        core_end.setblocking(False)
        self._sock = core_end
        loop = asyncio.get_running_loop()
        loop.add_reader(core_end, self._readable)
        self.connected = loop.create_future()
        self.send({"kind": "connect", "nodes": list(self.node_ids), "now": time.monotonic()})
        return process

    def _close_channel(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock)
            self._sock.close()
            self._sock = None

    async def _supervise(self, process: subprocess.Popen[bytes]) -> None:
        await supervise(
            self,
            process,
            stopping=self._stopping,
            spawn=self._spawn,
            ended=self._ended,
            say_restart=self._say_restart,
        )

    async def _ended(self, pid: int, reason: str) -> bool:
        if self._sock is not None:
            self._readable()  # its last packets (a log line with the cause) are handled first
        self._close_channel()
        self._settle(f"the polling process {reason} before its nodes were connected")
        if self._stopping.is_set():
            log.info("%s (pid %d) stopped: %s", self.name, pid, reason)
            return True
        self._down_since = time.monotonic()
        return False

    def _say_restart(self, pid: int, delay: float) -> None:
        log.error(
            "%s (pid %d, %d nodes) %s: its nodes are failed (E_POLLER_DOWN) until it is back; "
            "restarting it in %.1f s (restart %d)",
            self.name,
            pid,
            len(self.node_ids),
            self.last_exit,
            delay,
            self.restarts,
        )

    def _settle(self, failure: str) -> None:
        """End the wait for `connected` (with every node failing for `failure` if it never came)."""
        if self.connected is not None and not self.connected.done():
            self.connected.set_result(dict.fromkeys(self.node_ids, failure))

    # --- its packets (on the loop) ------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                packet = sock.recv(MAX_PACKET_BYTES)
            except BlockingIOError:
                return
            except OSError:
                packet = b""
            if not packet:  # the process ended: its exit is handled by `_supervise`
                asyncio.get_running_loop().remove_reader(sock)
                return
            try:
                if packet[:1] == JSON_KIND:
                    self._handle(decode_message(packet))
                else:
                    self._on_packet(self, packet)
            except MessageError as error:
                self._bad_packets.log(self.name, logging.WARNING, f"{self.name} sent a bad packet: {error}")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "log":
            if not write_forwarded_log(message):
                raise WireError(f"malformed log record {message!r}")
        elif kind == "suppressed":
            if not count_forwarded_suppressed(message):
                raise WireError(f"malformed suppressed-lines report {message!r}")
        elif kind == "connected":
            failures = message.get("failures")
            if not isinstance(failures, dict) or not all(
                node_id in self.node_ids and isinstance(reason, str) for node_id, reason in failures.items()
            ):
                raise WireError(f"malformed connect report {message!r}")
            self.state = "running"
            if self.connected is not None and not self.connected.done():
                self.connected.set_result(failures)
            if self._down_since is not None:
                log.warning(
                    "%s polling again (pid %s) %.2f s after its process ended",
                    self.name,
                    self.pid,
                    time.monotonic() - self._down_since,
                )
                self._down_since = None
        elif kind == "failed":
            text = message.get("message")
            log.error("%s (pid %s) cannot poll: %s", self.name, self.pid, text)
            self._settle(f"{self.name} cannot poll: {text}")
        else:
            raise WireError(f"unknown message kind {kind!r}")
