"""The core's side of the adapter processes: start them, feed them, answer them, restart them.

Each configured `northbound:` section gets one `AdapterProcess`. The engine calls `publish` on the loop
once per cycle; the snapshot is pickled once and offered to every child, and a child still busy with an
older frame gets only the newest when it is ready (the stale ones are dropped, the loop never waits).
Commands from a child are answered by a thread of its own that calls the engine's thread-safe
`submit`, never by the loop, which may be mid-cycle. A child that exits is noticed at once (a pidfd
on the loop), logged once with its exit status or signal, and started again after a capped
exponential backoff; the new child gets the latest snapshot as its first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from gateway import logbook
from gateway.northbound.adapter import CORE_PID_VARIABLE, NorthboundError, Submit
from gateway.northbound.process.channel import (
    MAX_MESSAGE_BYTES,
    ChannelError,
    decode_message,
    encode_message,
    encode_snapshot,
    update_from_json,
)
from gateway.snapshot import CycleSnapshot

log = logging.getLogger(__name__)

CHILD_MODULE: Final = "gateway.northbound.process.child"
START_TIMEOUT_S: Final = 60.0  # a first start that takes longer fails `socgw run`
STOP_TIMEOUT_S: Final = 10.0  # then SIGKILL
FIRST_BACKOFF_S: Final = 0.1  # wait before restarting a child that ran well; doubles per quick failure
BACKOFF_CAP_S: Final = 10.0
HEALTHY_AFTER_S: Final = 30.0  # a child that ran this long starts the backoff over
ANSWERING_JOIN_S: Final = 2.0  # a dead child's queued messages take microseconds to handle
# What a child must not inherit: it never talks to systemd (NotifyAccess=main).
PRIVATE_ENVIRONMENT: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class SnapshotFeed:
    """One child's snapshot socket: the newest frame, sent when the previous one has gone."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._latest: bytes | None = None
        self._sent: bytes | None = None
        self._task: asyncio.Task[None] | None = None

    def offer(self, frame: bytes) -> None:
        self._latest = frame
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):  # the child is gone: its exit is handled by the supervisor
            while self._latest is not None and self._latest is not self._sent:
                self._sent = self._latest
                await loop.sock_sendall(self.sock, self._sent)

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
        self._latest: bytes | None = None
        self._feed: SnapshotFeed | None = None
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

    def offer(self, frame: bytes) -> None:
        self._latest = frame
        if self._feed is not None:
            self._feed.offer(frame)

    async def stop(self) -> None:
        """Close the child's channel (it stops its adapter and exits); SIGKILL it after STOP_TIMEOUT_S."""
        self._stopping.set()
        if self._feed is not None:
            self._feed.finish()
        task = self._supervising
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "northbound %s (pid %s) did not stop within %.0f s: killing it",
                self.section,
                self.pid,
                STOP_TIMEOUT_S,
            )
            if self.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            await task

    def status(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "front_door": dict(self.front_door),
        }

    # --- supervision --------------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        core_snapshots, child_snapshots = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        core_messages, child_messages = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        environment = {key: value for key, value in os.environ.items() if key not in PRIVATE_ENVIRONMENT}
        environment[CORE_PID_VARIABLE] = str(os.getpid())
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    CHILD_MODULE,
                    "--config",
                    self.config_path,
                    "--section",
                    self.section,
                    "--snapshots-fd",
                    str(child_snapshots.fileno()),
                    "--messages-fd",
                    str(child_messages.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(child_snapshots.fileno(), child_messages.fileno()),
                env=environment,
            )
        except BaseException:
            for sock in (core_snapshots, core_messages):
                sock.close()
            raise
        finally:
            child_snapshots.close()
            child_messages.close()
        self.pid = process.pid
        self.state = "starting"
        self._feed = SnapshotFeed(core_snapshots)
        if self._latest is not None:
            self._feed.offer(self._latest)  # the newest full state, first thing the new child reads
        self._answering = threading.Thread(
            target=self._answer,
            args=(core_messages, process.pid),
            name=f"{self.section}-commands",
            daemon=True,
        )
        self._answering.start()
        return process

    async def _supervise(self, process: subprocess.Popen[bytes]) -> None:
        quick_failures = 0
        while True:
            started = time.monotonic()
            reason = describe_exit(await _exited(process))
            if self._answering is not None:  # its last messages (logs, counts) are written first
                await asyncio.to_thread(self._answering.join, ANSWERING_JOIN_S)
            if self._feed is not None:
                self._feed.close()
                self._feed = None
            if self._stopping.is_set() or not self._served:
                first = self._first_start
                if first is not None and not first.done():
                    first.set_result(f"the {self.section} adapter process {reason} before it served")
                self.state = "stopped"
                log.info("northbound %s (pid %d) stopped: %s", self.section, process.pid, reason)
                return
            self.last_exit = reason
            self._down_since = time.monotonic()
            while True:
                quick_failures = 1 if time.monotonic() - started >= HEALTHY_AFTER_S else quick_failures + 1
                delay = min(BACKOFF_CAP_S, FIRST_BACKOFF_S * 2 ** (quick_failures - 1))
                self.restarts += 1
                self.state = "restarting"
                log.error(
                    "northbound %s (pid %d) %s; restarting it in %.1f s (restart %d)",
                    self.section,
                    process.pid,
                    self.last_exit,
                    delay,
                    self.restarts,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    self.state = "stopped"
                    return
                try:
                    process = self._spawn()
                except OSError as error:
                    self.last_exit = f"could not be started again: {error}"
                    started = time.monotonic()
                    continue
                break

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
                except ChannelError as error:
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
            level, name, text = message.get("level"), message.get("logger"), message.get("message")
            if not (isinstance(level, int) and isinstance(name, str) and isinstance(text, str)):
                raise ChannelError(f"malformed log record {message!r}")
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "suppressed":
            logbook.add_suppressed(_counts(message, "suppressed-lines report"))
        elif kind == "door":
            self.front_door.update(_counts(message, "front-door counts"))
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


async def _exited(process: subprocess.Popen[bytes]) -> int:
    """Wait, on the loop, until the process ends (its pidfd turns readable); its return code."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(process.pid)
    ended = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await ended
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return process.wait()


class AdapterSupervisor:
    """Every configured adapter in its own process; the engine's one publisher for all of them."""

    def __init__(self, config_path: str, sections: Sequence[str], submit: Submit) -> None:
        self.children = [AdapterProcess(section, config_path, submit) for section in sections]

    async def start(self) -> None:
        """Start every child at once and wait until each serves; NorthboundError names the first failure."""
        outcomes = await asyncio.gather(*(child.start() for child in self.children), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def publish(self, snapshot: CycleSnapshot) -> None:
        if not self.children:
            return
        frame = encode_snapshot(snapshot)
        for child in self.children:
            child.offer(frame)

    async def stop(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.children))

    def status(self) -> list[dict[str, Any]]:
        return [child.status() for child in self.children]


def _counts(message: dict[str, Any], what: str) -> dict[str, int]:
    """The `counts` of a message (name -> positive count); ChannelError when malformed."""
    counts = message.get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(key, str) and isinstance(count, int) and count > 0 for key, count in counts.items()
    ):
        raise ChannelError(f"malformed {what} {message!r}")
    return counts
