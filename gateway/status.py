"""The running gateway's status over a local-only Unix socket.

A client connects, the server writes one JSON document and closes. Nothing is read from the client, so
the channel cannot be used to change anything; the socket file is created 0660 in a directory only the
service user can enter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

StatusProvider = Callable[[], Mapping[str, Any]]

INSTALLED_STATUS_SOCKET = Path("/run/socgw/status.sock")


def default_status_socket() -> Path:
    """`/run/socgw/status.sock` for the installed service, else a per-user path for development."""
    if INSTALLED_STATUS_SOCKET.parent.is_dir() and os.access(INSTALLED_STATUS_SOCKET.parent, os.W_OK):
        return INSTALLED_STATUS_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/socgw-{os.getuid()}"
    return Path(runtime) / "socgw-status.sock"


class StatusServer:
    """Serves `provider()` as JSON to every local client that connects."""

    def __init__(self, path: Path, provider: StatusProvider) -> None:
        self.path = path
        self._provider = provider
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run would make bind fail
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def _serve(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self._provider(), default=str).encode() + b"\n")
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
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_status(path: Path, timeout_s: float = 2.0) -> dict[str, Any]:
    """Fetch one status document; raises OSError with the socket path when the gateway is not running."""
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
