"""Turns what libiec61850 and its binding print on C's `stderr` into Python log records.

The binding prints a debug line for every control ("triggerControlHandler::... end") and the TLS layer
dumps every peer certificate: noise in a daemon's journal. While captured, the C library's `stderr`
stream (the libc FILE*, not file descriptor 2: Python's own stderr, tracebacks and crash dumps stay
direct) writes into a pipe; a thread logs each line, at debug level, or warning when it reports a
failure. The pipe's write end never blocks: C code printing while it holds the GIL must not wait for the
reader (a full pipe drops the text instead).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import threading

log = logging.getLogger(__name__)

_LINE_BUFFERED = 1  # _IOLBF
_PIPE_BYTES = 1 << 20
_WARNING_WORDS = ("failed", "error")


class _Capture:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None)
        libc.fdopen.restype = ctypes.c_void_p
        libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
        libc.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
        libc.fclose.argtypes = [ctypes.c_void_p]
        self._libc = libc
        self._stream = ctypes.c_void_p.in_dll(libc, "stderr")
        self._original = self._stream.value
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # a bigger pipe rides out bursts (TLS dumps); optional
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        fcntl.fcntl(write_fd, fcntl.F_SETFL, fcntl.fcntl(write_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._file = libc.fdopen(write_fd, b"w")
        libc.setvbuf(self._file, None, _LINE_BUFFERED, 0)
        self._reader = threading.Thread(
            target=_log_lines, args=(read_fd,), name="socgw-iec61850-stderr", daemon=True
        )
        self._reader.start()
        self._stream.value = self._file

    def close(self) -> None:
        self._stream.value = self._original
        self._libc.fclose(self._file)  # closes the write end: the reader sees the end and stops
        self._reader.join(timeout=5.0)


def _log_lines(read_fd: int) -> None:
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            level = logging.WARNING if any(word in line.lower() for word in _WARNING_WORDS) else logging.DEBUG
            log.log(level, "libiec61850: %s", line)


class NativeStderr:
    """Process-wide capture, shared by every running server (started and stopped by reference count)."""

    _lock = threading.Lock()
    _users = 0
    _capture: _Capture | None = None

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            if cls._users == 0:
                try:
                    cls._capture = _Capture()
                except (OSError, ValueError, AttributeError) as error:  # not glibc: leave stderr alone
                    log.debug("C stderr left as it is: %s", error)
                    cls._capture = None
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users = max(0, cls._users - 1)
            if cls._users == 0 and cls._capture is not None:
                cls._capture.close()
                cls._capture = None
