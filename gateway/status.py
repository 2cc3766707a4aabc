"""The running gateway's status over a local-only Unix socket.

A client connects, the server writes one JSON document and closes. Nothing is read from the client, so
the channel cannot be used to change anything; the socket file is created 0660 in a directory only the
service user can enter. The development directory (`$TMPDIR/socgw-<uid>`, in a world-writable place) is
used only when it is the user's own and nobody else may write to it: another user could plant a socket
there and show a forged fleet.

One `socgw run` per status socket: `InstanceLock` holds an exclusive lock on `<socket>.lock` for the
life of the process, taken before anything is bound or removed, so a second gateway on the same config
refuses to start (naming the first one's PID) instead of deleting its socket and polling its packs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway import logbook
from gateway.paths import development_socket_directory

StatusProvider = Callable[[], Mapping[str, Any]]


class StatusSocketError(OSError):
    """The status socket cannot be used safely; the message names the path and what to do."""


def prepare_socket_directory(path: Path) -> None:
    """Create the socket's directory if needed; refuse a development directory others control."""
    directory = path.parent
    if directory != development_socket_directory():
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        return
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    check_private_directory(directory)


def check_private_directory(directory: Path) -> None:
    """Refuse a directory (not a symlink) that is not the current user's own or that others may write to."""
    try:
        info = directory.lstat()
    except FileNotFoundError:
        raise StatusSocketError(
            f"the status socket directory {directory} does not exist: is `socgw run` running as this user?"
        ) from None
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not mode & 0o022:
        return
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "non-directory"
    raise StatusSocketError(
        f"refusing the status socket directory {directory}: a {kind} owned by uid {info.st_uid} with mode "
        f"{mode:04o}, but it must be a directory owned by uid {os.getuid()} (you) that group and others "
        f"cannot write to (another user could plant a forged status socket there). Remove it "
        f"(`rm -r {directory}`) and start again, or set status.socket in the site config to a path in a "
        "directory of your own"
    )


class InstanceLock:
    """An exclusive `flock` on `<status socket>.lock`, held while the gateway runs; records the holder's PID.

    The lock file is never deleted: removing it would let a third process lock a new file while the
    second still holds the old one. The kernel releases the lock when the holder exits, even on a crash.
    """

    def __init__(self, status_socket: Path) -> None:
        self.path = status_socket.with_name(status_socket.name + ".lock")
        self.status_socket = status_socket
        self._fd: int | None = None

    def acquire(self) -> None:
        prepare_socket_directory(self.status_socket)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StatusSocketError(
                f"another `socgw run` (PID {holder}) is already running with the status socket "
                f"{self.status_socket} (lock {self.path}): stop it first (`systemctl stop socgw` for the "
                "service), or give this config its own status.socket"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the lock

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


class StatusServer:
    """Serves `provider()` as JSON to every local client that connects, with the log-rate counters.

    Start it only while holding the `InstanceLock` of its path: it replaces a stale socket file there."""

    def __init__(self, path: Path, provider: StatusProvider) -> None:
        self.path = path
        self._provider = provider
        self._server: asyncio.AbstractServer | None = None
        self._bound: tuple[int, int] | None = None  # (device, inode) of the socket file this server made

    async def start(self) -> None:
        prepare_socket_directory(self.path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run would make bind fail
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o660)
        info = self.path.stat()
        self._bound = (info.st_dev, info.st_ino)

    def document(self) -> dict[str, Any]:
        return {**self._provider(), "logging": logbook.counters()}

    async def _serve(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self.document(), default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away: nothing to do
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        bound, self._bound = self._bound, None
        with contextlib.suppress(FileNotFoundError):
            info = self.path.stat()
            if (info.st_dev, info.st_ino) == bound:  # never remove a socket another process made
                self.path.unlink()


def read_status(path: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """Fetch one status document; raises OSError with the socket path when the gateway is not running."""
    if path.parent == development_socket_directory():
        check_private_directory(path.parent)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except OSError as error:
            raise OSError(
                f"cannot reach the gateway's status socket {path}: {error.strerror}; "
                "is `socgw run` running (check `systemctl status socgw`), and is this the socket it uses?"
            ) from error
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    document: dict[str, Any] = json.loads(b"".join(chunks))
    return document
