"""What every northbound adapter offers the daemon, and what it is given.

An adapter translates; it decides nothing. `publish` is called on the asyncio loop once per cycle with
the cycle's snapshot and must return quickly (hand heavy work to the adapter's own thread). A master's
write is decided by the shared control table (`gateway.mapping.controls.decide`) and an accepted one is
handed over with `submit`, which is safe to call from the protocol stack's own thread, returns at once,
and says why the site refused it (a reserve or ceiling that does not fit the values in force) or None.
The adapter only translates: map point -> control target, refusal -> its protocol's status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot

Submit = Callable[[CommandUpdate], str | None]  # None: accepted; else why the site refused it


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
