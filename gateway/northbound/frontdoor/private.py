"""The stack's private listener: a loopback port only this process can connect to.

The stack listens on 127.0.0.1:<port> in plain TCP. Once it listens, `seal` gives its listening socket
a TCP-MD5 signature key (RFC 2385) for every IPv4 source, a random key only this process holds: the
kernel then drops every SYN to that port that is not signed with it, so a local user (not root: root
owns the machine anyway) cannot reach the stack past the front door. It needs no privilege, no
namespace and no firewall (the systemd unit keeps `RestrictNamespaces=yes`). `seal` also makes sure no
connection reached the port between the stack's listen and the seal: the front door is not open yet,
so any connection to the port then is someone else's, and the start fails (the supervisor restarts the
child on another port).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct

from gateway.northbound.adapter import Listener, NorthboundError

LOOPBACK = "127.0.0.1"
TCP_MD5SIG_EXT = 32  # linux/tcp.h: a key for a prefix of source addresses
TCP_MD5SIG_FLAG_PREFIX = 1
KEY_BYTES = 32  # at most 80
TCP_LISTEN = "0A"  # /proc/net/tcp state of a listening socket


def _md5_option(address: str, prefix: int, key: bytes) -> bytes:
    """struct tcp_md5sig for `address`/`prefix`."""
    sockaddr = struct.pack("=H2s4s", socket.AF_INET, b"\0\0", socket.inet_aton(address)).ljust(128, b"\0")
    return sockaddr + struct.pack("=BBHi", TCP_MD5SIG_FLAG_PREFIX, prefix, len(key), 0) + key.ljust(80, b"\0")


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateLink:
    """Where the stack listens, and the key that reaches it."""

    def __init__(self) -> None:
        self.listener = Listener(LOOPBACK, free_loopback_port())
        self._key = os.urandom(KEY_BYTES)

    def seal(self) -> None:
        """Key the stack's listening socket; NorthboundError when it is not found or was reached."""
        sealed = 0
        for fd in _socket_fds():
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as candidate:
                if (
                    candidate.family == socket.AF_INET
                    and candidate.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and candidate.getsockname() == (LOOPBACK, self.listener.port)
                ):
                    candidate.setsockopt(
                        socket.IPPROTO_TCP, TCP_MD5SIG_EXT, _md5_option("0.0.0.0", 0, self._key)
                    )
                    sealed += 1
        if not sealed:
            raise NorthboundError(
                f"front door: the stack does not listen on its private port {LOOPBACK}:{self.listener.port}"
            )
        intruders = _connections_to(self.listener.port)
        if intruders:
            raise NorthboundError(
                f"front door: {intruders} connection(s) reached the stack's private port "
                f"{self.listener.port} before it was sealed; starting again on another port"
            )

    async def connect(self, protocol: asyncio.Protocol) -> str:
        """A signed connection to the stack, served by `protocol`; its local end as the stack sees its
        peer (`127.0.0.1:port`)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG_EXT, _md5_option(LOOPBACK, 32, self._key))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (LOOPBACK, self.listener.port))
            host, port = sock.getsockname()
            await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()
            raise
        return f"{host}:{port}"


def _socket_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                fds.append(int(name))
    return fds


def _connections_to(port: int) -> int:
    """Sockets (any state but listening) whose local end is 127.0.0.1:`port`."""
    local = f"0100007F:{port:04X}"
    with open("/proc/self/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1] == local and row[3] != TCP_LISTEN)
