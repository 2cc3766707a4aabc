"""What the core's supervisors of child processes share (adapter children, polling processes).

A child never inherits systemd's notify socket or watchdog (`NotifyAccess=main`: only the core speaks to
systemd). Its exit is seen at once on the loop (a pidfd) and said with its status or signal; it is
started again after a capped exponential backoff. Its log records come to the core as JSON messages and
are written there under their own logger names, so the service has one journal stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Any, Final

FIRST_BACKOFF_S: Final = 0.1  # wait before restarting a child that ran well; doubles per quick failure
BACKOFF_CAP_S: Final = 10.0
HEALTHY_AFTER_S: Final = 30.0  # a child that ran this long starts the backoff over
MAX_LOG_CHARS: Final = 16000  # a forwarded log line is cut to this (one message packet holds it)
# What a child must not inherit: it never talks to systemd (NotifyAccess=main).
PRIVATE_ENVIRONMENT: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_environment() -> dict[str, str]:
    """This process's environment without what only the core may use."""
    return {key: value for key, value in os.environ.items() if key not in PRIVATE_ENVIRONMENT}


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


def write_forwarded_log(message: Mapping[str, Any]) -> bool:
    """Write a child's `log` message with the core's handlers; False when it is malformed."""
    level, name, text = message.get("level"), message.get("logger"), message.get("message")
    if not (isinstance(level, int) and isinstance(name, str) and isinstance(text, str)):
        return False
    logging.getLogger(name).log(level, "%s", text)
    return True
