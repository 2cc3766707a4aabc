"""The core's side of the adapter processes: start them, feed them, answer them, restart them.

Each configured `northbound:` section gets one `AdapterProcess`. During the poll the engine calls
`node_arrived` with each node's state as its poll answers; the states that arrive together go out
as one NODES frame, pickled once and offered to every child, so SCADA sees a pack's values one poll
plus a few milliseconds after they changed: the first frame once the loop has handled the answers it
read with the first one, each later frame at least `NODE_BATCH_S` after the one before.
The engine then calls `publish` once per cycle: the snapshot is pickled once and offered to every
child. A child still busy gets what waits for it when it is ready, the newest snapshot and the node
frames offered after it: whatever waited before a newer snapshot is dropped (the snapshot carries
every node's newest state), so the core never waits and never holds more than one cycle's frames for
a child. Commands from a child are answered by a thread of its own that calls the engine's thread-safe
`submit`, never by the loop, which may be mid-cycle. A child that exits is noticed at once (a pidfd
on the loop), logged once with its exit status or signal, and started again after a capped
exponential backoff; the new child gets the latest snapshot as its first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import socket
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, Final

from gateway.fleet import NodeState
from gateway.northbound.adapter import CORE_PID_VARIABLE, NorthboundError, Submit
from gateway.northbound.process.channel import (
    MAX_MESSAGE_BYTES,
    ChannelError,
    encode_nodes,
    encode_snapshot,
    update_from_json,
)
from gateway.snapshot import CycleSnapshot
from gateway.supervision import (
    MessageError,
    child_environment,
    count_forwarded_suppressed,
    decode_message,
    encode_message,
    message_counts,
    start_child,
    stop_within,
    supervise,
    supervised_status,
    write_forwarded_log,
)

log = logging.getLogger(__name__)

CHILD_MODULE: Final = "gateway.northbound.process.child"
START_TIMEOUT_S: Final = 60.0  # a first start that takes longer fails `socgw run`
STOP_TIMEOUT_S: Final = 10.0  # then SIGKILL
# The least time between two NODES frames: each frame is a system call per child and a wake-up of each
# child and its stack (a DNP3 unsolicited response, an IEC 61850 report), so a long poll (many packs, a
# loaded loop) makes at most one frame per NODE_BATCH_S, and no answer waits longer than that for its
# frame. (bench.freshness measured it against batches of 5, 10, 20, 40 ms after the first answer: a
# pack answering late in a long poll waited tens of ms; see docs/architecture.md.)
NODE_BATCH_S: Final = 0.005
# A frame goes at once when it holds this many states: the loop may read hundreds of answers in one
# turn (about 10 ms of work at 500 packs), and the first of them need not wait for the last.
NODE_FRAME_STATES: Final = 64
ANSWERING_JOIN_S: Final = 2.0  # a dead child's queued messages take microseconds to handle


class FrameFeed:
    """One child's frame socket: the newest snapshot and the node frames offered after it, in order.

    `send` is tried at once (a frame the socket takes whole costs one system call, no task); the rest
    waits for the socket on a task of the loop. A snapshot drops what still waits before it, so a slow
    child holds the core to one cycle's frames at most, and loses no value: the snapshot has them all."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._waiting: deque[bytes] = deque()
        self._partial: memoryview | None = None  # the rest of a frame the socket took in part
        self._task: asyncio.Task[None] | None = None

    def offer_snapshot(self, frame: bytes) -> None:
        self._waiting.clear()
        self._offer(frame)

    def offer_nodes(self, frame: bytes) -> None:
        self._offer(frame)

    def _offer(self, frame: bytes) -> None:
        self._waiting.append(frame)
        if self._task is not None and not self._task.done():
            return  # the task sends it in turn
        try:
            while self._waiting or self._partial is not None:
                if self._partial is None:
                    self._partial = memoryview(self._waiting.popleft())
                sent = self.sock.send(self._partial)
                self._partial = self._partial[sent:] if sent < len(self._partial) else None
        except BlockingIOError:
            self._task = asyncio.get_running_loop().create_task(self._send())
        except OSError:  # the child is gone: its exit is handled by the supervisor
            self._waiting.clear()
            self._partial = None

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):  # the child is gone: its exit is handled by the supervisor
            while self._waiting or self._partial is not None:
                if self._partial is None:
                    self._partial = memoryview(self._waiting.popleft())
                await loop.sock_sendall(self.sock, self._partial)
                self._partial = None

    def finish(self) -> None:
        """End the stream (the child stops at its end); a frame still on its way is dropped, so a
        stuck child cannot hold up the stop."""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sock.close()


class AdapterProcess:
    """One `northbound:` section served by a child process, restarted whenever it exits."""

    def __init__(self, section: str, config_path: str, submit: Submit) -> None:
        self.section = section
        self.config_path = config_path
        self._submit = submit
        self.state = "stopped"  # starting, running, restarting, stopped
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.front_door: Counter[str] = Counter()  # connections by outcome, every child of this section
        self._latest: bytes | None = None  # the newest snapshot frame: a new child's first
        self._feed: FrameFeed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_start: asyncio.Future[str | None] | None = None
        self._supervising: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._down_since: float | None = None
        self._answering: threading.Thread | None = None
        self._served = False  # a child has served once: from then on an exit means a restart

    # --- life cycle (on the loop) -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the child and wait until its adapter serves; NorthboundError says why it cannot."""
        self._loop = asyncio.get_running_loop()
        self._first_start = self._loop.create_future()
        process = self._spawn()
        self._supervising = self._loop.create_task(self._supervise(process))
        try:
            failure = await asyncio.wait_for(asyncio.shield(self._first_start), START_TIMEOUT_S)
        except TimeoutError:
            failure = f"the {self.section} adapter process did not start within {START_TIMEOUT_S:.0f} s"
        if failure is not None:
            await self.stop()
            raise NorthboundError(failure)

    def offer_snapshot(self, frame: bytes) -> None:
        self._latest = frame
        if self._feed is not None:
            self._feed.offer_snapshot(frame)

    def offer_nodes(self, frame: bytes) -> None:
        if self._feed is not None:
            self._feed.offer_nodes(frame)

    async def stop(self) -> None:
        """Close the child's channel (it stops its adapter and exits); SIGKILL it after STOP_TIMEOUT_S."""
        self._stopping.set()
        if self._feed is not None:
            self._feed.finish()
        task = self._supervising
        if task is None:
            return
        await stop_within(self, task, STOP_TIMEOUT_S, f"northbound {self.section}")

    def status(self) -> dict[str, Any]:
        return {"section": self.section, **supervised_status(self), "front_door": dict(self.front_door)}

    # --- supervision --------------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        core_snapshots, child_snapshots = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        core_messages, child_messages = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        environment = child_environment()
        environment[CORE_PID_VARIABLE] = str(os.getpid())
        arguments = [
            *("--config", self.config_path, "--section", self.section),
            *("--snapshots-fd", str(child_snapshots.fileno())),
            *("--messages-fd", str(child_messages.fileno())),
        ]
        try:
            process = start_child(CHILD_MODULE, arguments, [child_snapshots, child_messages], environment)
        except BaseException:
            for sock in (core_snapshots, core_messages):
                sock.close()
            raise
        self.pid = process.pid
        self.state = "starting"
        self._feed = FrameFeed(core_snapshots)
        if self._latest is not None:
            self._feed.offer_snapshot(self._latest)  # the newest full state, first thing the new child reads
        self._answering = threading.Thread(
            target=self._answer,
            args=(core_messages, process.pid),
            name=f"{self.section}-commands",
            daemon=True,
        )
        self._answering.start()
        return process

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
        if self._answering is not None:  # its last messages (logs, counts) are written first
            await asyncio.to_thread(self._answering.join, ANSWERING_JOIN_S)
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._stopping.is_set() or not self._served:
            first = self._first_start
            if first is not None and not first.done():
                first.set_result(f"the {self.section} adapter process {reason} before it served")
            log.info("northbound %s (pid %d) stopped: %s", self.section, pid, reason)
            return True
        self._down_since = time.monotonic()
        return False

    def _say_restart(self, pid: int, delay: float) -> None:
        log.error(
            "northbound %s (pid %d) %s; restarting it in %.1f s (restart %d)",
            self.section,
            pid,
            self.last_exit,
            delay,
            self.restarts,
        )

    # --- the child's messages (on the answering thread) ---------------------------------------------

    def _answer(self, sock: socket.socket, pid: int) -> None:
        """Answer one child's commands and write its log records, until its socket closes."""
        with sock:
            while True:
                try:
                    packet = sock.recv(MAX_MESSAGE_BYTES)
                except OSError:
                    return
                if not packet:
                    return
                try:
                    reply = self._handle(decode_message(packet), pid)
                except MessageError as error:
                    log.warning("northbound %s (pid %d) sent a bad message: %s", self.section, pid, error)
                    continue
                if reply is not None:
                    try:
                        sock.send(encode_message(reply))
                    except OSError:
                        return

    def _handle(self, message: dict[str, Any], pid: int) -> dict[str, Any] | None:
        kind = message["kind"]
        if kind == "submit":
            return {"kind": "answer", "id": message.get("id"), "refusal": self._decide(message)}
        if kind == "log":
            if not write_forwarded_log(message):
                raise ChannelError(f"malformed log record {message!r}")
        elif kind == "suppressed":
            if not count_forwarded_suppressed(message):
                raise ChannelError(f"malformed suppressed-lines report {message!r}")
        elif kind == "door":
            counts = message_counts(message)
            if counts is None:
                raise ChannelError(f"malformed front-door counts {message!r}")
            self.front_door.update(counts)
        elif kind in ("ready", "failed"):
            failure = message.get("message") if kind == "failed" else None
            if kind == "failed" and not isinstance(failure, str):
                raise ChannelError(f"malformed failure {message!r}")
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed: the gateway is stopping
                self._loop.call_soon_threadsafe(self._started, pid, failure)
        else:
            raise ChannelError(f"unknown message kind {kind!r}")
        return None

    def _decide(self, message: dict[str, Any]) -> str | None:
        try:
            update = update_from_json(message.get("update"))
        except ChannelError as error:
            log.warning("northbound %s sent a malformed command (refused): %s", self.section, error)
            return f"malformed command: {error}"
        try:
            return self._submit(update, apply=message.get("apply") is not False)
        except Exception:  # a bug in the engine must not leave the stack without an answer
            log.exception(
                "northbound %s: the command from %s failed in the core", self.section, update.source
            )
            return "the gateway failed to apply the command (see its log)"

    def _started(self, pid: int, failure: str | None) -> None:
        if pid != self.pid:
            return  # an older child's late message
        first = self._first_start
        if failure is not None:
            if first is not None and not first.done():
                first.set_result(f"northbound {self.section}: {failure}")
            else:
                log.error("northbound %s (pid %d) cannot serve: %s", self.section, pid, failure)
            return
        self.state = "running"
        self._served = True
        if first is not None and not first.done():
            first.set_result(None)
        if self._down_since is not None:
            log.warning(
                "northbound %s serving again (pid %d) %.2f s after its process ended",
                self.section,
                pid,
                time.monotonic() - self._down_since,
            )
            self._down_since = None


class AdapterSupervisor:
    """Every configured adapter in its own process; the engine's one publisher for all of them."""

    def __init__(self, config_path: str, sections: Sequence[str], submit: Submit) -> None:
        self.children = [AdapterProcess(section, config_path, submit) for section in sections]
        self._arrived: list[NodeState] = []  # since the last frame
        self._batch: asyncio.Handle | None = None  # the next frame's send, while states wait for it
        self._last_frame = -math.inf  # when the last NODES frame went (the loop's clock)
        self._shown: dict[str, NodeState] = {}  # each node's state in the last snapshot

    async def start(self) -> None:
        """Start every child at once and wait until each serves; NorthboundError names the first failure."""
        outcomes = await asyncio.gather(*(child.start() for child in self.children), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def node_arrived(self, state: NodeState) -> None:
        """A node's poll answered (on the loop, mid-poll): it goes out with the others of its batch,
        unless it says what the last snapshot said (about half the packs, a cycle, in the simulator)."""
        if not self.children:
            return
        shown = self._shown.get(state.node_id)
        if shown is not None and (shown is state or shown.__dict__ == state.__dict__):
            return
        self._arrived.append(state)
        if len(self._arrived) >= NODE_FRAME_STATES:  # a burst of answers: the first need not wait for all
            if self._batch is not None:
                self._batch.cancel()
            self._send_arrived()
            return
        if self._batch is None:
            loop = asyncio.get_running_loop()
            due = self._last_frame + NODE_BATCH_S
            # call_soon runs after the callbacks already ready: the other answers read with this one
            self._batch = (
                loop.call_soon(self._send_arrived)
                if due <= loop.time()
                else loop.call_at(due, self._send_arrived)
            )

    def _send_arrived(self) -> None:
        self._batch = None
        self._last_frame = asyncio.get_running_loop().time()
        frame = encode_nodes(self._arrived, time.time())
        self._arrived.clear()
        for child in self.children:
            child.offer_nodes(frame)

    def publish(self, snapshot: CycleSnapshot) -> None:
        if not self.children:
            return
        if self._batch is not None:  # the snapshot carries the states still waiting for their batch
            self._batch.cancel()
            self._batch = None
        self._arrived.clear()
        self._shown = {state.node_id: state for state in snapshot.fleet.nodes}
        doors = {child.section: dict(child.front_door) for child in self.children if child.front_door}
        if doors:
            accounts = dataclasses.replace(snapshot.accounts, front_door=doors)
            snapshot = dataclasses.replace(snapshot, accounts=accounts)
        frame = encode_snapshot(snapshot)
        for child in self.children:
            child.offer_snapshot(frame)

    async def stop(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.children))

    def status(self) -> list[dict[str, Any]]:
        return [child.status() for child in self.children]
