"""What every northbound adapter offers the daemon, and what it is given.

An adapter translates; it decides nothing. `publish` is called on the asyncio loop once per cycle with
the cycle's snapshot and must return quickly (hand heavy work to the adapter's own thread). In an
adapter's process, `publish_nodes` comes first, during the poll, with the states of the nodes whose poll
has answered (a few milliseconds' worth at a time): the adapter shows their own values at once (SOC,
power, ...), read with the latest snapshot's dispatch and parameters, through the same quality rule and
change tracker; fleet aggregates and what the new dispatch decides wait for the snapshot, which carries
every node again (a node update a slow adapter never got loses nothing). A master's
write is decided by the shared control table (`gateway.mapping.controls.decide`) and an accepted one is
handed over with `submit`, which is safe to call from the protocol stack's own thread, returns at once,
and says why the site refused it (a reserve or ceiling that does not fit the values in force) or None;
`submit(update, apply=False)` asks the same without applying (a SELECT, a check before the reply).
The adapter only translates: map point -> control target, refusal -> its protocol's status.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.fleet import NodeState
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot

# Set in the environment of an adapter's child process: the pid of the control core that started it
# (an adapter reporting on the gateway process, such as the web view's `process_*` metrics, reads it).
CORE_PID_VARIABLE = "SOCGW_CORE_PID"


# Who a stack's peer really is: behind the front door a stack sees the door's loopback address
# (`127.0.0.1:port`) and the door names the client behind it (`FrontDoor.client_behind`); without a door,
# the peer as seen.
ClientBehind = Callable[[str], str]


def as_seen(peer: str) -> str:
    return peer


class Submit(Protocol):
    """The engine's `submit`: None when accepted, else why the site refused the command. With
    `apply=False` it only checks (SELECT, a check before the reply) and changes nothing."""

    def __call__(self, update: CommandUpdate, *, apply: bool = True) -> str | None: ...


@dataclass(frozen=True)
class Listener:
    """Where a configured adapter will accept its masters."""

    host: str
    port: int

    @property
    def every_address(self) -> bool:
        """Bound to 0.0.0.0 or ::, so it takes the port on every address."""
        return ipaddress.ip_address(self.host).is_unspecified


@dataclass(frozen=True)
class NodeUpdate:
    """Nodes whose poll answered, sent before their cycle's snapshot; `wall_time` is when they were
    sent (each answered within the few milliseconds before)."""

    nodes: tuple[NodeState, ...]
    wall_time: datetime


class NorthboundError(Exception):
    """An adapter cannot start (bad TLS file, port in use...); the message names the file or port."""


class NorthboundAdapter(Protocol):
    name: str

    def start(self) -> None:
        """Bind and start serving; raise NorthboundError with an actionable message on failure."""

    def publish(self, snapshot: CycleSnapshot) -> None:
        """Show this cycle's state to the masters (called on the loop; must not block)."""

    def publish_nodes(self, update: NodeUpdate) -> None:
        """Show these nodes' own values now, before the cycle's snapshot (on the loop; must not block)."""

    def stop(self) -> None:
        """Stop serving and release every thread, socket and handler (call from the main thread)."""
