"""Network namespaces for a hierarchy test: one per controller and broker, joined by veth pairs to a
bridge in a hub namespace of their own. Only the namespaces' own addresses (10.99.0.0/24 inside them)
are used; the host's interfaces, routes and addresses are never touched. Needs root."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SUBNET = "10.99.0"
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Network:
    """`add(name)` makes a namespace on the bridge and returns its address; `close` removes them all."""

    def __init__(self) -> None:
        self._prefix = f"socgw{os.getpid()}-"
        self.hub = self._prefix + "hub"
        self.addresses: dict[str, str] = {}
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def namespace(self, name: str) -> str:
        return self._prefix + name

    def add(self, name: str) -> str:
        namespace = self.namespace(name)
        address = f"{SUBNET}.{len(self.addresses) + 2}"
        _ip("netns", "add", namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", f"v{len(self.addresses)}", "type", "veth", "peer", "name", "eth0",
            "netns", namespace)  # fmt: skip
        _ip("-n", self.hub, "link", "set", f"v{len(self.addresses)}", "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.addresses[name] = address
        return address

    def link(self, name: str, *, up: bool) -> None:
        """Plug or pull the namespace's cable at the bridge (its own side never notices)."""
        index = list(self.addresses).index(name)
        _ip("-n", self.hub, "link", "set", f"v{index}", "up" if up else "down")

    def argv(self, name: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(name), *argv]

    def wrapper(self, name: str) -> Callable[[list[str]], list[str]]:
        """What makes a command line run in the namespace `name`."""
        return lambda argv: self.argv(name, argv)

    def run_in(self, name: str, function: Callable[[], T]) -> T:
        """`function()` on a thread that joined the namespace: sockets it (and the threads it starts)
        opens live there."""
        results: list[T] = []
        errors: list[BaseException] = []

        def enter_and_run() -> None:
            fd = os.open(f"/run/netns/{self.namespace(name)}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {self.namespace(name)}")
            finally:
                os.close(fd)
            try:
                results.append(function())
            except BaseException as error:  # handed to the caller's thread
                errors.append(error)

        thread = threading.Thread(target=enter_and_run, name=f"netns-{name}")
        thread.start()
        thread.join(60)
        if errors:
            raise errors[0]
        if not results:
            raise AssertionError(f"nothing came back from namespace {name} within 60 s")
        return results[0]

    def wait_for_port(self, name: str, address: str, port: int, timeout_s: float = 10.0) -> None:
        def probe() -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection((address, port), timeout=0.2):
                        return True
                except OSError:
                    time.sleep(0.05)
            return False

        if not self.run_in(name, probe):
            raise AssertionError(f"nothing listens on {address}:{port} in {name} after {timeout_s} s")

    def close(self) -> None:
        for name in [*self.addresses, "hub"]:
            subprocess.run(
                ["ip", "netns", "del", self.namespace(name)], check=False, capture_output=True, timeout=10
            )
        self.addresses.clear()
