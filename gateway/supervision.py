"""What the core's supervisors of child processes share (adapter children, polling processes).

A child never inherits systemd's notify socket or watchdog (`NotifyAccess=main`: only the core speaks to
systemd). Its exit is seen at once on the loop (a pidfd) and said with its status or signal; it is
started again after a capped exponential backoff. Its log records come to the core as JSON messages and
are written there under their own logger names, so the service has one journal stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from gateway.logbook import add_suppressed, counters

FIRST_BACKOFF_S: Final = 0.1  # wait before restarting a child that ran well; doubles per quick failure
BACKOFF_CAP_S: Final = 10.0
HEALTHY_AFTER_S: Final = 30.0  # a child that ran this long starts the backoff over
MAX_LOG_CHARS: Final = 16000  # a forwarded log line is cut to this (one message packet holds it)
# What a child must not inherit: it never talks to systemd (NotifyAccess=main).
PRIVATE_ENVIRONMENT: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

log = logging.getLogger(__name__)


class MessageError(ValueError):
    """A message that is not what a child's channel carries (a bug, or a child that misbehaves)."""


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One JSON message (a packet of a SOCK_SEQPACKET channel)."""
    return json.dumps(message, separators=(",", ":")).encode()


def decode_message(packet: bytes) -> dict[str, Any]:
    """A JSON object with a `kind`, else MessageError; the caller checks its other fields."""
    try:
        message = json.loads(packet)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MessageError(f"not a JSON message: {error}") from None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise MessageError("a message must be a JSON object with a `kind`")
    return message


def child_environment() -> dict[str, str]:
    """This process's environment without what only the core may use."""
    return {key: value for key, value in os.environ.items() if key not in PRIVATE_ENVIRONMENT}


def start_child(
    module: str,
    arguments: Sequence[str],
    child_ends: Sequence[socket.socket],
    environment: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m module arguments`, given the child's ends of its socket pairs (closed in this process
    whatever happens: the child holds them now) and `child_environment()` unless told otherwise."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdin=subprocess.DEVNULL,
            pass_fds=tuple(end.fileno() for end in child_ends),
            env=dict(environment) if environment is not None else child_environment(),
        )
    finally:
        for end in child_ends:
            end.close()


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def restart_delay_s(quick_failures: int) -> float:
    """The wait before the next start after `quick_failures` exits in a row (1: the first)."""
    return min(BACKOFF_CAP_S, FIRST_BACKOFF_S * 2.0 ** (quick_failures - 1))


class Restartable(Protocol):
    """What `socgw status` shows of a supervised child, as `supervise` keeps it."""

    state: str  # starting, running, restarting, stopped
    pid: int | None
    restarts: int
    last_exit: str | None


def supervised_status(child: Restartable) -> dict[str, Any]:
    """The part of a child's `socgw status` entry every kind of child has."""
    return {"state": child.state, "pid": child.pid, "restarts": child.restarts, "last_exit": child.last_exit}


def kill(child: Restartable) -> None:
    if child.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)


async def stop_within(
    child: Restartable, supervising: asyncio.Task[None], timeout_s: float, name: str
) -> None:
    """Wait until the child (asked to stop) has ended and `supervising` with it; SIGKILL it after
    `timeout_s`, said once naming it."""
    try:
        await asyncio.wait_for(asyncio.shield(supervising), timeout_s)
    except TimeoutError:
        log.warning("%s (pid %s) did not stop within %.0f s: killing it", name, child.pid, timeout_s)
        kill(child)
        await supervising


async def supervise(
    child: Restartable,
    process: subprocess.Popen[bytes],
    *,
    stopping: asyncio.Event,
    spawn: Callable[[], subprocess.Popen[bytes]],
    ended: Callable[[int, str], Awaitable[bool]],
    say_restart: Callable[[int, float], None],
) -> None:
    """Watch `process` and each one started after it, until one ends for good. At each exit `ended`
    gets its pid and how it ended, tidies up and says whether that is the end (a stop, or a child that
    never served); otherwise, after the backoff (`say_restart` gets the pid and the delay, to log it
    once), `spawn` starts the child again (`stopping` cancels the wait)."""
    quick_failures = 0
    while True:
        started = time.monotonic()
        reason = describe_exit(await exited(process))
        if await ended(process.pid, reason):
            child.state = "stopped"
            return
        child.last_exit = reason
        ran_s = time.monotonic() - started
        while True:
            quick_failures = 1 if ran_s >= HEALTHY_AFTER_S else quick_failures + 1
            delay = restart_delay_s(quick_failures)
            child.restarts += 1
            child.state = "restarting"
            say_restart(process.pid, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                child.state = "stopped"
                return
            try:
                process = spawn()
            except OSError as error:
                child.last_exit = f"could not be started again: {error}"
                ran_s = 0.0
                continue
            break


async def exited(process: subprocess.Popen[bytes]) -> int:
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


class ForwardingHandler(logging.Handler):
    """A child's log records to the core, as `log` messages given to `send` (which must not block: a
    record that does not fit in the channel now is dropped)."""

    def __init__(self, send: Callable[[dict[str, Any]], object]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a bad format string in a record must not stop the child
            self.handleError(record)
            return
        text = text[:MAX_LOG_CHARS]
        self._send({"kind": "log", "level": record.levelno, "logger": record.name, "message": text})


class SuppressedReport:
    """A child's rate-limited log lines (`logbook`): what it suppressed since its last report goes to the
    core, which counts them with its own, so `socgw status` counts the whole service's."""

    def __init__(self) -> None:
        self._reported: dict[str, int] = {}  # already counted by the core

    def send(self, send: Callable[[dict[str, Any]], bool]) -> None:
        counts = counters()["suppressed_by_key"]
        new = {key: count - self._reported.get(key, 0) for key, count in counts.items()}
        new = {key: count for key, count in new.items() if count > 0}
        if new and send({"kind": "suppressed", "counts": new}):
            self._reported = counts


def message_counts(message: Mapping[str, Any]) -> dict[str, int] | None:
    """The `counts` of a child's message (name -> positive count); None when malformed."""
    counts = message.get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(key, str) and isinstance(count, int) and count > 0 for key, count in counts.items()
    ):
        return None
    return counts


def count_forwarded_suppressed(message: Mapping[str, Any]) -> bool:
    """Add a child's `suppressed` message to the core's counts; False when it is malformed."""
    counts = message_counts(message)
    if counts is None:
        return False
    add_suppressed(counts)
    return True


def start_as_child(send: Callable[[dict[str, Any]], object]) -> None:
    """What a child does first: ignore SIGINT and SIGTERM (Ctrl-C and systemd's stop reach the whole
    process group; the core decides when its children stop) and send its log records to the core."""
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers = [ForwardingHandler(send)]
    root.setLevel(logging.INFO)


def write_forwarded_log(message: Mapping[str, Any]) -> bool:
    """Write a child's `log` message with the core's handlers; False when it is malformed."""
    level, name, text = message.get("level"), message.get("logger"), message.get("message")
    if not (isinstance(level, int) and isinstance(name, str) and isinstance(text, str)):
        return False
    logging.getLogger(name).log(level, "%s", text)
    return True
