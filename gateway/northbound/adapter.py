"""What every northbound adapter offers the daemon, and what it is given.

An adapter translates; it decides nothing. `publish` is called on the asyncio loop once per cycle with
the cycle's snapshot and must return quickly (hand heavy work to the adapter's own thread). Commands a
master sends are validated by the adapter and handed over with `submit`, which is safe to call from
the protocol stack's own thread and never blocks it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot

Submit = Callable[[CommandUpdate], None]


@dataclass(frozen=True)
class Listener:
    """Where a configured adapter will accept its masters."""

    host: str
    port: int

    @property
    def every_address(self) -> bool:
        """Bound to 0.0.0.0 or ::, so it takes the port on every address."""
        return ipaddress.ip_address(self.host).is_unspecified


class NorthboundError(Exception):
    """An adapter cannot start (bad TLS file, port in use...); the message names the file or port."""


class NorthboundAdapter(Protocol):
    name: str

    def start(self) -> None:
        """Bind and start serving; raise NorthboundError with an actionable message on failure."""

    def publish(self, snapshot: CycleSnapshot) -> None:
        """Show this cycle's state to the masters (called on the loop; must not block)."""

    def stop(self) -> None:
        """Stop serving and release every thread, socket and handler (call from the main thread)."""
