"""Where socgw keeps its files when the config does not say: the installed service's places, or the
developer's own. Pure path logic; nothing is created here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

INSTALLED_STATUS_SOCKET = Path("/run/socgw/status.sock")


def default_status_socket() -> Path:
    """`/run/socgw/status.sock` for the installed service, else a per-user path for development."""
    if INSTALLED_STATUS_SOCKET.parent.is_dir() and os.access(INSTALLED_STATUS_SOCKET.parent, os.W_OK):
        return INSTALLED_STATUS_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(runtime) if runtime else development_socket_directory()) / "socgw-status.sock"


def development_socket_directory() -> Path:
    """The per-user directory under the temporary directory, for a user without XDG_RUNTIME_DIR."""
    return Path(tempfile.gettempdir()) / f"socgw-{os.getuid()}"
